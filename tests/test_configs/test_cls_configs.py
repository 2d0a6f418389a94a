"""The mmpretrain configs: ImageNet classification (configs/cvt*_in*.py) and transfer benchmarks
(configs/transfer/).

Each config loads and builds its model; its evaluation pipeline is compared pixel for pixel with
the official torchvision transforms on a tiny fake dataset in the real on-disk layout; and one
training iteration runs through mmengine's Runner with a tiny CvT.
"""
import copy
import functools
import pickle
from pathlib import Path

import mat4py
import numpy as np
import pytest
import torch
import torch.nn as nn
from helpers import CONFIG_DIR
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmpretrain.registry import DATASETS, MODELS
from PIL import Image
from torchvision import transforms as T

import cvt_mm  # noqa: F401  (registers CvT)
from cvt_mm import checkpoint
from cvt_mm.models.backbones.cvt import CvT
from cvt_mm.testing import FAST_TEST_ARCH

# config -> (variant, evaluation resolution)
CLASSIFICATION_CONFIGS = {
    'cvt13_in1k.py': ('13', 224),
    'cvt13_in1k-384.py': ('13', 384),
    'cvt21_in1k.py': ('21', 224),
    'cvt21_in1k-384.py': ('21', 384),
    'cvt13_in22k-384.py': ('13', 384),
    'cvt21_in22k-384.py': ('21', 384),
    'cvtw24_in22k-384.py': ('w24', 384),
}
# The official optimiser settings per 224 config (experiments/imagenet/cvt/*.yaml):
# (lr, images the lr is for, weight decay).
OFFICIAL_OPTIMISER = {
    'cvt13_in1k.py': (2.5e-4, 256, 0.05),
    'cvt21_in1k.py': (1.25e-4, 128, 0.1),
}
IMAGENET_MEAN = [123.675, 116.28, 103.53]
IMAGENET_STD = [58.395, 57.12, 57.375]
TINY_HEAD_CHANNELS = FAST_TEST_ARCH['embed_dims'][-1]

# (width, height) of the fake images: landscape and portrait with a long side that the
# short-side resize does not map to a whole number, and one smaller than the crop.
FAKE_IMAGE_SIZES = [(333, 250), (250, 333), (64, 48)]


@functools.lru_cache(maxsize=None)
def _parsed_config(name: str) -> Config:
    return Config.fromfile(str(CONFIG_DIR / name))


def load_config(name: str) -> Config:
    """A private copy of the parsed config (parsing resolves mmpretrain:: bases: slow), with
    mmpretrain as the default scope, whatever scope an earlier test left current."""
    init_default_scope('mmpretrain')
    return copy.deepcopy(_parsed_config(name))


