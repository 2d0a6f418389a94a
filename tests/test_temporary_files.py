"""The suite's temporary files stay in pytest's temporary directory (tests/conftest.py), in this
process and in the processes it starts."""
import subprocess
import sys
import tempfile
from pathlib import Path


def test_this_process_and_its_children_write_temporary_files_in_the_runs_directory(
        tmp_path_factory):
    run_directory = tmp_path_factory.getbasetemp()
    assert Path(tempfile.gettempdir()).is_relative_to(run_directory)
    child = subprocess.run(
        [sys.executable, '-c', 'import multiprocessing.util as u; print(u.get_temp_dir())'],
        capture_output=True, text=True, check=True)
    # multiprocessing's pymp-* directory, which a killed process leaves behind.
    assert Path(child.stdout.strip()).parent.is_relative_to(run_directory)
