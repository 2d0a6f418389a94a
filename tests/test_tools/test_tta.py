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
NUM_VAL_IMAGES = 2
# mmseg's ADE20K TTA, which the UperNet config inherits: six scales, each with and without a
# horizontal flip.
TTA_SCALE_FACTORS = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
TTA_FLIP_PROBS = [0., 1.]


@pytest.fixture(scope='module')
def tiny_upernet(tmp_path_factory):
    """The toy UperNet config on disk and a checkpoint of its (randomly initialised) model."""
    root = tmp_path_factory.mktemp('tta')
    shapes.make_ade(root / 'ade', num_train=2, num_val=NUM_VAL_IMAGES, image_size=IMAGE_SIZE,
                    seed=0)
    cfg = toy_config(load_repo_config('cvt13_upernet_ade20k.py'), root)
    config = root / 'upernet_toy.py'
    cfg.dump(str(config))
    checkpoint = root / 'model.pth'
    torch.manual_seed(0)
    torch.save({'state_dict': build_model(cfg).state_dict()}, checkpoint)
    return config, checkpoint, root


def run_test_tool(monkeypatch, capsys, args):
    """tools/test.py in-process; returns the config it built the runner from, the images that
    reached the segmentor's forward (one per view and image, after its data preprocessor) and
    the tool's output."""
    built, views, build_runner = {}, [], test_tool.build_runner

    def record_views(segmentor, args, kwargs):
        views.extend(kwargs['inputs'].detach().clone())

    def recording_build_runner(cfg):
        built['cfg'] = cfg.copy()
        runner = build_runner(cfg)
        # The SegTTAModel hands each view to the segmentor it wraps.
        segmentor = getattr(runner.model, 'module', runner.model)
        segmentor.register_forward_pre_hook(record_views, with_kwargs=True)
        return runner

    monkeypatch.setattr(test_tool, 'build_runner', recording_build_runner)
    test_tool.main([str(arg) for arg in args])
    return built['cfg'], views, capsys.readouterr().out


@pytest.mark.parametrize('tta', [False, True], ids=['plain', 'tta'])
def test_test_tool_evaluates_with_and_without_tta(tiny_upernet, monkeypatch, capsys, tmp_path,
                                                  tta):
    config, checkpoint, _ = tiny_upernet
    args = [config, checkpoint, '--work-dir', tmp_path] + (['--tta'] if tta else [])
    cfg, views, output = run_test_tool(monkeypatch, capsys, args)

    pipeline = cfg.test_dataloader.dataset.pipeline
    heights = sorted({view.shape[-2] for view in views})
    if tta:
        assert cfg.model.type == 'SegTTAModel' and cfg.model.module.type == 'EncoderDecoder'
        assert cfg.model.module.backbone.type == 'CvT'
        augment = next(step for step in pipeline if step['type'] == 'TestTimeAug')
        resizes, flips = augment['transforms'][:2]
        assert [step['scale_factor'] for step in resizes] == TTA_SCALE_FACTORS
        assert [step['prob'] for step in flips] == TTA_FLIP_PROBS
        assert len(views) == NUM_VAL_IMAGES * len(TTA_SCALE_FACTORS) * len(TTA_FLIP_PROBS)
        assert heights == [IMAGE_SIZE * factor for factor in TTA_SCALE_FACTORS]
        # Every view's mirror image reached the model too, and no view twice: each scale went
        # once unflipped and once flipped.
        for view in views:
            assert any(torch.equal(view.flip(-1), other) for other in views)
        assert not any(torch.equal(view, other)
                       for index, view in enumerate(views) for other in views[index + 1:])
    else:
        assert cfg.model.type == 'EncoderDecoder'
        assert all(step['type'] != 'TestTimeAug' for step in pipeline)
        # Each image once, at the one scale of the (toy-sized) test pipeline's Resize.
        assert len(views) == NUM_VAL_IMAGES and len(heights) == 1
    miou = [line for line in output.splitlines() if line.startswith('mIoU: ')]
    assert len(miou) == 1, output
    assert 0 <= float(miou[0].split(': ')[1]) <= 100


def test_tta_without_tta_settings_is_refused(tiny_upernet, tmp_path):
    config, checkpoint, root = tiny_upernet
    no_tta = root / 'no_tta.py'
    no_tta.write_text(config.read_text() + '\ntta_model = None\n')
    with pytest.raises(SystemExit, match='tta_model and tta_pipeline'):
        test_tool.main([str(no_tta), str(checkpoint), '--work-dir', str(tmp_path), '--tta'])