def random_image(width: int, height: int, seed: int) -> Image.Image:
    """Smooth colour gradients plus noise: like a photo, so that a wrong resampling filter or a
    crop shifted by a pixel changes the result."""
    rng = np.random.RandomState(seed)
    coarse = rng.randint(0, 256, (max(height // 8, 2), max(width // 8, 2), 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.BILINEAR)
    noise = rng.randint(-20, 21, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(image, dtype=int) + noise, 0, 255).astype(np.uint8))


def quiet_runner_cfg(cfg: Config, work_dir: Path, batch_size: int) -> Config:
    """Training only, with a tiny CvT: no validation, no worker processes, little logging."""
    cfg.work_dir = str(work_dir)
    cfg.log_level = 'WARNING'
    cfg.train_dataloader.batch_size = batch_size
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.persistent_workers = False
    for key in ('val', 'test'):
        cfg[f'{key}_dataloader'] = None
        cfg[f'{key}_cfg'] = None
        cfg[f'{key}_evaluator'] = None
    cfg.default_hooks.logger.interval = 1
    cfg.model.backbone.arch = FAST_TEST_ARCH
    cfg.model.head.in_channels = TINY_HEAD_CHANNELS
    return cfg


# ------------------------------------------------------------------------------------------
# Classification configs
# ------------------------------------------------------------------------------------------

def test_every_classification_and_transfer_config_is_covered():
    found = {path.name for pattern in ('cvt*_in1k*.py', 'cvt*_in22k*.py')
             for path in CONFIG_DIR.glob(pattern)}
    assert found == set(CLASSIFICATION_CONFIGS)
    assert {path.name for path in (CONFIG_DIR / 'transfer').glob('*.py')} == set(TRANSFER_CONFIGS)


@pytest.mark.parametrize('name', sorted(CLASSIFICATION_CONFIGS))
def test_config_builds_the_variant_with_a_1000_class_head(name):
    variant, size = CLASSIFICATION_CONFIGS[name]
    cfg = load_config(name)
    assert cfg.custom_imports == dict(imports=['cvt_mm'], allow_failed_imports=False)
    assert cfg.default_scope == 'mmpretrain'
    assert cfg.train_dataloader.dataset.data_root == 'data/imagenet'
    assert cfg.data_preprocessor.mean == IMAGENET_MEAN and cfg.data_preprocessor.std == IMAGENET_STD
    assert cfg.data_preprocessor.to_rgb  # LoadImageFromFile gives BGR
    # On the meta device: shapes without memory, so CvT-W24 costs nothing.
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
        logits = model(torch.empty(2, 3, size, size), mode='tensor')
    expected = CvT.arch_zoo[variant]
    for key in ('embed_dims', 'depths', 'num_heads'):
        assert model.backbone.arch_settings[key] == expected[key]
    assert logits.shape == (2, 1000)  # the head width fits the backbone


@pytest.fixture(scope='module')
def fake_imagenet(tmp_path_factory):
    """mmpretrain's ImageNet layout with annotation files: {train,val}/... and meta/*.txt.
    PNG, so that mmcv's and PIL's decoders cannot differ."""
    root = tmp_path_factory.mktemp('imagenet')
    for split in ('train', 'val'):
        lines = []
        for index, (width, height) in enumerate(FAKE_IMAGE_SIZES):
            relative = f'n{index:08d}/{split}_{index}.png' if split == 'train' else f'{index}.png'
            path = root / split / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            random_image(width, height, seed=index).save(path)
            lines.append(f'{relative} {index * 7}')
        (root / 'meta').mkdir(exist_ok=True)
        (root / 'meta' / f'{split}.txt').write_text('\n'.join(lines) + '\n')
    return root


def official_eval_transform(size: int):
    """microsoft/CvT lib/dataset/transformas/build.py, evaluation branch, with the yaml settings
    TEST.INTERPOLATION 3 (bicubic) and TEST.CENTER_CROP True at 224 / False at 384."""
    if size == 224:
        return T.Compose([T.Resize(int(size / 0.875), interpolation=T.InterpolationMode.BICUBIC),
                          T.CenterCrop(size)])
    return T.Resize((size, size), interpolation=T.InterpolationMode.BICUBIC)


@pytest.mark.parametrize('name', sorted(CLASSIFICATION_CONFIGS))
def test_eval_pipeline_equals_the_official_preprocessing(name, fake_imagenet):
    _, size = CLASSIFICATION_CONFIGS[name]
    cfg = load_config(name)
    init_default_scope('mmpretrain')
    dataset_cfg = cfg.test_dataloader.dataset
    dataset_cfg.data_root = str(fake_imagenet)
    dataset = DATASETS.build(dataset_cfg)
    assert len(dataset) == len(FAKE_IMAGE_SIZES)
    reference = official_eval_transform(size)
    for index in range(len(dataset)):
        sample = dataset[index]
        inputs = sample['inputs']  # uint8, BGR, CHW: data_preprocessor normalises later
        assert inputs.shape == (3, size, size)
        assert sample['data_samples'].gt_label.item() == index * 7
        expected_rgb = np.asarray(reference(Image.open(fake_imagenet / 'val' / f'{index}.png')))
        expected = torch.from_numpy(expected_rgb[..., ::-1].copy()).permute(2, 0, 1)
        assert torch.equal(inputs, expected), f'image {index} differs from the official transform'


@pytest.mark.parametrize('name', sorted(OFFICIAL_OPTIMISER))
def test_224_configs_carry_the_official_training_recipe(name):
    lr, lr_batch, weight_decay = OFFICIAL_OPTIMISER[name]
    cfg = load_config(name)
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.weight_decay) == ('AdamW', lr, weight_decay)
    assert cfg.auto_scale_lr == dict(base_batch_size=lr_batch, enable=True)
    assert cfg.train_cfg.max_epochs == 300
    warmup, cosine = cfg.param_scheduler
    assert (warmup.type, warmup.end, cosine.type, cosine.begin, cosine.end, cosine.eta_min) == \
        ('LinearLR', 5, 'CosineAnnealingLR', 5, 300, 1e-5)

    steps = {step.type: step for step in cfg.train_dataloader.dataset.pipeline}
    assert steps['RandomResizedCrop'].scale == 224
    assert steps['RandomResizedCrop'].interpolation == 'bicubic'
    rand_augment = steps['RandAugment']
    assert (rand_augment.policies, rand_augment.magnitude_level, rand_augment.magnitude_std,
            rand_augment.num_policies) == ('timm_increasing', 9, 0.5, 2)
    assert steps['RandomErasing'].erase_prob == 0.25
    assert [(aug.type, aug.alpha) for aug in cfg.model.train_cfg.augments] == \
        [('Mixup', 0.8), ('CutMix', 1.0)]
    assert cfg.model.head.loss == dict(type='LabelSmoothLoss', label_smooth_val=0.1,
                                       mode='original')


def test_384_configs_train_on_384_crops():
    cfg = load_config('cvt13_in1k-384.py')
    steps = {step.type: step for step in cfg.train_dataloader.dataset.pipeline}
    assert steps['RandomResizedCrop'].scale == 384
    assert 'RandAugment' in steps and 'RandomErasing' in steps


def official_weight_decay_exempt(model: nn.Module):
    """Parameter names without weight decay in microsoft/CvT lib/optim/build.py (set_wd) with
    WITHOUT_WD_LIST ['bn', 'bias', 'ln'] and no_weight_decay() = {cls_token, pos_embed}."""
    exempt = set()
    for module_name, module in model.named_modules():
        if isinstance(module, (nn.BatchNorm2d, nn.LayerNorm)):
            exempt |= {f'{module_name}.{name}' for name, _ in module.named_parameters()}
    for name, _ in model.named_parameters():
        if name.endswith('.bias') or 'cls_token' in name or 'pos_embed' in name:
            exempt.add(name)
    return exempt


def test_cvt13_in1k_trains_one_iteration_with_official_parameter_groups(tmp_path, fake_imagenet):
    batch_size = len(FAKE_IMAGE_SIZES)  # one epoch = one iteration
    cfg = quiet_runner_cfg(load_config('cvt13_in1k.py'), tmp_path / 'work', batch_size)
    cfg.train_dataloader.dataset.data_root = str(fake_imagenet)
    cfg.train_cfg.max_epochs = 1
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 1

    model = runner.model
    names = {id(param): name for name, param in model.named_parameters()}
    exempt = official_weight_decay_exempt(model)
    groups = runner.optim_wrapper.optimizer.param_groups
    decay = {names[id(param)]: group['weight_decay'] for group in groups
             for param in group['params']}
    assert set(decay) == set(names.values())
    assert {name for name, value in decay.items() if value == 0} == exempt
    assert {value for name, value in decay.items() if name not in exempt} == {0.05}
    # Depthwise conv weights keep their decay ('dw' is not in WITHOUT_WD_LIST).
    assert decay['backbone.stages.0.blocks.0.attn.conv_proj_k.conv.weight'] == 0.05
    # auto_scale_lr: 2.5e-4 per 256 images, scaled to this batch.
    for group in groups:
        assert group['initial_lr'] == pytest.approx(2.5e-4 * batch_size / 256)


# ------------------------------------------------------------------------------------------
# Transfer configs, each with a fake dataset in its real on-disk layout
# ------------------------------------------------------------------------------------------

def write_cifar(root: Path, folder: str, train_files, test_file: str, meta_file: str,
                label_key: str, num_classes: int):
    """The python pickles of cifar-{10,100}: dicts of flat uint8 rows (R, G, B planes)."""
    directory = root / folder
    directory.mkdir(parents=True)
    rng = np.random.RandomState(0)
    for file_name in [*train_files, test_file]:
        batch = {'data': rng.randint(0, 256, (2, 3 * 32 * 32), dtype=np.uint8),
                 label_key: [0, num_classes - 1]}
        (directory / file_name).write_bytes(pickle.dumps(batch))
    (directory / meta_file).write_bytes(pickle.dumps({'label_names': []}))


def write_cifar10(root: Path):
    write_cifar(root, 'cifar-10-batches-py', [f'data_batch_{i}' for i in range(1, 6)],
                'test_batch', 'batches.meta', 'labels', 10)


def write_cifar100(root: Path):
    write_cifar(root, 'cifar-100-python', ['train'], 'test', 'meta', 'fine_labels', 100)


def write_flowers102(root: Path):
    """jpg/image_%05d.jpg, imagelabels.mat (1-based labels), setid.mat (1-based image ids)."""
    (root / 'jpg').mkdir(parents=True)
    labels = [1, 102, 5, 17, 3, 9]
    for image_id in range(1, len(labels) + 1):
        random_image(120, 90, seed=image_id).save(root / 'jpg' / f'image_{image_id:05d}.jpg')
    mat4py.savemat(str(root / 'imagelabels.mat'), {'labels': labels})
    mat4py.savemat(str(root / 'setid.mat'), {'trnid': [1, 2], 'valid': [3, 4], 'tstid': [5, 6]})


def write_pets(root: Path):
    """images/<name>.jpg; annotations/{trainval,test}.txt, lines '<name> <class 1..37> <species>
    <breed>'."""
    (root / 'images').mkdir(parents=True)
    (root / 'annotations').mkdir()
    splits = {'trainval': [('Abyssinian_1', 1), ('yorkshire_terrier_1', 37)],
              'test': [('Bengal_2', 6), ('pug_3', 26)]}
    for split, entries in splits.items():
        for seed, (name, _) in enumerate(entries):
            random_image(100, 140, seed=seed).save(root / 'images' / f'{name}.jpg')
        (root / 'annotations' / f'{split}.txt').write_text(
            ''.join(f'{name} {class_id} 1 1\n' for name, class_id in entries))


# config -> (writer of the fake data, number of classes, data root in the config,
#            fake training and test set sizes)
TRANSFER_CONFIGS = {
    'cvt13_cifar10.py': (write_cifar10, 10, 'data/cifar10', (10, 2)),  # 5 training batches
    'cvt13_cifar100.py': (write_cifar100, 100, 'data/cifar100', (2, 2)),
    'cvt13_flowers102.py': (write_flowers102, 102, 'data/flowers102', (4, 2)),  # train + val
    'cvt13_pets.py': (write_pets, 37, 'data/pets', (2, 2)),
}


@pytest.fixture(scope='module')
def tiny_imagenet_checkpoint(tmp_path_factory):
    """What tools/convert_checkpoint.py writes, for a tiny CvT with a 1000-class head."""
    root = tmp_path_factory.mktemp('checkpoint')
    torch.manual_seed(0)
    with torch.no_grad():
        classifier = MODELS.build(dict(
            type='ImageClassifier', backbone=dict(type='CvT', arch=FAST_TEST_ARCH),
            head=dict(type='LinearClsHead', num_classes=1000, in_channels=TINY_HEAD_CHANNELS)))
        for param in classifier.parameters():  # distinguishable from any fresh init
            param.normal_(0, 0.5)
    src = root / 'tiny_classifier.pth'
    torch.save({'state_dict': classifier.state_dict()}, src)
    dst = root / 'cvt_demo_in1k.pth'
    checkpoint.convert_checkpoint(src, dst)
    return dst


@pytest.fixture
def cifar_without_md5_check(monkeypatch):
    """mmpretrain's CIFAR classes check the real files' md5 sums (and would download them)."""
    monkeypatch.setattr('mmpretrain.datasets.cifar.check_md5', lambda *args, **kwargs: True)


@pytest.mark.parametrize('name', sorted(TRANSFER_CONFIGS))
def test_transfer_config_fine_tunes_from_a_converted_checkpoint(
        name, tmp_path, tiny_imagenet_checkpoint, cifar_without_md5_check):
    write_data, num_classes, data_root, dataset_sizes = TRANSFER_CONFIGS[name]
    cfg = load_config(f'transfer/{name}')
    assert cfg.model.backbone.init_cfg == dict(
        type='Pretrained', checkpoint='checkpoints/cvt13_in1k.pth', prefix='backbone.')
    assert cfg.model.head.num_classes == num_classes == cfg.data_preprocessor.num_classes
    assert cfg.model.train_cfg is None  # no Mixup/CutMix when fine-tuning
    assert cfg.optim_wrapper.optimizer.type == 'SGD'

    write_data(tmp_path / 'data')
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[loader].dataset.data_root == data_root
        cfg[loader].dataset.data_root = str(tmp_path / 'data')

    init_default_scope('mmpretrain')
    for loader, size in zip(('train_dataloader', 'test_dataloader'), dataset_sizes):
        dataset = DATASETS.build(cfg[loader].dataset)
        assert len(dataset) == size
        sample = dataset[0]
        assert sample['inputs'].shape == (3, 384, 384) and sample['inputs'].dtype == torch.uint8
        assert 0 <= sample['data_samples'].gt_label.item() < num_classes

    cfg = quiet_runner_cfg(cfg, tmp_path / 'work', batch_size=1)  # 384x384: keep it cheap
    cfg.model.backbone.init_cfg.checkpoint = str(tiny_imagenet_checkpoint)
    cfg.train_cfg.max_iters = 1
    runner = Runner.from_cfg(cfg)

    # The backbone starts from the checkpoint; the head, of another size, starts fresh.
    runner.model.init_weights()
    pretrained = torch.load(tiny_imagenet_checkpoint, weights_only=True)['state_dict']
    for key, value in runner.model.backbone.state_dict().items():
        torch.testing.assert_close(value, pretrained[f'backbone.{key}'], msg=key)
    assert runner.model.head.fc.weight.shape == (num_classes, TINY_HEAD_CHANNELS)

    runner.train()
    assert runner.iter == 1
    assert np.isfinite(runner.message_hub.get_scalar('train/loss').current())
