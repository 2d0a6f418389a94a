"""Reading every file a config's data sets reference, before a long run finds them one by one.

:func:`check_config` builds each split's data set from the config *without* its pipeline (no
augmentation, no decoding), lets the data set parse its annotations as training would
(``full_init()``, ``get_data_info(i)``), and then opens every image and label file itself:

* images are decoded completely with PIL (``Image.load()``), with truncated files refused: a
  truncated JPEG decodes "successfully" in cv2 (the missing rows come out grey), so the
  training pipeline would never notice it;
* COCO annotation files are read as JSON first, so that a truncated file is reported with its
  name, and their raw records are checked (mmdet's ``CocoDataset`` silently drops degenerate
  boxes, boxes outside the image and unknown category ids, so its parsed data cannot show them);
* label maps are compared with their image's size and, after ``reduce_zero_label`` and the
  data set's ``label_map`` as mmseg applies them, with the class range (255 is ignored);
* classification labels are compared with the class count.

Each fault is a :class:`Problem` naming the file. ``tools/check_dataset.py`` is the command line.

Training and testing use two quick ones (:func:`dataset_setup_problem` once a data set failed to
build, :func:`built_dataset_problem` once it has been built), through
:func:`cvt_mm.engine.name_dataset_faults`: a missing folder, a missing or unparsable annotation
file, a data set without samples, reported as a :class:`DatasetSetupError`.
"""
import copy
import io
import json
import os.path as osp
import re
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import numpy as np
from mmengine import fileio
from PIL import Image, ImageFile

from cvt_mm.tasks import CLASSIFICATION, DETECTION, SEGMENTATION, task_of_config, task_of_module

# Problem kinds, as the report names them.
CORRUPT_IMAGE = 'corrupt image'
MISSING_FILE = 'missing file'
UNPARSABLE_ANNOTATION = 'unparsable annotation file'
MISSING_ANNOTATION = 'missing annotation file'
MISSING_FOLDER = 'missing folder'
EMPTY_DATASET = 'empty data set'
BAD_BOX = 'bad box'
SIZE_MISMATCH = 'size mismatch'
BAD_LABEL = 'bad label'
KINDS = (CORRUPT_IMAGE, MISSING_FILE, UNPARSABLE_ANNOTATION, MISSING_ANNOTATION, MISSING_FOLDER,
         EMPTY_DATASET, BAD_BOX, SIZE_MISMATCH, BAD_LABEL)

IGNORE_INDEX = 255  # mmseg's decode heads' default ignore_index
# Boxes may overshoot the image border by float rounding of polygon extremes; only more than
# this counts as outside.
BOX_BORDER_TOLERANCE = 1.0
SPLITS = ('train', 'val', 'test')

# track(iterable, total, description) -> iterable: a progress display, or nothing.
Track = Callable[[Iterable, int, str], Iterable]


def no_progress(iterable: Iterable, total: int, description: str) -> Iterable:
    """The default ``track``: iterate without showing anything."""
    return iterable


@dataclass(frozen=True)
class Problem:
    """One fault in a data set.

    Args:
        file (str): The file at fault (image, label map or annotation file).
        kind (str): One of :data:`KINDS`.
        detail (str): What is wrong, e.g. ``'box [3, 4, 0, 10] has width 0'``.
    """
    file: str
    kind: str
    detail: str

    @property
    def message(self) -> str:
        return f'{self.kind}: {self.detail}'

    def __str__(self) -> str:
        return f'{self.file}: {self.message}'


class DatasetSetupError(RuntimeError):
    """A dataloader's data set is broken in a way that :class:`Problem` names (a missing folder,
    a missing or unparsable annotation file, no samples): one line, ``[split] FILE: KIND:
    DETAIL`` as tools/check_dataset.py prints it.

    Args:
        problem (Problem): What is wrong, and where.
        split (str, optional): 'train', 'val' or 'test', when known. Defaults to None.
    """

    def __init__(self, problem: Problem, split: Optional[str] = None):
        self.problem = problem
        self.split = split
        prefix = f'[{split}] ' if split else ''
        super().__init__(prefix + ' '.join(str(problem).split()))  # one line


