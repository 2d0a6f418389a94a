"""Inference on image files through the task libraries' own inferencers.

``mmdet.apis.DetInferencer``, ``mmseg.apis.MMSegInferencer`` and
``mmpretrain.apis.ImageClassificationInferencer`` do the work (pipelines, batches, models,
drawing, mmdet's and mmseg's output formats); this module picks the one of a config's task
(:mod:`cvt_mm.tasks`), feeds it the images ``batch_size`` at a time (a batch that fails is run again
image by image, so that an unreadable file costs only itself), and writes per image under
``out_dir``, at the image's path relative to the input folder (:func:`input_root`):

* ``vis/``: the drawn result (boxes and masks, the colour-coded segmentation, the top class);
* ``preds/<path without suffix>.json``: the predictions; mmdet's own format for detection
  (labels, scores, boxes, RLE masks: those scoring above the threshold, as drawn), and for
  segmentation a summary whose ``label_map`` names the label PNG beside it (one class index
  per pixel, as mmseg writes it).
"""
import glob
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import mmcv
import numpy as np
from mmengine.config import Config

from cvt_mm.engine import allow_runner_checkpoints
from cvt_mm.tasks import DETECTION, SEGMENTATION, Task, task_of_config, task_of_scope

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
VIS_DIR = 'vis'
PRED_DIR = 'preds'
# DetInferencer's own default: detections scoring above it are drawn (and here also saved).
DEFAULT_SCORE_THR = 0.3
GLOB_CHARACTERS = re.compile(r'[*?[]')


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


