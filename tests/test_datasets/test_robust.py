"""SkipBadSamples and SkippedSamplesHook: a toy Mask R-CNN run trains past two corrupt JPEGs and
lists them; without the switch the run fails naming the corrupt file; the wrapper's rules."""
import pickle

import pytest
from helpers import LogCapture, load_repo_config, toy_config

from cvt_mm.datasets import BadSampleError, SkipBadSamples, skip_bad_samples
from cvt_mm.engine import build_runner
from cvt_mm.toy import shapes

NUM_TRAIN = 4  # two iterations of two images; two of the four are corrupt


@pytest.fixture(scope='module')
def corrupt_coco(tmp_path_factory):
    """Toy COCO whose train images 1 and 3 (indices 0 and 2) are garbage bytes."""
    root = tmp_path_factory.mktemp('corrupt_coco')
    shapes.make_coco(root / 'coco', num_train=NUM_TRAIN, num_val=1, image_size=128, seed=0)
    corrupt = [root / 'coco' / 'train2017' / f'{image_id:012d}.jpg' for image_id in (1, 3)]
    for path in corrupt:
        path.write_bytes(b'\x00garbage, not a JPEG\xff' * 64)
    return root, corrupt


def toy_maskrcnn(root, work_dir):
    cfg = toy_config(load_repo_config('cvt13_maskrcnn_coco.py'), root)
    cfg.train_cfg.val_begin = 1000  # training only
    cfg.work_dir = str(work_dir)
    return cfg


def test_training_skips_and_lists_the_corrupt_images(corrupt_coco, tmp_path):
    root, corrupt = corrupt_coco
    cfg = toy_maskrcnn(root, tmp_path)
    skip_bad_samples(cfg, max_skips=2)
    runner = build_runner(cfg)
    with LogCapture() as log:
        runner.train()
    assert (tmp_path / 'epoch_1.pth').is_file()
    skipped = [message for message in log.messages if message.startswith('skipping a bad sample')]
    assert len(skipped) == 2  # once each
    assert [any(str(path) in message for message in skipped) for path in corrupt] == [True, True]
    summary = [message for message in log.messages if 'bad samples were skipped' in message]
    assert len(summary) == 1
    listed = summary[0].splitlines()[1:]
    assert [line.split(': ')[0].strip() for line in listed] == [str(path) for path in corrupt]
    assert 'failed to load (sample 0)' in listed[0] and 'failed to load (sample 2)' in listed[1]
    record = runner.log_dir + '/skipped_samples.jsonl'
    assert len(open(record).read().splitlines()) == 2


def test_without_the_switch_the_error_names_the_corrupt_file(corrupt_coco, tmp_path):
    root, corrupt = corrupt_coco
    runner = build_runner(toy_maskrcnn(root, tmp_path))
    with pytest.raises(Exception) as error:
        runner.train()
    assert any(str(path) in str(error.value) for path in corrupt), repr(error.value)


# ----------------------------------------------------------------------------- the wrapper alone
class FilesDataset:
    """Samples 'a.jpg', 'b.jpg', ...; those listed in ``bad`` raise as a decoder would."""

    metainfo = dict(classes=('x', ))

    def __init__(self, files, bad):
        self.files, self.bad = files, set(bad)

    def __len__(self):
        return len(self.files)

    def get_data_info(self, index):
        return dict(img_path=self.files[index])

    def __getitem__(self, index):
        if index in self.bad:
            raise OSError('cannot identify image file <_io.BytesIO object at 0x7f>\nsecond line')
        return self.files[index]


@pytest.fixture
def files(tmp_path):
    return [str(tmp_path / f'{name}.jpg') for name in 'abcd']


def test_bad_samples_are_replaced_by_the_next_index(files):
    wrapper = SkipBadSamples(FilesDataset(files, bad=[1, 2, 3]), max_skips=3)
    assert [wrapper[index] for index in range(4)] == [files[0]] * 4  # 3 wraps around to 0
    assert sorted(wrapper.skipped) == [1, 2, 3]
    assert wrapper.metainfo == dict(classes=('x', )) and len(wrapper) == 4
    assert wrapper.files == files  # other attributes come from the wrapped data set


def test_max_skips_0_raises_one_line_naming_the_file(files):
    wrapper = SkipBadSamples(FilesDataset(files, bad=[2]), max_skips=0)
    assert wrapper[1] == files[1]
    with pytest.raises(BadSampleError) as error:
        wrapper[2]
    assert str(error.value) == (f'{files[2]}: failed to load (sample 2): OSError: cannot identify '
                                'image file <_io.BytesIO object at 0x7f> second line')


def test_more_bad_samples_than_max_skips_stop(files):
    wrapper = SkipBadSamples(FilesDataset(files, bad=[0, 1]), max_skips=1)
    with pytest.raises(BadSampleError, match=r'more than max_skips=1 bad samples; the last: '
                       rf'{files[1]}: failed to load \(sample 1\)'):
        wrapper[0]


def test_worker_copies_share_the_record_and_log_once(files, tmp_path):
    record = tmp_path / 'skipped.jsonl'
    wrapper = SkipBadSamples(FilesDataset(files, bad=[1]), max_skips=1, record_file=str(record))
    workers = [pickle.loads(pickle.dumps(wrapper)) for _ in range(2)]  # as spawned workers
    with LogCapture() as log:
        assert [worker[1] for worker in workers] == [files[2], files[2]]
    assert len([m for m in log.messages if m.startswith('skipping a bad sample')]) == 1
    assert len(record.read_text().splitlines()) == 1
    assert list(wrapper.known_records()) == [1]


def test_an_unparsable_annotation_file_is_named(tmp_path):
    from cvt_mm.engine import register_task_modules
    register_task_modules('mmdet')
    shapes.make_coco(tmp_path / 'coco', num_train=1, num_val=1, image_size=64, seed=0)
    ann_file = tmp_path / 'coco' / 'annotations' / 'instances_train2017.json'
    ann_file.write_text(ann_file.read_text()[:100])
    with pytest.raises(BadSampleError, match=rf'^{ann_file}: building CocoDataset from this '
                       'annotation file failed: JSONDecodeError: '):
        SkipBadSamples(dict(type='CocoDataset', data_root=str(tmp_path / 'coco'),
                            ann_file='annotations/instances_train2017.json',
                            data_prefix=dict(img='train2017/'), pipeline=[]))
