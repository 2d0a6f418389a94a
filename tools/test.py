#!/usr/bin/env python
"""Evaluate a checkpoint on the test set of a classification, detection or segmentation config.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--cfg-options KEY=VALUE ...]
        [--launcher none|pytorch] [--show-dir DIR]

Prints one "metric: value" line per metric. --show-dir saves the images with the predictions
drawn (mmdet, mmseg, mmpretrain visualization hooks). The logic lives in
cvt_mm/tools_common.py.
"""
from cvt_mm.tools_common import run_test

if __name__ == '__main__':
    run_test()
