"""tools/preemption_figures.py, which the preemption figures of
docs/notes/long_run_measurements.md come from, on the toy Mask R-CNN with 2 persistent
dataloader workers: every figure printed, the signalled run checkpointed at the iteration the
signal arrived in."""
import re
import subprocess
import sys

import resume_runs
from helpers import TOOLS_DIR

from cvt_mm.toy import shapes


def test_preemption_figures_measure_a_signalled_toy_run(tmp_path):
    shapes.make_coco(tmp_path / 'coco', num_train=4, num_val=1,
                         image_size=resume_runs.IMAGE_SIZE, seed=0)
    cfg = resume_runs.detection_config(tmp_path, batch_size=1, max_epochs=1)
    config = tmp_path / 'toy.py'
    cfg.dump(config)
    result = subprocess.run(
        [sys.executable, str(TOOLS_DIR / 'preemption_figures.py'), str(config), '--iteration',
         '2', '--calls', '20', '--work-dir', str(tmp_path / 'work')],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    output = result.stdout
    assert re.search(r'agreement per iteration: [\d.]+ us on 1 process \(no collective\), '
                     r'[\d.]+ us on 2 gloo processes; median iteration [\d.]+ s', output), output
    assert re.search(r'per-sample seeding of the pipeline: [\d.]+ us a sample in a worker',
                     output), output
    # PreemptionDrillHook signals as iteration 2 starts: that iteration is finished and saved.
    assert re.search(r'SIGTERM during iteration 2: exit status 75, [\d.]+ s from the signal to '
                     r'the checkpoint written, [\d.]+ s to the exit; checkpoint after '
                     r'iteration 2, 0 iterations lost', output), output
