"""MMEngine's Runner in two processes on the CPU (gloo), inside pytest.

:func:`run_in_processes` spawns the processes with torchrun's environment (free port, ranks);
:func:`train_in_phases` is what each of them runs: the configs' training phases through the
Runner, prepared by :func:`mmdistill.engine.setup_distributed` exactly as ``tools/train.py``
prepares them, with a :class:`RankProbe` that writes what this rank saw and holds to a file
that the test reads back in the parent process.
"""
import os
import os.path as osp
import socket
from typing import Callable, List

import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _entry(rank: int, world_size: int, port: int, worker: Callable, args: tuple) -> None:
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    try:
        worker(rank, *args)
    finally:
        if torch_dist.is_initialized():
            torch_dist.destroy_process_group()


def run_in_processes(worker: Callable, *args, world_size: int = 2) -> None:
    """Call ``worker(rank, *args)`` in ``world_size`` fresh processes (``spawn``) that have
    torchrun's environment (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT`` on a free
    port); raise if any of them fails. ``worker`` must be importable (a module-level function)."""
    mp.start_processes(_entry, args=(world_size, free_port(), worker, args), nprocs=world_size,
                       start_method='spawn', join=True)


def distiller_of(runner: Runner):
    return runner.model.module if is_model_wrapper(runner.model) else runner.model


def sample_ids(data_samples) -> List[tuple]:
    """What tells the training samples apart: the image path, and the instance id (pose)."""
    return [(s.metainfo.get('img_path'), s.metainfo.get('id')) for s in data_samples]


class RankProbe(Hook):
    """Records, on one rank: the model wrapper; the student's parameters when training starts
    (after any resume) and ends; each teacher's state at the end (by its name: ``teacher``
    for ``teacher=``, ``<name>`` for ``teachers=``); the ids of the samples of each training
    batch; each step's logged values and how often the teachers started, all together; and,
    for a validation run by :func:`train_in_phases`, the metrics, the number of samples this rank
    validated and the number of results the metric computed on."""

    priority = 'LOWEST'

    def __init__(self):
        self.record = dict(ids=[], logs=[], teacher_calls=[], val_samples=0)
        self._teacher_calls = 0

    def before_train(self, runner) -> None:
        distiller = distiller_of(runner)
        self.record.update(
            wrapper=type(runner.model).__name__,
            device_ids=getattr(runner.model, 'device_ids', 'no wrapper'),
            find_unused_parameters=getattr(runner.model, 'find_unused_parameters', None),
            world_size=runner.world_size, start_iter=runner.iter,
            student_at_start=_parameters(distiller.student))
        for teacher in distiller.teachers.values():
            teacher.model.register_forward_pre_hook(self._count_teacher_call)

    def _count_teacher_call(self, *args) -> None:
        self._teacher_calls += 1

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._teacher_calls = 0

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self.record['ids'].append(sample_ids(data_batch['data_samples']))
        self.record['logs'].append({k: v.item() for k, v in outputs.items()})
        self.record['teacher_calls'].append(self._teacher_calls)

    def after_train(self, runner) -> None:
        distiller = distiller_of(runner)
        self.record.update(
            iter=runner.iter, student=_parameters(distiller.student),
            student_buffers={k: v.clone() for k, v in distiller.student.named_buffers()},
            teachers={name: {k: v.clone() for k, v in teacher.model.state_dict().items()}
                      for name, teacher in distiller.teachers.items()})

    def after_val_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self.record['val_samples'] += len(outputs)


def _parameters(model: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def count_computed_results(runner: Runner) -> list:
    """Make each metric of the runner's evaluator note how many results it computes on."""
    counts = []
    for metric in runner.val_evaluator.metrics:
        compute = metric.compute_metrics

        def counted(results, compute=compute):
            counts.append(len(results))
            return compute(results)

        metric.compute_metrics = counted
    return counts


def train_in_phases(rank: int, phases: List[dict], out_dir: str) -> None:
    """Run each phase ``dict(config=FILE, work_dir=DIR, options={...})`` as ``tools/train.py
    --launcher pytorch`` would (the first one creates the gloo process group); write each
    phase's :class:`RankProbe` record to ``out_dir/phase{i}_rank{rank}.pth``. After the last
    phase, every rank loads the latest checkpoint (rank 0's) and validates."""
    from mmdistill.engine import safe_checkpoint_loading, setup_distributed

    for index, phase in enumerate(phases):
        if index:
            torch_dist.barrier()  # rank 0 has written the previous phase's checkpoint
        cfg = Config.fromfile(phase['config'])
        cfg.work_dir = phase['work_dir']
        cfg.launcher = 'pytorch'
        cfg.merge_from_dict(phase.get('options', {}))
        setup_distributed(cfg)
        runner = Runner.from_cfg(cfg)
        probe = RankProbe()
        runner.register_hook(probe)
        with safe_checkpoint_loading('resume' if cfg.get('resume') else 'load_from'):
            runner.train()
        if index == len(phases) - 1:
            torch_dist.barrier()  # rank 0 has written the checkpoint
            with open(osp.join(cfg.work_dir, 'last_checkpoint')) as f, \
                    safe_checkpoint_loading('load_from'):
                runner.load_checkpoint(f.read().strip())
            counts = count_computed_results(runner)
            probe.record['val_metrics'] = runner.val_loop.run()
            probe.record['computed_on'] = counts
        torch.save(probe.record, osp.join(out_dir, f'phase{index}_rank{rank}.pth'))


def load_records(out_dir: str, phase: int, world_size: int = 2) -> list:
    return [torch.load(osp.join(out_dir, f'phase{phase}_rank{rank}.pth'), weights_only=False)
            for rank in range(world_size)]
