#!/usr/bin/env python
"""Train a classification (mmpretrain), detection (mmdet) or segmentation (mmseg) config.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CHECKPOINT]]
        [--cfg-options KEY=VALUE ...] [--launcher none|pytorch] [--amp]

The task library comes from the config's default_scope. Several processes (also on CPU):
tools/dist_train.sh. The logic lives in cvt_mm/tools_common.py.
"""
from cvt_mm.tools_common import run_train

if __name__ == '__main__':
    run_train()
