"""Runner and launcher glue: what tools/train.py and tools/test.py (and Python callers) use to
run any of the three task libraries' configs, on GPUs or on CPU."""
from .config import (
    apply_resume,
    enable_amp,
    enable_auto_scale_lr,
    enable_visualization,
    latest_checkpoint,
    load_config,
    task_scope,
)
from .distributed import (
    end_worker_process,
    replace_sync_bn,
    setup_cpu_distributed,
    shutdown_distributed,
    slurm_environment,
)
from .fsdp import ResumableFSDPStrategy, cvt_block_wrap_policy
from .hooks import NonFiniteLossGuardHook
from .preemption import PREEMPTED_EXIT_STATUS, Preempted, PreemptionHook, enable_preemption
from .resume import AtomicLocalBackend, FaithfulResumeHook, enable_faithful_resume
from .runner import build_runner, name_dataset_faults, register_task_modules
from .safe_loading import allow_runner_checkpoints

__all__ = ['allow_runner_checkpoints', 'apply_resume', 'build_runner',
           'enable_amp', 'enable_auto_scale_lr', 'enable_visualization', 'load_config',
           'register_task_modules', 'replace_sync_bn', 'setup_cpu_distributed', 'task_scope',
           'shutdown_distributed', 'slurm_environment', 'AtomicLocalBackend',
           'FaithfulResumeHook', 'enable_faithful_resume', 'cvt_block_wrap_policy']
__all__ += ['NonFiniteLossGuardHook', 'ResumableFSDPStrategy', 'end_worker_process',
            'latest_checkpoint', 'PREEMPTED_EXIT_STATUS', 'Preempted', 'PreemptionHook',
            'enable_preemption', 'name_dataset_faults']
