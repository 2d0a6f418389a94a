"""The benchmark's worker process, as benchmarking.suite starts it
(``python -m benchmarking.workers JOB RESULT``)."""
import json
import subprocess
import sys

from benchmarking.suite import BENCHMARK_PARENT, worker_env

from cvt_mm.testing import FAST_TEST_ARCH

# What ``python -m`` does (runpy imports the package, then runs the module as __main__), and
# afterwards which of the benchmark's modules were loaded.
RUN_AS_MAIN = '''
import runpy, sys
sys.argv = ['workers', *sys.argv[1:]]
runpy.run_module('benchmarking.workers', run_name='__main__', alter_sys=True)
print(sorted(name for name in sys.modules if name.startswith('benchmarking')))
'''


def test_the_worker_runs_a_job_with_its_module_loaded_once(tmp_path):
    job = dict(kind='backbone', impl='cvt_mm', arch=FAST_TEST_ARCH, size=[32, 48], repeats=1,
               warmup=0, threads=1)
    result_path = tmp_path / 'result.json'
    proc = subprocess.run(
        [sys.executable, '-W', 'error::RuntimeWarning', '-c', RUN_AS_MAIN, json.dumps(job),
         str(result_path)],
        capture_output=True, text=True, cwd=BENCHMARK_PARENT, timeout=300,
        env=dict(worker_env(threads=1), PYTHONWARNINGS='ignore::DeprecationWarning'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Run as __main__ only: no module it imports imported it back as a second copy.
    loaded = proc.stdout.strip().splitlines()[-1]
    assert "'benchmarking.workers'" not in loaded, loaded
    assert "'benchmarking.cpu_workers'" in loaded
    result = json.loads(result_path.read_text())
    assert len(result['times']) == 1 and result['peak_rss_mb'] >= result['rss_built_mb'] > 0
    assert result['macs'] > 0
