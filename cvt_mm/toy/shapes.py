"""Small, deterministic synthetic shape data sets in the real on-disk formats.

The toy configs (configs/toy/) and the CPU quickstart (tools/quickstart.py) train on these sets;
tools/make_toy_data.py is the command line over :func:`ensure_toy_set`.

Every image shows shapes from ``SHAPE_CLASSES`` on a random textured background. Colours are
drawn independently of the class (only contrast with the background is enforced), so a model
has to learn geometry. Later shapes are drawn over earlier ones; masks always describe the
*visible* part, and placements that would hide more than 40% of an earlier shape are retried.

Each image has its own random stream keyed by (seed, task, split, index), so the output depends
only on the seed and the first N images do not change when a set is made larger.

The ADE set differs in two ways, both for per-pixel labelling: its scenes are denser
(``SEGMENTATION_*``: more shapes, so that the shape classes are not a small minority of the
pixels), and each class fills its shape with its own pattern (``CLASS_PATTERNS``: flat, stripes,
checks, dots, speckle; colours, scale and angle random), as ADE20K's classes have their own
textures. With flat fills, a pixel deep inside a shape could only be classified from the outline
far away; a pattern gives every pixel local evidence. The toy UperNet's figures: docs/quickstart.md.

Layouts and label conventions:

* ``<out>/coco/``: ``{train,val}2017/*.jpg`` and ``annotations/instances_{train,val}2017.json``.
  Category ids are 1..K in ``SHAPE_CLASSES`` order. Segmentations are compressed RLE of the
  visible mask (exact, and able to hold holes cut by occluders), so keep mmdet's
  ``LoadAnnotations(poly2mask=True)`` (the default). ``classes.txt`` lists the classes.
* ``<out>/ade/ADEChallengeData2016/``: ``images/{training,validation}/*.jpg`` and
  ``annotations/{training,validation}/*.png`` (uint8 label maps, same basename). On disk
  1 = background and 2..K+1 = ``SHAPE_CLASSES``; 0 never occurs. With ``reduce_zero_label=True``
  (mmseg's ADE20K default) value v becomes v - 1, i.e. the indices of ``ADE_TOY_CLASSES``:
  0 = background, 1..K = shapes. ``ADE20KDataset`` rejects class names outside its 150 ADE
  names, so to get named toy classes use ``BaseSegDataset(img_suffix='.jpg',
  seg_map_suffix='.png', reduce_zero_label=True, metainfo=dict(classes=ADE_TOY_CLASSES))``.
* ``<out>/imagenet/``: ``{train,val}/<class_name>/*.JPEG`` with one shape per image, plus
  ``meta/{train,val}.txt`` ("<class_name>/<file>.JPEG <label>", relative to the split folder)
  and ``meta/classes.txt``. ``SHAPE_CLASSES`` is alphabetical, so the labels of a folder scan
  (mmpretrain's ``CustomDataset`` sorts folder names) equal those in meta/*.txt and the COCO ids.

:func:`ensure_toy_set` writes a completion marker (``COMPLETION_MARKER``) beside each set it
makes, and only ever replaces directories that carry one.
"""
import inspect
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import cv2
import numpy as np
from pycocotools import mask as mask_utils

# Alphabetical on purpose: see the module docstring.
SHAPE_CLASSES = ('circle', 'ellipse', 'square', 'star', 'triangle')
ADE_TOY_CLASSES = ('background', ) + SHAPE_CLASSES
ADE_BACKGROUND_VALUE = 1  # on-disk value of background; shape k (0-based) is stored as k + 2

DETECTION_OBJECTS_PER_IMAGE = (1, 4)
# Shape sizes are the diameter of the circle the shape is inscribed in, as a fraction of the
# shorter image side; large enough for a tiny detector to learn in minutes on a CPU.
DETECTION_OBJECT_SIZE = (0.15, 0.45)
SEGMENTATION_OBJECTS_PER_IMAGE = (4, 8)  # shapes cover ~27% of the pixels (detection: ~11%)
SEGMENTATION_OBJECT_SIZE = (0.2, 0.45)
# ADE set only: each class's fill pattern (see class_pattern).
CLASS_PATTERNS = dict(circle='flat', ellipse='stripes', square='checks', star='dots',
                      triangle='speckle')