@contextmanager
def strict_decoding():
    """Make PIL refuse truncated images (other code may have switched that off globally)."""
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def read_image(path: str, backend_args: Optional[dict] = None):
    """Decode an image file completely.

    Args:
        path (str): The file.
        backend_args (dict, optional): mmengine file backend arguments, as the data set's.
            Defaults to None (local files).

    Returns:
        tuple: ``(image, None)`` with the decoded ``PIL.Image``, or ``(None, problem)`` with a
        :class:`Problem` of kind :data:`MISSING_FILE` or :data:`CORRUPT_IMAGE`.
    """
    try:
        data = fileio.get(path, backend_args=backend_args)
    except FileNotFoundError:
        return None, Problem(path, MISSING_FILE, 'does not exist')
    except OSError as error:
        return None, Problem(path, MISSING_FILE, f'cannot be read ({error})')
    if not data:
        return None, Problem(path, CORRUPT_IMAGE, 'the file is empty')
    try:
        with strict_decoding():
            image = Image.open(io.BytesIO(data))
            image.load()
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, ... by format
        # PIL names the in-memory buffer, not the file: the report names the file already.
        detail = re.sub(r' <_io\.BytesIO object at 0x[0-9a-f]+>', '', str(error))
        return None, Problem(path, CORRUPT_IMAGE, f'{type(error).__name__}: {detail}')
    return image, None


def image_problem(path: str, backend_args: Optional[dict] = None) -> Optional[Problem]:
    """The problem of one image file, or None if it decodes completely (see :func:`read_image`).
    """
    return read_image(path, backend_args)[1]


# ----------------------------------------------------------------------------- data sets
def leaf_dataset_cfgs(dataset_cfg: dict) -> List[dict]:
    """The data sets inside wrappers (RepeatDataset, ConcatDataset, SkipBadSamples, ...)."""
    if 'datasets' in dataset_cfg:
        return [leaf for inner in dataset_cfg['datasets'] for leaf in leaf_dataset_cfgs(inner)]
    if 'dataset' in dataset_cfg:
        return leaf_dataset_cfgs(dataset_cfg['dataset'])
    return [dataset_cfg]


def build_unloaded(dataset_cfg: dict):
    """Build a data set without pipeline and without reading its annotations yet.

    Filtering (mmdet's ``filter_empty_gt``, ``min_size``) is switched off so that every image
    the annotations list is checked, including those training would leave out.
    """
    from mmengine.registry import DATASETS

    cfg = copy.deepcopy(dict(dataset_cfg))
    pipeline = cfg.get('pipeline')
    # Unserialized: mmengine's serialization refuses an empty data list, which is reported.
    cfg.update(pipeline=[], lazy_init=True, serialize_data=False)
    if 'filter_cfg' in cfg:
        cfg['filter_cfg'] = None
    dataset = DATASETS.build(cfg)
    dataset.pipeline_reads_segmentation = pipeline_reads_segmentation(pipeline, dataset)
    return dataset


def annotation_file(dataset) -> str:
    """The data set's annotation file (joined with its data_root), or '' if it has none."""
    return getattr(dataset, 'ann_file', '') or ''


# The data_prefix entries of segmentation maps (mmdet's semantic / panoptic, mmseg's labels).
SEGMENTATION_PREFIXES = ('seg', 'seg_map_path')


def pipeline_reads_segmentation(pipeline, dataset) -> bool:
    """Whether a pipeline (transforms or their configs) loads segmentation maps: mmseg's
    ``LoadAnnotations``, mmdet's with ``with_seg=True``, mmdet's ``LoadPanopticAnnotations``."""
    library = task_of_module(type(dataset).__module__)
    seg_by_default = library is not None and library.annotations_load_segmentation
    for transform in pipeline or []:
        if not isinstance(transform, dict):
            if getattr(transform, 'with_seg', False):
                return True
            continue
        name = transform.get('type')
        name = (name if isinstance(name, str) else getattr(name, '__name__', '')).split('.')[-1]
        if name == 'LoadPanopticAnnotations' and transform.get('with_seg', True):
            return True
        if name == 'LoadAnnotations' and transform.get('with_seg', seg_by_default):
            return True
    return False


def reads_segmentation(dataset) -> bool:
    """Whether the data set's pipeline loads segmentation maps (that of its config for a data
    set of :func:`build_unloaded`)."""
    known = getattr(dataset, 'pipeline_reads_segmentation', None)
    if known is not None:
        return known
    transforms = getattr(getattr(dataset, 'pipeline', None), 'transforms', None)
    return pipeline_reads_segmentation(transforms, dataset)


