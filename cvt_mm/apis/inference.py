"""Inference on image files through the task libraries' own inferencers.

``mmdet.apis.DetInferencer``, ``mmseg.apis.MMSegInferencer`` and
``mmpretrain.apis.ImageClassificationInferencer`` do the work (pipelines, models, drawing); this
module picks the one of a config's ``default_scope``, feeds it one image at a time so that an
unreadable file costs only itself, and writes per image under ``out_dir``:

* ``vis/``: the drawn result (boxes and masks, the colour-coded segmentation, the top class);
* ``preds/<stem>.json``: the predictions; mmdet's own format for detection (labels, scores,
  boxes, RLE masks), and for segmentation a summary whose ``label_map`` names the label PNG
  beside it (``preds/<stem>.png``, one class index per pixel, as mmseg writes it).
"""
import glob
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple, Union

import mmcv
import numpy as np
from mmengine.config import Config

from cvt_mm.engine import allow_runner_checkpoints, register_task_modules, task_scope

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
VIS_DIR = 'vis'
PRED_DIR = 'preds'


def list_images(source: Union[str, Path]) -> List[Path]:
    """The images of ``source``: a file, a folder (its image files, recursively, sorted) or a
    glob pattern (``'data/*.jpg'``, ``'data/**/*.png'``)."""
    path = Path(source)
    if path.is_file():
        return [path]
    if path.is_dir():
        images = sorted(p for p in path.rglob('*') if p.suffix.lower() in IMAGE_SUFFIXES)
    else:
        images = sorted(Path(p) for p in glob.glob(str(source), recursive=True)
                        if Path(p).is_file())
    if not images:
        raise FileNotFoundError(f'no images found at {source}')
    return images


def build_inferencer(config: Union[str, Path], checkpoint: Optional[str] = None,
                     device: Optional[str] = None):
    """The task library's inferencer for a config, chosen by its ``default_scope``.

    Args:
        config (str | Path): The config file.
        checkpoint (str, optional): Weights; None keeps the random initialisation (the
            libraries warn about it). Defaults to None.
        device (str, optional): 'cpu', 'cuda', 'cuda:1', ...; None picks a GPU if there is
            one. Defaults to None.

    Returns:
        Tuple[BaseInferencer, str]: The inferencer and the task scope.
    """
    scope = task_scope(Config.fromfile(str(config)))
    register_task_modules(scope)
    allow_runner_checkpoints()  # checkpoints written by tools/train.py load safely
    if scope == 'mmdet':
        from mmdet.apis import DetInferencer
        inferencer = DetInferencer(model=str(config), weights=checkpoint, device=device,
                                   show_progress=False)
    elif scope == 'mmseg':
        from mmseg.apis import MMSegInferencer
        inferencer = MMSegInferencer(model=str(config), weights=checkpoint, device=device)
    else:
        from mmpretrain.apis import ImageClassificationInferencer
        inferencer = ImageClassificationInferencer(model=str(config),
                                                   pretrained=checkpoint or False,
                                                   device=device)
    inferencer.show_progress = False  # one bar over all images instead (infer_images)
    return inferencer, scope


def _to_json(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _infer_one(inferencer, scope: str, image: Path, out_dir: Path) -> Path:
    """Run one image; returns its prediction json."""
    pred_dir = out_dir / PRED_DIR
    pred_file = pred_dir / f'{image.stem}.json'
    if scope == 'mmdet':
        inferencer(str(image), out_dir=str(out_dir), no_save_pred=False)
        return pred_file
    pred_dir.mkdir(parents=True, exist_ok=True)
    if scope == 'mmseg':
        # mmseg names its label PNGs by a counter; renamed after the image.
        counter = inferencer.num_pred_imgs
        result = inferencer(str(image), out_dir=str(out_dir), img_out_dir=VIS_DIR,
                            pred_out_dir=PRED_DIR)
        (pred_dir / f'{counter:08d}_pred.png').replace(pred_dir / f'{image.stem}.png')
        label_map = np.asarray(result['predictions'])
        classes = inferencer.model.dataset_meta.get('classes') or ()
        labels, counts = np.unique(label_map, return_counts=True)
        summary = dict(
            img_path=str(image), label_map=f'{image.stem}.png', shape=list(label_map.shape),
            class_pixels={(classes[i] if i < len(classes) else str(i)): int(count)
                          for i, count in zip(labels.tolist(), counts)})
    else:
        (out_dir / VIS_DIR).mkdir(parents=True, exist_ok=True)
        result = inferencer(str(image), show_dir=str(out_dir / VIS_DIR))[0]
        summary = dict(img_path=str(image), **{key: _to_json(value)
                                               for key, value in result.items()})
    pred_file.write_text(json.dumps(summary, indent=2))
    return pred_file


@dataclass
class InferenceReport:
    """What :func:`infer_images` did: the prediction json of each image that worked, and the
    error of each that did not."""
    predictions: List[Path] = field(default_factory=list)
    failures: List[Tuple[Path, str]] = field(default_factory=list)


def infer_images(inferencer, scope: str, images: List[Path], out_dir: Union[str, Path],
                 progress: Optional[bool] = None) -> InferenceReport:
    """Run the inferencer on each image, writing drawings and json under ``out_dir``.

    An image that cannot be read or processed is reported on one line of stderr, naming the
    file, and the others are still processed.

    Args:
        inferencer: From :func:`build_inferencer`.
        scope (str): Its task scope.
        images (List[Path]): From :func:`list_images`.
        out_dir (str | Path): Where ``vis/`` and ``preds/`` go.
        progress (bool, optional): Show a progress bar (rich, on stderr); None shows one for
            more than one image. Defaults to None.

    Returns:
        InferenceReport: The json written per image, and the failures.
    """
    from rich.console import Console
    from rich.progress import Progress

    out_dir = Path(out_dir)
    console = Console(stderr=True)
    report = InferenceReport()
    show = len(images) > 1 if progress is None else progress
    with Progress(console=console, disable=not show, transient=False) as bar:
        task = bar.add_task('Inference', total=len(images))
        for image in images:
            try:
                if mmcv.imread(str(image)) is None:
                    raise ValueError('cannot decode the image')
                report.predictions.append(_infer_one(inferencer, scope, image, out_dir))
            except Exception as error:  # one bad file must not stop the others
                message = str(error).strip().splitlines()
                message = f'{type(error).__name__}: {message[0] if message else ""}'
                report.failures.append((image, message))
                # soft_wrap: one line, however long the path.
                console.print(f'error: {image}: {message}', soft_wrap=True, markup=False,
                              highlight=False)
            bar.advance(task)
    return report


def print_failure_summary(report: InferenceReport, stream=sys.stderr) -> None:
    """One line: how many images failed (nothing when none did)."""
    if report.failures:
        print(f'{len(report.failures)} of {len(report.failures) + len(report.predictions)} '
              'images failed', file=stream)