SCENE_LAYOUTS = {  # the multi-object sets' compose_scene arguments
    'coco': dict(objects_per_image=DETECTION_OBJECTS_PER_IMAGE,
                 size_range=DETECTION_OBJECT_SIZE, patterned=False),
    'ade': dict(objects_per_image=SEGMENTATION_OBJECTS_PER_IMAGE,
                size_range=SEGMENTATION_OBJECT_SIZE, patterned=True),
}
CLASSIFICATION_OBJECT_SIZE = (0.45, 0.85)
CLASSIFICATION_IMAGE_SIDE = (64, 96)
MIN_VISIBLE_FRACTION = 0.6  # an occluder may hide at most 40% of an earlier shape
MIN_VISIBLE_PIXELS = 64  # instances smaller than this after occlusion are not annotated
MIN_COLOUR_DISTANCE = 90.0  # RGB distance between a shape and the background beneath it
PLACEMENT_ATTEMPTS = 20
JPEG_QUALITY = 92
COMPLETION_MARKER = '.toy_data.json'  # written by ensure_toy_set into each set it makes
# Recorded in that marker: bump when the drawing changes, so that older sets are reported.
DRAWING_VERSION = 2  # 2: patterned, denser ADE scenes

# Separate random streams per task and split, so e.g. COCO and ADE scenes are not copies.
TASK_STREAMS = {'coco': 1, 'ade': 2, 'imagenet': 3}
SPLIT_STREAMS = {'train': 0, 'val': 1}


def image_rng(seed, task, split, *keys):
    """Random generator owned by one image; independent of generation order and set sizes."""
    return np.random.default_rng([seed, TASK_STREAMS[task], SPLIT_STREAMS[split], *keys])


# ----------------------------------------------------------------------------- scene drawing
def shape_outline(rng, label, center, diameter):
    """Polygon (N x 2, x/y floats) of shape `label`, randomly rotated, inscribed in a circle."""
    name = SHAPE_CLASSES[label]
    if name in ('circle', 'ellipse'):
        angles = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        # Clearly elongated, so that no aspect-ratio augmentation (<= 4/3) makes it a circle.
        minor_axis = 1.0 if name == 'circle' else rng.uniform(0.35, 0.55)
        unit = np.stack([np.cos(angles), minor_axis * np.sin(angles)], axis=1)
    elif name == 'star':
        angles = np.linspace(0, 2 * np.pi, 10, endpoint=False)
        radii = np.tile([1.0, 0.45], 5)  # alternate outer tips and inner notches
        unit = radii[:, None] * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    else:
        corners = {'square': 4, 'triangle': 3}[name]
        angles = np.linspace(0, 2 * np.pi, corners, endpoint=False)
        unit = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    rotation = rng.uniform(0, 2 * np.pi)
    rotate = np.array([[np.cos(rotation), -np.sin(rotation)], [np.sin(rotation), np.cos(rotation)]])
    return np.asarray(center) + diameter / 2 * unit @ rotate.T


def rasterise(polygon, height, width):
    """Boolean mask of a polygon; the same mask paints the image and becomes the annotation."""
    mask = np.zeros((height, width), np.uint8)
    subpixel_bits = 4  # cv2 fixed-point coordinates keep small shapes smooth
    points = np.round(polygon * (1 << subpixel_bits)).astype(np.int32)
    cv2.fillPoly(mask, [points], 1, lineType=cv2.LINE_8, shift=subpixel_bits)
    return mask.astype(bool)


