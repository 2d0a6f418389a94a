"""Helpers shared by the test modules (imported as ``helpers``; pytest.ini puts tests/ on the
path). Reference models and FAST_TEST_ARCH are in ``cvt_mm.testing``, the toy data and config
shrinking in ``cvt_mm.toy``."""
import copy
import logging
import os
import socket
from pathlib import Path
from typing import Optional

from mmengine.config import Config
from mmengine.logging import MMLogger

from cvt_mm.models.backbones.cvt import CvT
from cvt_mm.tasks import DETECTION, SEGMENTATION, task_of_config
from cvt_mm.testing import FAST_TEST_ARCH, randomize_norms
from cvt_mm.toy import shapes
from cvt_mm.toy.shrinking import shrink_config

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / 'configs'
TOOLS_DIR = REPO_ROOT / 'tools'

TOY_IMAGE_SIZE = 128
TOY_NUM_TRAIN, TOY_NUM_VAL = 2, 2
# The real pipelines resize to about 800 px (COCO) and crop 512 px (ADE20K); toy runs multiply
# every pipeline size by these factors, keeping the pipelines' structure intact. UperNet's
# 512-channel fusion convs at stride 4 dominate its cost, hence its 64-px crops.
TOY_SIZE_FACTOR = {DETECTION: TOY_IMAGE_SIZE / 800, SEGMENTATION: 64 / 512}


# Imported at start-up by every Python process that has its directory on PYTHONPATH: mmcv-lite
# (no mmcv._ext) without cvt_mm's start-up finder, so that only `import cvt_mm` stands in for
# it; on an environment with compiled ops, it hides them.
WITHOUT_MMCV_OPS = '''
import importlib.abc, sys

class NoMmcvOps(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == 'mmcv._ext':
            raise ModuleNotFoundError("No module named 'mmcv._ext'")

sys.meta_path.insert(0, NoMmcvOps())
'''


def sitecustomize_env(site: Path, source: str) -> dict:
    """os.environ with a ``sitecustomize.py`` of ``source`` written to ``site`` and put first
    on PYTHONPATH: every Python process started with it runs ``source`` at start-up."""
    site.mkdir(parents=True, exist_ok=True)
    (site / 'sitecustomize.py').write_text(source)
    return dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(site), os.environ.get('PYTHONPATH')])))


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for a launcher's rendezvous."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def fast_test_dense_backbone(**kwargs) -> CvT:
    """The FAST_TEST_ARCH CvT with its three stages' maps as outputs, initialised, random norms."""
    model = CvT(arch=FAST_TEST_ARCH, out_type='featmap', out_indices=(0, 1, 2), **kwargs)
    model.init_weights()
    return randomize_norms(model)


def make_toy_datasets(root: Path) -> Path:
    """COCO at <root>/coco and ADE20K at <root>/ade/ADEChallengeData2016, as the configs expect
    under data/."""
    shapes.make_coco(root / 'coco', num_train=TOY_NUM_TRAIN, num_val=TOY_NUM_VAL,
                       image_size=TOY_IMAGE_SIZE, seed=0)
    shapes.make_ade(root / 'ade', num_train=TOY_NUM_TRAIN, num_val=TOY_NUM_VAL,
                      image_size=TOY_IMAGE_SIZE, seed=0)
    return root


def load_repo_config(name: str) -> Config:
    cfg = Config.fromfile(CONFIG_DIR / name)
    task_of_config(cfg).register_modules()
    return cfg


def task_registry(cfg: Config, name: str):
    return task_of_config(cfg).registry(name)


def build_model(cfg: Config):
    return task_registry(cfg, 'MODELS').build(cfg.model)


def as_list(node) -> list:
    """A config entry that is one dict or a list of them (cascade stages), as a list."""
    return list(node) if isinstance(node, (list, tuple)) else [node]


