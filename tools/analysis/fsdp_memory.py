"""Peak memory of one FSDP training step of the model of ``configs/fsdp/cvtw24_in22k-384.py``
on the CPU: N gloo processes, each CvT block one FSDP unit (as the config wraps it), one
forward and backward of a batch of one 384x384 image per process.

Prints, per rank, the resident memory after building, after the forward (what autograd keeps
for backward, with the unsharded copies of any weight that the forward saved) and at the peak.

    python tools/analysis/fsdp_memory.py [--processes 2] [--size 384] [--plain]
"""
import argparse
import os
import resource

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def rss_mb() -> float:
    with open('/proc/self/statm') as statm:
        return int(statm.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


def step(rank: int, processes: int, size: int, port: int, plain: bool) -> None:
    from mmengine.config import Config
    from mmpretrain.registry import MODELS
    from torch.distributed.fsdp import FullyShardedDataParallel

    import cvt_mm  # noqa: F401
    from cvt_mm.engine.fsdp import cvt_block_wrap_policy

    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank,
                            world_size=processes)
    cfg = Config.fromfile('configs/fsdp/cvtw24_in22k-384.py')
    cfg.model.pop('data_preprocessor', None)
    cfg.model.pop('train_cfg', None)
    if plain:  # the modules as a GPU runs them
        cfg.model.backbone.cpu_kernels = False
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model = FullyShardedDataParallel(model, auto_wrap_policy=cvt_block_wrap_policy,
                                     device_id=torch.device('cpu')).train()
    images = torch.randn(1, 3, size, size)
    built = rss_mb()
    logits = model(images, mode='tensor')
    after_forward = rss_mb()
    logits.float().pow(2).mean().backward()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f'rank {rank}: built {built:.0f} MB, after forward {after_forward:.0f} MB '
          f'(+{after_forward - built:.0f}), peak {peak:.0f} MB', flush=True)
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--processes', type=int, default=2)
    parser.add_argument('--size', type=int, default=384)
    parser.add_argument('--port', type=int, default=29517)
    parser.add_argument('--plain', action='store_true',
                        help='CvT(cpu_kernels=False): the plain modules, the path GPUs take')
    args = parser.parse_args()
    mp.spawn(step, args=(args.processes, args.size, args.port, args.plain),
             nprocs=args.processes)


if __name__ == '__main__':
    main()