def textured_background(rng, height, width):
    """Float HxWx3 canvas: two nearby colours blended by smooth noise, sometimes striped."""
    base = rng.uniform(0, 255, 3)
    other = np.clip(base + rng.uniform(-60, 60, 3), 0, 255)
    cells = int(rng.integers(2, 9))
    coarse = rng.random((cells, cells)).astype(np.float32)
    blend = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    canvas = base * (1 - blend[..., None]) + other * blend[..., None]
    if rng.random() < 0.3:
        period, angle = rng.uniform(6, 24), rng.uniform(0, np.pi)
        rows, cols = np.mgrid[0:height, 0:width]
        wave = np.sin((cols * np.cos(angle) + rows * np.sin(angle)) * 2 * np.pi / period)
        canvas += wave[..., None] * rng.uniform(5, 20)
    return canvas


def class_pattern(rng, label, colour, height, width):
    """HxWx3 fill for shape class `label`: its own pattern kind, random colours, scale, angle."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    angle, period = rng.uniform(0, np.pi), rng.uniform(5, 9)
    u = (cols * np.cos(angle) + rows * np.sin(angle)) / period
    v = (-cols * np.sin(angle) + rows * np.cos(angle)) / period
    kind = CLASS_PATTERNS[SHAPE_CLASSES[label]]
    if kind == 'flat':
        weight = np.zeros_like(u)
    elif kind == 'stripes':
        weight = (np.sin(2 * np.pi * u) > 0).astype(np.float32)
    elif kind == 'checks':
        weight = ((np.floor(u) + np.floor(v)) % 2).astype(np.float32)
    elif kind == 'dots':
        weight = (((u % 1) - 0.5) ** 2 + ((v % 1) - 0.5) ** 2 < 0.09).astype(np.float32)
    else:  # 'speckle': random 2x2-pixel blocks
        weight = (rng.random(((height + 1) // 2, (width + 1) // 2)) < 0.5).astype(np.float32)
        weight = np.kron(weight, np.ones((2, 2), np.float32))[:height, :width]
    # Step each channel towards mid-grey, so that the second colour never clips onto the first.
    second = colour + np.where(colour < 128, 1, -1) * rng.uniform(50, 90, 3)
    return colour * (1 - weight[..., None]) + second * weight[..., None]


def contrasting_colour(rng, nearby_colours):
    """A random colour (independent of the class) far from every colour in `nearby_colours`."""
    best_colour, best_distance = None, -1.0
    for _ in range(PLACEMENT_ATTEMPTS):
        colour = rng.uniform(0, 255, 3)
        distance = min(np.linalg.norm(colour - other) for other in nearby_colours)
        if distance >= MIN_COLOUR_DISTANCE:
            return colour
        if distance > best_distance:
            best_colour, best_distance = colour, distance
    return best_colour


def compose_scene(rng, height, width, labels, size_range, patterned=False):
    """Draw shapes `labels` in order on a random background; later shapes occlude earlier ones.

    Returns the uint8 HxWx3 image and a list of (label, visible_mask) for the annotated shapes.
    Visible masks are disjoint. A shape that cannot be placed without hiding too much of an
    earlier one is left out rather than drawn unannotated. With `patterned`, a shape is filled
    with its class's pattern (`class_pattern`) instead of one colour.
    """
    background = textured_background(rng, height, width)
    canvas = background.copy()
    placed = []  # [label, visible mask, full area, colour]
    side = min(height, width)
    for label in labels:
        for _ in range(PLACEMENT_ATTEMPTS):
            diameter = rng.uniform(*size_range) * side
            radius = diameter / 2  # keep the whole shape inside the image
            center = rng.uniform([radius, radius], [width - radius, height - radius])
            mask = rasterise(shape_outline(rng, label, center, diameter), height, width)
            if all((visible & ~mask).sum() >= MIN_VISIBLE_FRACTION * area
                   for _, visible, area, _ in placed):
                break
        else:
            continue
        # Differ from the background and from every earlier shape, so that touching or
        # overlapping shapes never merge into one silhouette.
        colour = contrasting_colour(
            rng, [background[mask].mean(axis=0)] + [colour for *_, colour in placed])
        if patterned:
            canvas[mask] = class_pattern(rng, label, colour, height, width)[mask]
        else:
            canvas[mask] = colour
        for instance in placed:
            instance[1] &= ~mask
        placed.append([int(label), mask, int(mask.sum()), colour])
    # Sensor-like noise so that perfectly flat colour regions are not a shortcut.
    canvas += rng.normal(0, rng.uniform(2, 10), canvas.shape)
    image = np.clip(np.round(canvas), 0, 255).astype(np.uint8)
    return image, [(label, visible) for label, visible, *_ in placed
                   if visible.sum() >= MIN_VISIBLE_PIXELS]


def multi_object_scene(seed, task, split, index, image_size):
    """A square scene of several shapes, with the COCO or the ADE set's counts and sizes."""
    rng = image_rng(seed, task, split, index)
    layout = SCENE_LAYOUTS[task]
    low, high = layout['objects_per_image']
    labels = rng.integers(0, len(SHAPE_CLASSES), size=int(rng.integers(low, high + 1)))
    return compose_scene(rng, image_size, image_size, labels, layout['size_range'],
                         layout['patterned'])