def data_folders(dataset) -> List[str]:
    """The folders a data set reads from: its ``data_root``, then its ``data_prefix`` entries
    (which mmengine has joined with ``data_root``), the segmentation maps' only where the
    pipeline loads them (mmdet's instance configs inherit a panoptic ``seg`` prefix that they
    never read)."""
    prefixes = dict(getattr(dataset, 'data_prefix', None) or {})
    if not reads_segmentation(dataset):
        for key in SEGMENTATION_PREFIXES:
            prefixes.pop(key, None)
    folders = [getattr(dataset, 'data_root', None)] + list(prefixes.values())
    return [folder for folder in folders if isinstance(folder, str) and folder]


def missing_folder(dataset, backend_args: Optional[dict]) -> Optional[Problem]:
    """The first of :func:`data_folders` that is not a folder on the local disk, if any (none
    is looked for with a storage backend other than the local disk)."""
    if backend_args:
        return None
    for folder in data_folders(dataset):
        if '://' not in folder and not osp.isdir(folder):
            return Problem(folder, MISSING_FOLDER, 'is a file, not a folder'
                           if osp.exists(folder) else 'does not exist')
    return None


def empty_dataset_problem(dataset) -> Optional[Problem]:
    """An :data:`EMPTY_DATASET` problem, named by the annotation file or the image folder, if
    the (loaded) data set has no samples."""
    if len(dataset):
        return None
    prefixes = getattr(dataset, 'data_prefix', None) or {}
    where = (annotation_file(dataset) or prefixes.get('img_path') or prefixes.get('img')
             or getattr(dataset, 'data_root', None) or type(dataset).__name__)
    suffix = getattr(dataset, 'img_suffix', None)
    looked_for = f" (it looks for '*{suffix}' images)" if suffix else ''
    return Problem(where, EMPTY_DATASET, f'{type(dataset).__name__} found no samples{looked_for}')


def load_annotations(dataset, backend_args: Optional[dict]) -> List[Problem]:
    """``full_init()`` the data set; its missing folder, its annotation file's problems if that
    fails, or that it has no samples."""
    problem = missing_folder(dataset, backend_args)
    if problem:
        return [problem]
    ann_file = annotation_file(dataset)
    if ann_file and not fileio.exists(ann_file, backend_args=backend_args):
        return [Problem(ann_file, MISSING_ANNOTATION, 'does not exist')]
    try:
        with redirect_stdout(io.StringIO()):  # pycocotools prints its progress on stdout
            dataset.full_init()
    except Exception as error:  # the libraries' parsers raise anything from KeyError to OSError
        return [Problem(ann_file or type(dataset).__name__, UNPARSABLE_ANNOTATION,
                        f'{type(error).__name__}: {error}')]
    problem = empty_dataset_problem(dataset)
    return [problem] if problem else []


def loaded_datasets(dataset_cfg: dict, problems: List[Problem]):
    """Yield ``(dataset, backend_args)`` for each leaf data set whose annotations load; the
    problems of those that do not are appended to ``problems``."""
    for leaf in leaf_dataset_cfgs(dataset_cfg):
        backend_args = leaf.get('backend_args')
        dataset = build_unloaded(leaf)
        load_problems = load_annotations(dataset, backend_args)
        problems += load_problems
        if not load_problems:
            yield dataset, backend_args


# ----------------------------------------------------------------------------- training's checks
def dataset_setup_problem(dataset_cfg: dict) -> Optional[Problem]:
    """Why a data set config failed to build, when one of its folders or files is the cause.

    For each data set inside the config's wrappers: a missing ``data_root`` or ``data_prefix``
    folder, a missing annotation file, an annotation file that is not JSON (for ``.json``
    files, which mmdet parses without naming them) or that the data set cannot parse, or no
    samples at all (which mmengine's serialization refuses with a message naming nothing).

    Args:
        dataset_cfg (dict): The ``dataset`` entry of a dataloader config.

    Returns:
        Problem | None: The first such problem; None when the files are not the cause.
    """
    for leaf in leaf_dataset_cfgs(dataset_cfg):
        backend_args = leaf.get('backend_args')
        try:
            dataset = build_unloaded(leaf)
        except Exception:  # the config itself is at fault: nothing to name
            continue
        ann_file = annotation_file(dataset)
        if ann_file.endswith('.json') and not missing_folder(dataset, backend_args) and \
                fileio.exists(ann_file, backend_args=backend_args):
            problem = read_coco_json(ann_file, backend_args)[1]
            if problem:
                return problem
        problems = load_annotations(dataset, backend_args)
        # A failure to load a data set without annotation file names no file of its own.
        if problems and (ann_file or problems[0].kind != UNPARSABLE_ANNOTATION):
            return problems[0]
    return None


