"""The environment: compiled mmcv ops agree with torchvision, and Runner checkpoints resume on
this torch while untrusted pickles are still refused."""
import os
import pickle

import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint
from torch.utils.data import Dataset

import cvt_mm  # noqa: F401  (allowlists Runner checkpoint types)


def test_task_libraries_and_compiled_ops_import():
    import mmcv._ext  # noqa: F401
    import mmdet.models  # noqa: F401
    import mmpretrain.models  # noqa: F401
    import mmseg.models  # noqa: F401


def random_boxes(count, size, generator):
    xy = torch.rand(count, 2, generator=generator) * size * 0.8
    wh = torch.rand(count, 2, generator=generator) * size * 0.4 + 1
    return torch.cat([xy, xy + wh], dim=1)


@pytest.mark.parametrize('sampling_ratio', [0, 2])
def test_mmcv_roi_align_matches_torchvision(sampling_ratio):
    from mmcv.ops import RoIAlign
    from torchvision.ops import roi_align
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 8, 40, 56, generator=generator)
    boxes = random_boxes(30, 200, generator)
    batch_index = torch.randint(0, 2, (30, 1), generator=generator).float()
    rois = torch.cat([batch_index, boxes], dim=1)
    ours = RoIAlign((7, 7), spatial_scale=0.25, sampling_ratio=sampling_ratio,
                    aligned=True)(features, rois)
    reference = roi_align(features, rois, (7, 7), spatial_scale=0.25,
                          sampling_ratio=sampling_ratio, aligned=True)
    assert ours.abs().max() > 0
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)


def test_mmcv_batched_nms_matches_torchvision():
    from mmcv.ops import batched_nms
    from torchvision.ops import batched_nms as tv_batched_nms
    generator = torch.Generator().manual_seed(1)
    boxes = random_boxes(300, 100, generator)
    scores = torch.rand(300, generator=generator)
    classes = torch.randint(0, 4, (300,), generator=generator)
    _, keep = batched_nms(boxes, scores, classes, dict(type='nms', iou_threshold=0.5))
    reference = tv_batched_nms(boxes, scores, classes, 0.5)
    assert 20 < len(reference) < 300  # suppression actually happened
    assert keep.tolist() == reference.tolist()


class LinearRegressor(BaseModel):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, targets, mode='tensor'):
        prediction = self.linear(torch.stack(inputs)).squeeze(-1)
        if mode == 'loss':
            return dict(loss=((prediction - torch.stack(targets)) ** 2).mean())
        return prediction


class PointsDataset(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, index):
        point = torch.tensor([index / 8, 1 - index / 8])
        return dict(inputs=point, targets=point.sum())


def make_runner(work_dir, **kwargs):
    return Runner(
        model=LinearRegressor(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=PointsDataset(), batch_size=4,
                              sampler=dict(type='DefaultSampler', shuffle=True)),
        train_cfg=dict(by_epoch=True, max_epochs=2),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
        param_scheduler=[dict(type='LinearLR', start_factor=0.1, by_epoch=False, end=2),
                         dict(type='CosineAnnealingLR', by_epoch=True, T_max=2)],
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)),
        randomness=dict(seed=0), **kwargs)


def test_runner_trains_saves_and_resumes(tmp_path):
    first = make_runner(tmp_path / 'first')
    first.train()
    epoch1 = tmp_path / 'first' / 'epoch_1.pth'
    assert epoch1.exists() and (tmp_path / 'first' / 'epoch_2.pth').exists()
    saved = torch.load(epoch1)  # the default, weights_only=True, on this torch
    assert saved['meta']['epoch'] == 1

    resumed = make_runner(tmp_path / 'resumed', load_from=str(epoch1), resume=True)
    resumed.train()
    assert resumed.train_loop.epoch == 2
    # The optimizer state came back: AdamW's step count continues from epoch 1's two steps.
    state = resumed.optim_wrapper.optimizer.state_dict()['state']
    assert int(next(iter(state.values()))['step']) == 4


class ExecutesOnLoad:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


def test_untrusted_pretrained_pickle_is_refused(tmp_path):
    marker = tmp_path / 'code_ran'
    payload = tmp_path / 'pretrained.pth'
    with open(payload, 'wb') as file:
        pickle.dump({'state_dict': ExecutesOnLoad(marker)}, file)
    with pytest.raises(pickle.UnpicklingError):
        _load_checkpoint(str(payload), map_location='cpu')  # how init_cfg Pretrained loads
    assert not marker.exists()


def test_checkpoint_getattr_reaches_only_history_buffer_statistics(tmp_path):
    """The getattr allowlisted for HistoryBuffer cannot fetch anything else."""

    from mmengine.logging import HistoryBuffer

    class FetchesMethod:
        def __reduce__(self):
            return (getattr, (HistoryBuffer, 'update'))

    path = tmp_path / 'crafted.pth'
    torch.save({'x': FetchesMethod()}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)
