#!/usr/bin/env python
"""Convert official microsoft/CvT or Hugging Face CvT weights into an mmpretrain checkpoint.

    python tools/convert_checkpoint.py CvT-13-224x224-IN-1k.pth checkpoints/cvt13_in1k.pth
    python tools/convert_checkpoint.py path/to/hf/cvt-13/ checkpoints/cvt13_in1k_hf.pth

The format (official .pth, HF pytorch_model.bin / model.safetensors, HF model directory) and the
variant (CvT-13/21/W24 or a custom arch) are read off the data, not the file name. Untrusted
files are read without executing anything. Exit status 1 and one line on stderr on failure.
See docs/checkpoints.md; the logic is in cvt_mm/checkpoint_io.py.
"""
import sys

from cvt_mm.checkpoint_io import main

if __name__ == '__main__':
    sys.exit(main())