def leaf_datasets(dataset) -> list:
    """The data sets inside a built data set's wrappers (``dataset``, ``datasets``)."""
    inner = getattr(dataset, 'datasets', None)
    if isinstance(inner, (list, tuple)):
        return [leaf for child in inner for leaf in leaf_datasets(child)]
    if getattr(dataset, 'dataset', None) is not None:
        return leaf_datasets(dataset.dataset)
    return [dataset]


def built_dataset_problem(dataset) -> Optional[Problem]:
    """What would fail sample by sample, or puzzle the sampler, in a data set that was built.

    A missing ``data_root`` or ``data_prefix`` folder (mmseg lists the images when it is built,
    but opens each label map only as its sample is loaded) or a data set without samples.

    Args:
        dataset: A built data set (its wrappers are looked into).

    Returns:
        Problem | None: The first such problem, or None.
    """
    for leaf in leaf_datasets(dataset):
        problem = (missing_folder(leaf, getattr(leaf, 'backend_args', None))
                   or empty_dataset_problem(leaf))
        if problem:
            return problem
    return None


def described(path) -> str:
    """The progress bar's label: the annotation file or data root, by its last name."""
    return f'images of {osp.basename(str(path or "").rstrip("/")) or "the data set"}'


def data_infos(dataset) -> List[dict]:
    return [dataset.get_data_info(index) for index in range(len(dataset))]


# ----------------------------------------------------------------------------- detection
def read_coco_json(ann_file: str, backend_args: Optional[dict]):
    """``(content, None)`` or ``(None, problem)``: mmdet's own error names no file."""
    try:
        return json.loads(fileio.get_text(ann_file, backend_args=backend_args)), None
    except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
        return None, Problem(ann_file, UNPARSABLE_ANNOTATION, f'{type(error).__name__}: {error}')


def box_problem(box: Sequence[float], width: float, height: float) -> Optional[str]:
    """What is wrong with an ``[x, y, w, h]`` box in a ``width`` x ``height`` image, if anything.
    """
    x, y, w, h = (float(value) for value in box)
    if not (w > 0 and h > 0):
        return f'box [x, y, w, h] = {list(box)} is degenerate (w or h <= 0)'
    tolerance = BOX_BORDER_TOLERANCE
    if x < -tolerance or y < -tolerance or x + w > width + tolerance or \
            y + h > height + tolerance:
        return f'box [x, y, w, h] = {list(box)} lies outside the {width}x{height} image'
    return None


def coco_record_problems(content: dict, ann_file: str, image_paths: Dict[int, str],
                         classes: Sequence[str]) -> List[Problem]:
    """Boxes, category ids and mask sizes of a COCO file's raw records.

    Args:
        content (dict): The parsed JSON.
        ann_file (str): Its path, for problems that concern the file itself.
        image_paths (dict): Image id -> the path the data set reads it from.
        classes (Sequence[str]): The data set's classes.

    Returns:
        list[Problem]: Named by the image's path when an annotation is at fault.
    """
    problems = []
    categories = {category['id']: category['name'] for category in content.get('categories', [])}
    for name in classes:
        if name not in categories.values():
            problems.append(Problem(ann_file, BAD_LABEL,
                                    f'class {name!r} of the config is not one of its categories'))
    images = {image['id']: image for image in content.get('images', [])}
    for ann in content.get('annotations', []):
        image = images.get(ann.get('image_id'))
        if image is None:
            problems.append(Problem(ann_file, BAD_LABEL, f'annotation {ann.get("id")} refers to '
                                    f'image id {ann.get("image_id")}, which it does not list'))
            continue
        where = image_paths.get(image['id'], image.get('file_name', ann_file))
        label = f'annotation {ann.get("id")}'
        if ann.get('category_id') not in categories:
            problems.append(Problem(where, BAD_LABEL, f'{label}: category_id '
                                    f'{ann.get("category_id")} is not one of the '
                                    f'{len(categories)} categories of {ann_file}'))
        if 'bbox' in ann:
            detail = box_problem(ann['bbox'], image['width'], image['height'])
            if detail:
                problems.append(Problem(where, BAD_BOX, f'{label}: {detail}'))
        segmentation = ann.get('segmentation')
        if isinstance(segmentation, dict) and 'size' in segmentation:
            mask_size = [int(value) for value in segmentation['size']]
            if mask_size != [image['height'], image['width']]:
                problems.append(Problem(where, SIZE_MISMATCH, f'{label}: mask size (h, w) '
                                        f'{tuple(mask_size)} but the image is annotated as '
                                        f'{(image["height"], image["width"])}'))
    return problems