def input_root(source: Union[str, Path]) -> Path:
    """The folder that outputs keep the images' paths relative to: a folder itself, a file's
    folder (the outputs are named by the file name), or a glob pattern's leading folders up to
    the first one with a wildcard (``'data/**/*.jpg'``: ``data``)."""
    path = Path(source)
    if path.is_dir():
        return path
    if path.is_file():
        return path.parent
    fixed = []
    for part in path.parts:
        if GLOB_CHARACTERS.search(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path('.')


def output_names(images: Sequence[Path], root: Optional[Path] = None) -> List[Path]:
    """Each image's path relative to ``root`` (its file name without a root): what its outputs
    are named by. Two images whose outputs would share a name (``a.jpg`` and ``a.png`` in one
    folder: ``preds/a.json``) raise ValueError naming both."""
    names = [image.relative_to(root) if root is not None else Path(image.name)
             for image in images]
    seen: Dict[Path, Path] = {}
    for image, name in zip(images, names):
        stem = name.with_suffix('')
        if stem in seen:
            raise ValueError(f'{seen[stem]} and {image} would write the same predictions '
                             f'({PRED_DIR}/{stem}.json): rename one of them')
        seen[stem] = image
    return names


def build_inferencer(config: Union[str, Path], checkpoint: Optional[str] = None,
                     device: Optional[str] = None):
    """The task library's inferencer for a config (:attr:`cvt_mm.tasks.Task.inferencer`).

    Args:
        config (str | Path): The config file.
        checkpoint (str, optional): Weights; None keeps the random initialisation (the
            libraries warn about it). Defaults to None.
        device (str, optional): 'cpu', 'cuda', 'cuda:1', ...; None picks a GPU if there is
            one. Defaults to None.

    Returns:
        Tuple[BaseInferencer, str]: The inferencer and the task scope.
    """
    task = task_of_config(Config.fromfile(str(config)))
    task.register_modules()
    allow_runner_checkpoints()  # checkpoints written by tools/train.py load safely
    inferencer = task.inferencer_class()(model=str(config), device=device,
                                         **task.inferencer_weights(checkpoint))
    inferencer.show_progress = False  # one bar over all images instead (infer_images)
    return inferencer, task.scope


def _to_json(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _predict(inferencer, task: Task, images: List[Path], batch_size: int) -> list:
    """The inferencer's data samples for ``images``, in their order, ``batch_size`` at a time."""
    paths = [str(image) for image in images]
    if task is DETECTION:
        return inferencer(paths, batch_size=batch_size, return_datasamples=True,
                          no_save_vis=True, no_save_pred=True)['predictions']
    samples = inferencer(paths, batch_size=batch_size, return_datasamples=True)
    return samples if isinstance(samples, list) else [samples]  # mmseg: one is not a list


def _write_outputs(inferencer, task: Task, image: Path, name: Path, sample, out_dir: Path,
                   score_thr: float) -> Path:
    """Draw one image's prediction and write its json (and label map); returns the json."""
    vis_file = out_dir / VIS_DIR / name
    pred_file = (out_dir / PRED_DIR / name).with_suffix('.json')
    vis_file.parent.mkdir(parents=True, exist_ok=True)
    pred_file.parent.mkdir(parents=True, exist_ok=True)
    if task is DETECTION:
        # The detections DetInferencer draws: those scoring above the threshold.
        instances = sample.pred_instances
        sample.pred_instances = instances[instances.scores > score_thr]
        drawn = inferencer.visualize([str(image)], [sample], return_vis=True,
                                     pred_score_thr=score_thr)[0]
        mmcv.imwrite(drawn[..., ::-1], str(vis_file))  # drawn in RGB
        summary = inferencer.pred2dict(sample)
    elif task is SEGMENTATION:
        drawn = inferencer.visualize([str(image)], [sample], return_vis=True)[0]
        mmcv.imwrite(drawn[..., ::-1], str(vis_file))
        # mmseg writes the label PNG, named by a counter; renamed after the image.
        counter = inferencer.num_pred_imgs
        label_map = inferencer.postprocess([sample], None,
                                           pred_out_dir=str(pred_file.parent))['predictions']
        label_file = pred_file.with_suffix('.png')
        (pred_file.parent / f'{counter:08d}_pred.png').replace(label_file)
        classes = inferencer.model.dataset_meta.get('classes') or ()
        labels, counts = np.unique(label_map, return_counts=True)
        summary = dict(
            img_path=str(image), label_map=label_file.name, shape=list(label_map.shape),
            class_pixels={(classes[i] if i < len(classes) else str(i)): int(count)
                          for i, count in zip(labels.tolist(), counts)})
    else:
        # mmpretrain draws into show_dir/<stem>.png itself.
        inferencer.visualize([str(image)], [sample], show_dir=str(vis_file.parent))
        result = inferencer.postprocess([sample], None)[0]
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
                 progress: Optional[bool] = None, root: Optional[Union[str, Path]] = None,
                 score_thr: Optional[float] = None, batch_size: int = 1) -> InferenceReport:
    """Run the inferencer on the images, writing drawings and json under ``out_dir``.

    An image that cannot be read or processed is reported on one line of stderr, naming the
    file, and the others are still processed.

    Args:
        inferencer: From :func:`build_inferencer`.
        scope (str): Its task scope.
        images (List[Path]): From :func:`list_images`.
        out_dir (str | Path): Where ``vis/`` and ``preds/`` go.
        progress (bool, optional): Show a progress bar (rich, on stderr); None shows one for
            more than one image. Defaults to None.
        root (str | Path, optional): The outputs keep each image's path relative to this folder
            (:func:`input_root` of the input); None names them by the file name alone.
            Defaults to None.
        score_thr (float, optional): Detection only: the detections scoring above it are drawn
            and saved. Defaults to None: :data:`DEFAULT_SCORE_THR`, DetInferencer's default.
        batch_size (int): Images per forward pass (the inferencer's ``batch_size``).
            Defaults to 1.

    Returns:
        InferenceReport: The json written per image, and the failures.
    """
    from rich.console import Console
    from rich.progress import Progress

    task = task_of_scope(scope)
    if score_thr is not None and task is not DETECTION:
        raise ValueError(f'a score threshold applies to detection ({DETECTION.scope}), not to '
                         f'{scope}')
    if batch_size < 1:
        raise ValueError(f'batch_size must be 1 or more, not {batch_size}')
    score_thr = DEFAULT_SCORE_THR if score_thr is None else score_thr
    out_dir = Path(out_dir)
    names = dict(zip(images, output_names(images, None if root is None else Path(root))))
    console = Console(stderr=True)
    report = InferenceReport()

    def fail(image: Path, error: Exception) -> None:
        message = str(error).strip().splitlines()
        message = f'{type(error).__name__}: {message[0] if message else ""}'
        report.failures.append((image, message))
        # soft_wrap: one line, however long the path.
        console.print(f'error: {image}: {message}', soft_wrap=True, markup=False,
                      highlight=False)

    def run(batch: List[Path]) -> None:
        samples = _predict(inferencer, task, batch, batch_size)
        for image, sample in zip(batch, samples):
            report.predictions.append(_write_outputs(inferencer, task, image, names[image],
                                                     sample, out_dir, score_thr))

    show = len(images) > 1 if progress is None else progress
    with Progress(console=console, disable=not show, transient=False) as bar:
        images_done = bar.add_task('Inference', total=len(images))
        for start in range(0, len(images), batch_size):
            batch = []
            for image in images[start:start + batch_size]:
                if mmcv.imread(str(image)) is None:
                    fail(image, ValueError('cannot decode the image'))
                else:
                    batch.append(image)
            try:
                if batch:
                    run(batch)
            except Exception:  # one bad file must not stop the others: find it
                done = set(report.predictions)
                for image in batch:
                    if (out_dir / PRED_DIR / names[image]).with_suffix('.json') in done:
                        continue
                    try:
                        run([image])
                    except Exception as error:
                        fail(image, error)
            bar.advance(images_done, len(images[start:start + batch_size]))
    return report


def print_failure_summary(report: InferenceReport, stream=sys.stderr) -> None:
    """One line: how many images failed (nothing when none did)."""
    if report.failures:
        print(f'{len(report.failures)} of {len(report.failures) + len(report.predictions)} '
              'images failed', file=stream)
