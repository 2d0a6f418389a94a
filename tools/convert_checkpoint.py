#!/usr/bin/env python
"""Convert official microsoft/CvT or Hugging Face CvT weights into an mmpretrain checkpoint.

    python tools/convert_checkpoint.py CvT-13-224x224-IN-1k.pth checkpoints/cvt13_in1k.pth
    python tools/convert_checkpoint.py path/to/hf/cvt-13/ checkpoints/cvt13_in1k_hf.pth
    python tools/convert_checkpoint.py path/to/hf/CvtModel/ checkpoints/cvt13_backbone.pth

The format (official .pth, HF pytorch_model.bin / model.safetensors, HF model directory) and the
variant (CvT-13/21/W24 or a custom arch) are read off the data, not the file name. Untrusted
files are read without executing anything. A headless Hugging Face CvtModel (no classifier head)
gives a backbone-only checkpoint, for the detection and segmentation configs. Exit status 1 and
one line on stderr on failure.
See docs/checkpoints.md; the steps are ``cvt_mm.checkpoint.convert_checkpoint``.
"""
import argparse
import sys
import warnings
from typing import Optional, Sequence

import _cli  # noqa: F401  (before the libraries: quiets their start-up notices)

from cvt_mm.checkpoint import STEPS, CheckpointError, convert_checkpoint


def parse_args(argv: Optional[Sequence[str]] = None):
    parser = argparse.ArgumentParser(
        prog='convert_checkpoint.py',
        description='Convert official microsoft/CvT (.pth) or Hugging Face CvT weights (a model '
                    'directory, pytorch_model.bin or model.safetensors) into an mmpretrain '
                    'checkpoint for cvt_mm. The variant is read off the tensors.')
    parser.add_argument('src', help='official .pth, HF weights file or HF model directory')
    parser.add_argument('dst', help='output .pth (its directory is created)')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point; returns the exit status."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    args = parse_args(argv)
    # Progress and results go to stdout, so that on failure stderr holds only the error line.
    console = Console(file=sys.stdout)
    # Only on a terminal: in a log the bar's frames are noise.
    progress = Progress(SpinnerColumn(), TextColumn('{task.description}'), BarColumn(),
                        MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                        transient=True, disable=not console.is_terminal)
    task = progress.add_task('starting', total=len(STEPS))

    def on_step(step: str, description: str) -> None:
        progress.update(task, completed=STEPS.index(step), description=description)

    # Library warnings (torch's remarks on a pickle's protocol, say) say nothing about the
    # conversion, whose result is verified instead, and would break the one-line error on
    # stderr: they are recorded and dropped.
    with warnings.catch_warnings(record=True):
        warnings.simplefilter('always')
        try:
            with progress:
                meta = convert_checkpoint(args.src, args.dst, on_step)
                progress.update(task, completed=len(STEPS))
        except CheckpointError as error:
            print(f'error: {error}', file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print(f'error: {args.src}: interrupted; {args.dst} was not written',
                  file=sys.stderr)
            return 130

    name = f"CvT-{meta['variant']}" if meta['variant'] else f"custom CvT {meta['arch']}"
    if not meta['classifier']:
        classes = 'backbone only (no classifier head)'
    else:
        number = meta['num_classes'] if meta['num_classes'] is not None else 'no'
        classes = f'{number} classes'
    console.print(f"converted {meta['source_format']} {meta['source_container']} "
                  f'{args.src} -> {args.dst}: {name}, {classes}, '
                  f"heads from {meta['num_heads_source']}", highlight=False, soft_wrap=True)
    for note in meta['notes']:
        console.print(f'note: {note}', highlight=False, soft_wrap=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