def parsed_instance_problems(info: dict, num_classes: int) -> List[Problem]:
    """Boxes (x1, y1, x2, y2) and labels of a non-COCO detection data set's parsed instances."""
    problems = []
    width, height = info.get('width'), info.get('height')
    for number, instance in enumerate(info.get('instances', [])):
        x1, y1, x2, y2 = instance['bbox']
        if width is not None and height is not None:
            detail = box_problem([x1, y1, x2 - x1, y2 - y1], width, height)
            if detail:
                problems.append(Problem(info['img_path'], BAD_BOX, f'instance {number}: {detail}'))
        label = instance.get('bbox_label')
        if label is not None and not 0 <= label < num_classes:
            problems.append(Problem(info['img_path'], BAD_LABEL, f'instance {number}: label '
                                    f'{label} is outside the {num_classes} classes'))
    return problems


def check_detection(dataset_cfg: dict, track: Track = no_progress) -> List[Problem]:
    """Check an mmdet data set config (COCO files in detail, others through their parsed data).

    Args:
        dataset_cfg (dict): The ``dataset`` entry of a dataloader config (wrappers allowed).
        track (callable): ``track(iterable, total, description)`` shows progress. Defaults to
            :func:`no_progress`.

    Returns:
        list[Problem]: Every fault found; empty when the data is clean.
    """
    problems = []
    for leaf in leaf_dataset_cfgs(dataset_cfg):
        backend_args = leaf.get('backend_args')
        dataset = build_unloaded(leaf)
        ann_file = annotation_file(dataset)
        content = None
        if ann_file.endswith('.json') and fileio.exists(ann_file, backend_args=backend_args):
            content, problem = read_coco_json(ann_file, backend_args)
            if problem:
                problems.append(problem)
                continue
        load_problems = load_annotations(dataset, backend_args)
        problems += load_problems
        if load_problems:
            continue
        infos = data_infos(dataset)
        classes = dataset.metainfo.get('classes', ())
        image_paths = {info.get('img_id'): info['img_path'] for info in infos}
        if content is not None:
            problems += coco_record_problems(content, ann_file, image_paths, classes)
        for info in track(infos, len(infos), described(ann_file)):
            image, problem = read_image(info['img_path'], backend_args)
            if problem:
                problems.append(problem)
            elif info.get('width') and info.get('height') and \
                    image.size != (info['width'], info['height']):
                problems.append(Problem(info['img_path'], SIZE_MISMATCH,
                                        f'image is {image.width}x{image.height} but annotated '
                                        f'as {info["width"]}x{info["height"]} (width x height)'))
            if content is None:
                problems += parsed_instance_problems(info, len(classes))
    return problems


# ----------------------------------------------------------------------------- segmentation
def as_training_labels(label_map: np.ndarray, reduce_zero_label: bool,
                       class_map: Optional[dict]) -> np.ndarray:
    """The label values training sees: mmseg's LoadAnnotations' two remappings."""
    labels = label_map.astype(np.int64)
    if reduce_zero_label:
        labels[labels == 0] = IGNORE_INDEX + 1  # becomes IGNORE_INDEX below
        labels = labels - 1
    if class_map:
        mapped = labels.copy()
        for old, new in class_map.items():
            mapped[labels == old] = new
        labels = mapped
    return labels