def write_image(path, image, jpeg=True):
    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if jpeg else []
    if not cv2.imwrite(str(path), image, params):
        raise OSError(f'could not write {path}')


def write_text_lines(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(''.join(f'{line}\n' for line in lines))


# ----------------------------------------------------------------------------- the three sets
def make_coco(out_dir: Union[str, Path], num_train: int = 300, num_val: int = 60,
              image_size: int = 256, seed: int = 0) -> str:
    """Write the COCO-layout instance segmentation set under ``out_dir``.

    Args:
        out_dir (str | Path): Output directory (the set's root, e.g. ``data/toy/coco``).
        num_train (int): Training images (``train2017``). Defaults to 300.
        num_val (int): Validation images (``val2017``). Defaults to 60.
        image_size (int): Side of the square images in pixels. Defaults to 256.
        seed (int): Seed of every image's random stream. Defaults to 0.

    Returns:
        str: A one-line summary (images and instances per split).
    """
    root = Path(out_dir)
    categories = [dict(id=label + 1, name=name, supercategory='shape')
                  for label, name in enumerate(SHAPE_CLASSES)]
    counts = []
    for split, num_images in (('train', num_train), ('val', num_val)):
        images, annotations = [], []
        for index in range(num_images):
            image, instances = multi_object_scene(seed, 'coco', split, index, image_size)
            image_id = index + 1
            file_name = f'{image_id:012d}.jpg'
            write_image(root / f'{split}2017' / file_name, image)
            images.append(dict(id=image_id, file_name=file_name, width=image_size,
                               height=image_size))
            for label, visible in instances:
                rle = mask_utils.encode(np.asfortranarray(visible.astype(np.uint8)))
                annotations.append(dict(
                    id=len(annotations) + 1, image_id=image_id, category_id=label + 1,
                    bbox=[float(v) for v in mask_utils.toBbox(rle)],
                    area=float(mask_utils.area(rle)), iscrowd=0,
                    # JSON needs text; mmdet accepts RLE only with `counts` as str or list.
                    segmentation=dict(size=[int(v) for v in rle['size']],
                                      counts=rle['counts'].decode('ascii'))))
        dataset = dict(info=dict(description=f'toy shapes, seed {seed}', version='1.0'),
                       licenses=[], images=images, annotations=annotations,
                       categories=categories)
        ann_file = root / 'annotations' / f'instances_{split}2017.json'
        ann_file.parent.mkdir(parents=True, exist_ok=True)
        ann_file.write_text(json.dumps(dataset))
        counts.append(f'{num_images} {split} images / {len(annotations)} instances')
    write_text_lines(root / 'classes.txt', SHAPE_CLASSES)
    return ', '.join(counts)


def make_ade(out_dir: Union[str, Path], num_train: int = 300, num_val: int = 60,
             image_size: int = 256, seed: int = 0) -> str:
    """Write the ADE20K-layout semantic segmentation set under ``out_dir/ADEChallengeData2016``.

    Args:
        out_dir (str | Path): Output directory (e.g. ``data/toy/ade``).
        num_train (int): Training images (``images/training``). Defaults to 300.
        num_val (int): Validation images (``images/validation``). Defaults to 60.
        image_size (int): Side of the square images in pixels. Defaults to 256.
        seed (int): Seed of every image's random stream. Defaults to 0.

    Returns:
        str: A one-line summary (images per split).
    """
    root = Path(out_dir) / 'ADEChallengeData2016'
    for split, folder, num_images in (('train', 'training', num_train),
                                      ('val', 'validation', num_val)):
        for index in range(num_images):
            image, instances = multi_object_scene(seed, 'ade', split, index, image_size)
            label_map = np.full(image.shape[:2], ADE_BACKGROUND_VALUE, np.uint8)
            for label, visible in instances:
                label_map[visible] = ADE_BACKGROUND_VALUE + 1 + label
            stem = f'ADE_{split}_{index + 1:08d}'
            write_image(root / 'images' / folder / f'{stem}.jpg', image)
            write_image(root / 'annotations' / folder / f'{stem}.png', label_map, jpeg=False)
    return f'{num_train} training / {num_val} validation images'


def make_imagenet(out_dir: Union[str, Path], train_per_class: int = 100,
                  val_per_class: int = 20, seed: int = 0) -> str:
    """Write ImageNet-style class folders (one shape per image) and meta/*.txt under ``out_dir``.

    Args:
        out_dir (str | Path): Output directory (e.g. ``data/toy/imagenet``).
        train_per_class (int): Training images per class. Defaults to 100.
        val_per_class (int): Validation images per class. Defaults to 20.
        seed (int): Seed of every image's random stream. Defaults to 0.

    Returns:
        str: A one-line summary (classes and images per class).
    """
    root = Path(out_dir)
    for split, per_class in (('train', train_per_class), ('val', val_per_class)):
        lines = []
        for label, name in enumerate(SHAPE_CLASSES):
            for index in range(per_class):
                rng = image_rng(seed, 'imagenet', split, label, index)
                # Square, so that resizing to a square input keeps circles round.
                side = int(rng.integers(CLASSIFICATION_IMAGE_SIDE[0],
                                        CLASSIFICATION_IMAGE_SIDE[1] + 1))
                image, _ = compose_scene(rng, side, side, [label], CLASSIFICATION_OBJECT_SIZE)
                relative_path = f'{name}/{name}_{index:05d}.JPEG'
                write_image(root / split / relative_path, image)
                lines.append(f'{relative_path} {label}')
        write_text_lines(root / 'meta' / f'{split}.txt', lines)
    write_text_lines(root / 'meta' / 'classes.txt', SHAPE_CLASSES)
    return (f'{len(SHAPE_CLASSES)} classes x ({train_per_class} train + {val_per_class} val) '
            'images')


# ----------------------------------------------------------------------------- a data root
GENERATORS = {'coco': make_coco, 'ade': make_ade, 'imagenet': make_imagenet}
LAYOUTS = tuple(GENERATORS)


def default_params(task: str) -> dict:
    """The keyword arguments of ``task``'s generator (``GENERATORS``) with their defaults.

    Args:
        task (str): 'coco', 'ade' or 'imagenet'.

    Returns:
        dict: E.g. ``dict(num_train=300, num_val=60, image_size=256, seed=0)`` for 'coco'.
    """
    parameters = inspect.signature(GENERATORS[task]).parameters.values()
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


@dataclass
class ToySetOutcome:
    """What :func:`ensure_toy_set` did with one set.

    Args:
        task (str): 'coco', 'ade' or 'imagenet'.
        root (Path): The set's directory, ``<out_root>/<task>``.
        action (str): 'generated'; 'kept' (a finished set of this tool's was left as it
            was); or 'refused' (the directory holds files this tool did not write and was
            left alone).
        params (dict): The complete generator arguments that were asked for.
        recorded_params (dict, optional): The arguments recorded in the marker of the set
            found in ``root``, if this tool made it. Defaults to None.
        outdated (str): For a kept set, how it differs from the request: '' (it does not),
            'params' (other arguments) or 'drawing' (drawn by an older ``DRAWING_VERSION``).
            Defaults to ''.
        summary (str): For a generated set, the generator's summary. Defaults to ''.
        seconds (float): For a generated set, the generation time. Defaults to 0.
    """
    task: str
    root: Path
    action: str
    params: dict = field(default_factory=dict)
    recorded_params: Optional[dict] = None
    outdated: str = ''
    summary: str = ''
    seconds: float = 0.

    @property
    def message(self) -> str:
        """One line for the user, as tools/make_toy_data.py prints it."""
        if self.action == 'refused':
            return f'{self.task:9s} skipped: {self.root} exists but was not made by this tool'
        if self.action == 'kept':
            note = {
                '': '',
                'params': f' with other parameters {self.recorded_params}; use --force to '
                          'regenerate',
                'drawing': ' drawn by an older version of this tool; use --force to regenerate',
            }[self.outdated]
            return f'{self.task:9s} skipped: {self.root} already exists{note}'
        return f'{self.task:9s} {self.summary} -> {self.root} ({self.seconds:.1f} s)'


def read_marker(set_root: Union[str, Path]) -> Optional[dict]:
    """The completion marker of the set in ``set_root``, or None if there is none.

    Args:
        set_root (str | Path): A set's directory, e.g. ``data/toy/coco``.

    Returns:
        dict | None: ``complete`` (bool), ``params`` (dict) and, once complete,
        ``drawing_version`` (int).
    """
    marker = Path(set_root) / COMPLETION_MARKER
    return json.loads(marker.read_text()) if marker.is_file() else None


def ensure_toy_set(out_root: Union[str, Path], task: str, params: Optional[dict] = None,
                   force: bool = False) -> ToySetOutcome:
    """Generate the toy set ``task`` in ``<out_root>/<task>`` unless it is there already.

    A finished set made by this tool is kept, even one made with other parameters or by an
    older drawing version (the outcome says so), unless ``force``: then it is deleted and
    generated again. An unfinished one (its marker still says incomplete: generation was cut
    short) is always generated again. A non-empty directory without a marker is never
    touched, not even with ``force``: it may hold a real data set.

    Args:
        out_root (str | Path): The data root holding one directory per task (the toy configs
            expect ``data/toy``).
        task (str): 'coco', 'ade' or 'imagenet' (``LAYOUTS``).
        params (dict, optional): Keyword arguments for the task's generator (``make_coco``,
            ``make_ade`` or ``make_imagenet``) but ``out_dir``; missing ones take the
            generator's defaults. Defaults to None (all defaults).
        force (bool): Regenerate a finished set made by this tool. Defaults to False.

    Returns:
        ToySetOutcome: What was done; its ``message`` is a line for the user.
    """
    if task not in GENERATORS:
        raise ValueError(f'unknown toy task {task!r}; expected one of {LAYOUTS}')
    full_params = default_params(task)
    unknown = set(params or {}) - set(full_params)
    if unknown:
        raise TypeError(f'{GENERATORS[task].__name__} takes no arguments {sorted(unknown)}')
    full_params.update(params or {})
    root = Path(out_root) / task
    recorded = read_marker(root)
    outcome = ToySetOutcome(task, root, 'generated', full_params,
                            recorded.get('params') if recorded is not None else None)
    if recorded is None and root.exists() and (not root.is_dir() or any(root.iterdir())):
        outcome.action = 'refused'
        return outcome
    if recorded is not None and recorded.get('complete') and not force:
        outcome.action = 'kept'
        if recorded.get('params') != full_params:
            outcome.outdated = 'params'
        elif recorded.get('drawing_version') != DRAWING_VERSION:
            outcome.outdated = 'drawing'
        return outcome
    if recorded is not None:  # ours, and either unfinished or being forced
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    # The marker says "incomplete" until the set is finished, so a crash is redone next time.
    marker = root / COMPLETION_MARKER
    marker.write_text(json.dumps(dict(complete=False, params=full_params)))
    start = time.perf_counter()
    outcome.summary = GENERATORS[task](root, **full_params)
    outcome.seconds = time.perf_counter() - start
    marker.write_text(json.dumps(dict(complete=True, params=full_params,
                                      drawing_version=DRAWING_VERSION)))
    return outcome
