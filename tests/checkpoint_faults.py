"""A storage backend that dies while writing a chosen checkpoint (imported by the training
processes of test_resume.py through the config's custom_imports)."""
import os
import signal

from mmengine.fileio import register_backend

from cvt_mm.engine import AtomicLocalBackend

DIE_WRITING = 'CVT_MM_TEST_DIE_WRITING'  # the file name to die on


class DyingAtomicLocalBackend(AtomicLocalBackend):
    """Writes half of the file named by $CVT_MM_TEST_DIE_WRITING to its temporary file, then
    kills its own process with SIGKILL, which nothing can catch; other files as usual."""

    @staticmethod
    def _atomic_write(filepath, data: bytes, mode: str) -> None:
        if os.path.basename(str(filepath)) != os.environ.get(DIE_WRITING):
            return AtomicLocalBackend._atomic_write(filepath, data, mode)
        directory = os.path.dirname(os.path.abspath(filepath))
        temp_path = os.path.join(directory, f'.{os.path.basename(filepath)}.dying.tmp')
        with open(temp_path, mode) as stream:
            stream.write(data[:len(data) // 2])
            stream.flush()
        os.kill(os.getpid(), signal.SIGKILL)


register_backend('dying_atomic_local', DyingAtomicLocalBackend, force=True)