def check_segmentation(dataset_cfg: dict, track: Track = no_progress) -> List[Problem]:
    """Check an mmseg data set config: images, label maps, their sizes and label values.

    Args:
        dataset_cfg (dict): The ``dataset`` entry of a dataloader config (wrappers allowed).
        track (callable): ``track(iterable, total, description)`` shows progress. Defaults to
            :func:`no_progress`.

    Returns:
        list[Problem]: Every fault found; empty when the data is clean.
    """
    problems = []
    for dataset, backend_args in loaded_datasets(dataset_cfg, problems):
        num_classes = len(dataset.metainfo.get('classes', ()))
        infos = data_infos(dataset)
        for info in track(infos, len(infos), described(dataset.data_root)):
            image, problem = read_image(info['img_path'], backend_args)
            if problem:
                problems.append(problem)
            seg_map_path = info.get('seg_map_path')
            if not seg_map_path:
                continue
            label_image, problem = read_image(seg_map_path, backend_args)
            if problem:
                problems.append(problem)
                continue
            if image is not None and label_image.size != image.size:
                problems.append(Problem(seg_map_path, SIZE_MISMATCH,
                                        f'label map is {label_image.width}x{label_image.height} '
                                        f'but its image is {image.width}x{image.height} '
                                        f'({info["img_path"]})'))
            values = np.asarray(label_image)
            if values.ndim != 2:
                problems.append(Problem(seg_map_path, BAD_LABEL, f'label map has shape '
                                        f'{values.shape}; expected one channel'))
                continue
            labels = as_training_labels(values, info.get('reduce_zero_label', False),
                                        info.get('label_map'))
            found = np.unique(labels)
            bad = found[((found < 0) | (found >= num_classes)) & (found != IGNORE_INDEX)]
            if bad.size:
                reduced = ' after reduce_zero_label' if info.get('reduce_zero_label') else ''
                problems.append(Problem(seg_map_path, BAD_LABEL, f'label values '
                                        f'{bad.tolist()}{reduced} are outside 0..'
                                        f'{num_classes - 1} and not {IGNORE_INDEX} (ignore)'))
    return problems


# ----------------------------------------------------------------------------- classification
def check_classification(dataset_cfg: dict, track: Track = no_progress) -> List[Problem]:
    """Check an mmpretrain data set config: images and ``gt_label`` against the classes.

    Args:
        dataset_cfg (dict): The ``dataset`` entry of a dataloader config (wrappers allowed).
        track (callable): ``track(iterable, total, description)`` shows progress. Defaults to
            :func:`no_progress`.

    Returns:
        list[Problem]: Every fault found; empty when the data is clean.
    """
    problems = []
    for dataset, backend_args in loaded_datasets(dataset_cfg, problems):
        classes = dataset.metainfo.get('classes') or ()
        infos = data_infos(dataset)
        where = annotation_file(dataset) or dataset.data_root or 'the data set'
        for info in track(infos, len(infos), described(where)):
            problem = image_problem(info['img_path'], backend_args)
            if problem:
                problems.append(problem)
            labels = np.atleast_1d(np.asarray(info.get('gt_label', [])))
            bad = [int(label) for label in labels if not 0 <= label < len(classes)]
            if classes and bad:
                problems.append(Problem(info['img_path'], BAD_LABEL, f'gt_label {bad} is '
                                        f'outside the {len(classes)} classes'))
    return problems


CHECKS = {DETECTION: check_detection, SEGMENTATION: check_segmentation,
          CLASSIFICATION: check_classification}


def check_config(cfg, splits: Sequence[str] = SPLITS,
                 track: Track = no_progress) -> Dict[str, List[Problem]]:
    """Check the data sets of a config's ``<split>_dataloader`` entries.

    Registers the task library's modules (from ``default_scope``). A split whose data set
    equals an earlier split's (test = val, as in most configs) is checked once, under the
    earlier name; splits the config has no dataloader for are left out.

    Args:
        cfg (mmengine.Config): A config of any of the three task libraries.
        splits (Sequence[str]): Of 'train', 'val' and 'test'. Defaults to all three.
        track (callable): ``track(iterable, total, description)`` shows progress. Defaults to
            :func:`no_progress`.

    Returns:
        dict: Split -> list of :class:`Problem`, for the splits that were checked.
    """
    task = task_of_config(cfg)
    task.register_modules()
    results, seen = {}, []
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader or not loader.get('dataset'):
            continue
        dataset_cfg = loader['dataset']
        if dataset_cfg in seen:
            continue
        seen.append(dataset_cfg)
        results[split] = CHECKS[task](dataset_cfg, track)
    return results


def summary_line(results: Dict[str, List[Problem]]) -> str:
    """One line: how many problems in which splits, or that the data is clean."""
    total = sum(len(problems) for problems in results.values())
    checked = ', '.join(results) or 'none'
    if not total:
        return f'check_dataset: no problems found (splits checked: {checked})'
    counts = ', '.join(f'{split}: {len(problems)}' for split, problems in results.items())
    kinds = {}
    for problems in results.values():
        for problem in problems:
            kinds[problem.kind] = kinds.get(problem.kind, 0) + 1
    by_kind = ', '.join(f'{count} {kind}' for kind, count in kinds.items())
    noun = 'problem' if total == 1 else 'problems'
    return f'check_dataset: {total} {noun} ({counts}): {by_kind}'