def toy_config(cfg: Config, data_root: Optional[Path], arch=FAST_TEST_ARCH) -> Config:
    """A copy of a real detection (Mask R-CNN, Cascade Mask R-CNN, RetinaNet, DINO, Mask2Former)
    or segmentation (UperNet, Mask2Former) config that trains one iteration on the toy data
    under ``data_root`` (see make_toy_datasets) and then validates; ``arch=None`` keeps the
    real backbone. Of the model only the backbone size, the class count (detection) and the
    number of RoIs per image (detection) change; the heads keep their real widths.
    ``data_root=None`` keeps the config's own data, classes and class counts (a recipe for a
    user's data set, run on data made in its layout)."""
    cfg = copy.deepcopy(cfg)
    task = task_of_config(cfg)
    model = cfg.model
    if arch is not None:
        model.backbone.arch = arch
        widths = list(arch['embed_dims'])
        if 'neck' in model:
            # FPN, or the ChannelMapper of the query-based heads: the stages the backbone
            # outputs (RetinaNet's and DINO's skip the stride-4 one).
            model.neck.in_channels = [widths[i] for i in model.backbone.out_indices]
        else:  # UperNet
            model.decode_head.in_channels = widths
            model.auxiliary_head.in_channels = widths[model.auxiliary_head.in_index]
    model.backbone.init_cfg = None  # no checkpoint here: the backbone's own init
    if data_root is None:
        pass
    elif task is DETECTION:
        data_root = f'{data_root}/coco/'
    else:
        data_root = f'{data_root}/ade/ADEChallengeData2016'
    # One epoch of one iteration (the batch holds the whole training set), or one iteration.
    shrink_config(cfg, data_root=data_root, size_factor=TOY_SIZE_FACTOR[task], length=1,
                  num_workers=0, run_name='toy')
    cfg.train_dataloader.batch_size = TOY_NUM_TRAIN
    if task is DETECTION:
        # The toy classes, unless the config brings its own data (then its class counts are
        # what a test checks, and stay as written).
        num_classes = None if data_root is None else len(shapes.SHAPE_CLASSES)
        if 'roi_head' in model:
            if num_classes is not None:
                # A cascade has one box head and one rcnn train_cfg per stage.
                for head in as_list(model.roi_head.bbox_head):
                    head.num_classes = num_classes
                model.roi_head.mask_head.num_classes = num_classes
            # Fewer RoIs for 128-px images with at most four objects: the RoI heads' cost
            # grows with them (sampled RoIs in training, proposals and detections in testing);
            # the mask head's four 256-channel convs per positive RoI dominate a training step.
            for stage_cfg in as_list(model.train_cfg.rcnn):
                stage_cfg.sampler.num = 16
            model.test_cfg.rpn.max_per_img = 100
            model.test_cfg.rcnn.max_per_img = 10
        elif 'panoptic_head' in model:  # Mask2Former, instance segmentation
            if num_classes is not None:
                model.panoptic_head.num_things_classes = num_classes
                model.panoptic_head.loss_cls.class_weight = [1.0] * num_classes + [0.1]
                model.panoptic_fusion_head.num_things_classes = num_classes
            model.test_cfg.max_per_image = 10
        else:  # single-stage (RetinaNet) and DETR-like (DINO)
            if num_classes is not None:
                model.bbox_head.num_classes = num_classes
            model.test_cfg.max_per_img = 10
            # RetinaNet's classifier starts at a 0.01 prior, below the 0.05 score threshold:
            # without this, one iteration in, nothing is detected and COCO reports no metric.
            model.test_cfg.score_thr = 0.
        if num_classes is not None:
            for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
                # CocoDataset keeps only the categories named in its metainfo.
                cfg[loader].dataset.metainfo = dict(classes=shapes.SHAPE_CLASSES)
    # (mmseg: the toy label maps hold 0..5 after reduce_zero_label, a subset of ADE20K's.)
    # The query-based heads with fewer queries for 128-px images with at most four objects
    # (DINO's top-k encoder proposals must not outnumber the smallest image's ~130 tokens), and
    # Mask2Former's mask losses on fewer sampled points (12544 is a 1024-px image's budget).
    if 'num_queries' in model:  # DINO
        model.num_queries = 50
    decode_head = model.get('decode_head') or {}
    mask2former = model.get('panoptic_head') or (
        decode_head if decode_head.get('type') == 'Mask2FormerHead' else None)
    if mask2former is not None:
        mask2former.num_queries = 20
        (model if task is DETECTION else mask2former).train_cfg.num_points = 1024
    return cfg


class LogCapture(logging.Handler):
    """Collects what mmengine logs through ``print_log(..., logger='current')``."""

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())

    def __enter__(self):
        self.logger = MMLogger.get_current_instance()
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc_info):
        self.logger.removeHandler(self)
