"""tools/test.py --tta: the UperNet config's multi-scale + flip test-time augmentation (mmseg's
``tta_model`` / ``tta_pipeline`` of its ADE20K bases) on a tiny UperNet and toy ADE20K data."""
import pytest
import test as test_tool  # tools/test.py
import torch
from helpers import build_model, load_repo_config, toy_config

from cvt_mm.toy import shapes

# The TTA pipeline resizes by factors up to 1.75 of the original image: small images keep the
# real UperNet heads (512 channels at stride 4) cheap.
IMAGE_SIZE = 48


@pytest.fixture(scope='module')
def tiny_upernet(tmp_path_factory):
    """The toy UperNet config on disk and a checkpoint of its (randomly initialised) model."""
    root = tmp_path_factory.mktemp('tta')
    shapes.make_ade(root / 'ade', num_train=2, num_val=2, image_size=IMAGE_SIZE, seed=0)
    cfg = toy_config(load_repo_config('cvt13_upernet_ade20k.py'), root)
    config = root / 'upernet_toy.py'
    cfg.dump(str(config))
    checkpoint = root / 'model.pth'
    torch.manual_seed(0)
    torch.save({'state_dict': build_model(cfg).state_dict()}, checkpoint)
    return config, checkpoint, root


def run_test_tool(monkeypatch, capsys, args):
    """tools/test.py in-process; returns the config it built the runner from and its output."""
    built, build_runner = {}, test_tool.build_runner

    def recording_build_runner(cfg):
        built['cfg'] = cfg.copy()
        return build_runner(cfg)

    monkeypatch.setattr(test_tool, 'build_runner', recording_build_runner)
    test_tool.main([str(arg) for arg in args])
    return built['cfg'], capsys.readouterr().out


@pytest.mark.parametrize('tta', [False, True], ids=['plain', 'tta'])
def test_test_tool_evaluates_with_and_without_tta(tiny_upernet, monkeypatch, capsys, tmp_path,
                                                  tta):
    config, checkpoint, _ = tiny_upernet
    args = [config, checkpoint, '--work-dir', tmp_path] + (['--tta'] if tta else [])
    cfg, output = run_test_tool(monkeypatch, capsys, args)

    pipeline = cfg.test_dataloader.dataset.pipeline
    if tta:
        assert cfg.model.type == 'SegTTAModel' and cfg.model.module.type == 'EncoderDecoder'
        assert cfg.model.module.backbone.type == 'CvT'
        augment = next(step for step in pipeline if step['type'] == 'TestTimeAug')
        resizes, flips = augment['transforms'][:2]
        # mmseg's ADE20K TTA: six scales, each with and without a horizontal flip.
        assert [step['scale_factor'] for step in resizes] == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
        assert [step['prob'] for step in flips] == [0., 1.]
    else:
        assert cfg.model.type == 'EncoderDecoder'
        assert all(step['type'] != 'TestTimeAug' for step in pipeline)
    miou = [line for line in output.splitlines() if line.startswith('mIoU: ')]
    assert len(miou) == 1, output
    assert 0 <= float(miou[0].split(': ')[1]) <= 100


def test_tta_without_tta_settings_is_refused(tiny_upernet, tmp_path):
    config, checkpoint, root = tiny_upernet
    no_tta = root / 'no_tta.py'
    no_tta.write_text(config.read_text() + '\ntta_model = None\n')
    with pytest.raises(SystemExit, match='tta_model and tta_pipeline'):
        test_tool.main([str(no_tta), str(checkpoint), '--work-dir', str(tmp_path), '--tta'])
