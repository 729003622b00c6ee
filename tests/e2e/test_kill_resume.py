"""Kill real ``tools/train.py`` processes with SIGKILL, at random moments and at every step of a
checkpoint save, resume each time with ``--resume``, and check that the run ends with the
uninterrupted run's weights, bit for bit (CPU): digits KD with its ``RandomCrop`` augmentation
(validation every epoch, best checkpoint kept, ``max_keep_ckpts=1``), and UPop killed before its
first checkpoint (resume then starts from ``load_from``), right after compression and mid-search.

The save windows are hit deterministically: ``helpers.kill_window.KillWindowHook`` (test code,
added through the test config) holds the process at the chosen step and the test kills it
there. After every kill the work dir must be resumable: ``last_checkpoint`` absent or naming a
complete file, every ``epoch_N.pth`` complete.
"""
import os
import os.path as osp
import random
import signal
import subprocess
import sys
import threading
import time

import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from benchmarks.digits.run import write_digits
from helpers.runner import write_teacher_checkpoint
from mmdistill.engine.checkpoint_hook import POINTER, is_complete_checkpoint

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
KD_EPOCHS, UPOP_EPOCHS = 16, 12
ITERS_PER_EPOCH = 4  # both set-ups
# each plan: a save window of KillWindowHook ('<window>:<n>'), 'random' (a random moment in the
# first epoch or so after the resume: after 1 to 4 iterations of this process, plus a uniform
# 0-0.3 s cut short at the epoch's last iteration; the run may be in a step, loading data,
# validating or saving) or 'at_start' (as soon as training starts)
KD_PLANS = ['mid_write:2', 'random', 'before_replace:2', 'random', 'after_replace:2', 'random',
            'after_pointer:1', 'random', 'random', 'random', 'random']
UPOP_PLANS = ['at_start', 'after_compression:1', 'random', 'mid_write:2', 'random',
              'before_replace:2', 'after_replace:2', 'random', 'after_pointer:1', 'random',
              'random']


def kd_config(root: str) -> Config:
    data = osp.join(root, 'digits')
    write_digits(data, limit=60)  # 30 train (4 batches of 8), 30 val
    teacher = write_teacher_checkpoint(
        osp.join(ROOT, 'benchmarks/digits/configs/teacher_resnet18.py'), {},
        osp.join(root, 'teacher.pth'))
    cfg = Config.fromfile(osp.join(ROOT, 'benchmarks/digits/configs/'
                                         'kd_resnet18_w4_from_resnet18.py'))
    cfg.merge_from_dict({
        'train_dataloader.dataset.data_root': data, 'val_dataloader.dataset.data_root': data,
        'test_dataloader.dataset.data_root': data, 'model.teacher.checkpoint': teacher,
        'train_dataloader.batch_size': 8, 'train_cfg.max_epochs': KD_EPOCHS,
        'train_cfg.val_interval': 1, 'param_scheduler.T_max': KD_EPOCHS,
        'default_hooks.checkpoint.interval': 1, 'default_hooks.checkpoint.save_best': 'auto',
        'default_hooks.logger.interval': 1})
    assert cfg.default_hooks.checkpoint.max_keep_ckpts == 1  # the shipped setting
    assert any(t['type'] == 'RandomCrop' for t in cfg.train_dataloader.dataset.pipeline)
    cfg.custom_hooks = [dict(type='KillWindowHook')]
    cfg.custom_imports = dict(imports=['mmdistill', 'helpers.kill_window'],
                              allow_failed_imports=False)
    return cfg


def upop_config(root: str) -> Config:
    from mmpretrain.registry import MODELS
    data = osp.join(root, 'digits')
    write_digits(data, limit=40)  # 20 train (4 batches of 5), 20 val
    arch = dict(embed_dims=16, num_layers=2, num_heads=2, feedforward_channels=32)
    tiny = {'model.backbone.arch': arch, 'model.backbone.patch_size': 8,
            'model.head.in_channels': 16}
    dense_cfg = Config.fromfile(osp.join(ROOT, 'projects/upop/configs/deit-digits.py'))
    dense_cfg.merge_from_dict(tiny)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        dense = MODELS.build(dense_cfg.model)
    dense_ckpt = osp.join(root, 'dense.pth')
    torch.save({'state_dict': dense.state_dict()}, dense_ckpt)
    cfg = Config.fromfile(osp.join(ROOT, 'projects/upop/configs/upop-deit-digits.py'))
    cfg.merge_from_dict({
        **tiny, 'train_dataloader.dataset.data_root': data,
        'val_dataloader.dataset.data_root': data, 'test_dataloader.dataset.data_root': data,
        'train_dataloader.batch_size': 5, 'train_cfg.max_epochs': UPOP_EPOCHS,
        'train_cfg.val_interval': 1, 'param_scheduler.end': UPOP_EPOCHS,
        'param_scheduler.T_max': UPOP_EPOCHS - 2, 'default_hooks.checkpoint.interval': 1,
        'default_hooks.logger.interval': 1,
        'custom_hooks.0.search_epochs': 2, 'custom_hooks.0.interval': 3,  # 8 search steps
        'load_from': dense_ckpt})
    assert any(t['type'] == 'RandomCrop' for t in cfg.train_dataloader.dataset.pipeline)
    cfg.custom_hooks = [*cfg.custom_hooks, dict(type='KillWindowHook')]
    cfg.custom_imports = dict(imports=['projects.upop.upop', 'helpers.kill_window'],
                              allow_failed_imports=False)
    return cfg


class Run:
    """One work dir trained by ``tools/train.py`` processes, each of them killed by plan; the
    config trains ``epochs`` epochs."""

    def __init__(self, config: str, work_dir: str, rng: random.Random, epochs: int):
        self.config, self.work_dir, self.rng = config, work_dir, rng
        self.total_iters = epochs * ITERS_PER_EPOCH
        self.marks = work_dir + '_marks'
        os.makedirs(self.marks, exist_ok=True)
        self.kills = []  # (plan, seconds after training started, last_checkpoint after it)
        self.starts = 0

    def start(self, resume: bool, window: str = None) -> subprocess.Popen:
        for mark in os.listdir(self.marks):
            os.remove(osp.join(self.marks, mark))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, osp.join(ROOT, 'tests')]),
                   OMP_NUM_THREADS='1', KILL_MARK_DIR=self.marks)
        env.pop('KILL_WINDOW', None)
        if window:
            env['KILL_WINDOW'] = window
        command = [sys.executable, osp.join(ROOT, 'tools/train.py'), self.config,
                   '--work-dir', self.work_dir] + (['--resume'] if resume else [])
        self.starts += 1
        log = open(f'{self.work_dir}_process{self.starts}.log', 'w')
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)

    def wait_for(self, process, mark: str, timeout: float = 300) -> float:
        """Wait until the process writes ``mark``; return when it did."""
        path = osp.join(self.marks, mark)
        deadline = time.time() + timeout
        while not osp.exists(path):
            assert process.poll() is None, (
                f'{self.work_dir}: the process ended (rc {process.returncode}) before '
                f"'{mark}'; see {self.work_dir}_process{self.starts}.log")
            assert time.time() < deadline, f'no {mark} after {timeout} s'
            time.sleep(0.05)
        time.sleep(0.05)  # the mark's content is written
        with open(path) as f:
            return float(f.read())

    def iterations_done(self) -> int:
        """The iterations (of the whole run) the process has done, 0 before its first mark."""
        try:
            with open(osp.join(self.marks, 'iter')) as f:
                return int(f.read())
        except (OSError, ValueError):  # not written yet, or being written
            return 0

    def wait_for_iteration(self, process, iteration: int) -> None:
        """Wait until the process has done ``iteration`` iterations (of the whole run)."""
        while self.iterations_done() < iteration:
            assert process.poll() is None, f'the process ended before iteration {iteration}'
            time.sleep(0.02)

    def sleep_short_of(self, seconds: float, iteration: int) -> None:
        """Sleep ``seconds``, or less if the process has done ``iteration`` iterations by then:
        on a fast machine (7 ms an iteration) 0.3 s is several epochs and their saves, which
        left the plans after it no run to kill."""
        deadline = time.time() + seconds
        while time.time() < deadline and self.iterations_done() < iteration:
            time.sleep(0.005)

    def finish(self, resume: bool = True) -> None:
        process = self.start(resume)
        assert process.wait(timeout=600) == 0, \
            f'see {self.work_dir}_process{self.starts}.log'

    def kill_by(self, plan: str) -> None:
        resumed_at = self.newest_epoch() * ITERS_PER_EPOCH
        process = self.start(resume=self.starts > 0,
                             window=None if plan in ('random', 'at_start') else plan)
        started = self.wait_for(process, 'started')
        if plan == 'random':
            # 1-4 iterations past the resume point, but never in the run's last epoch: a kill
            # that lands after the final save (a fast machine) would leave later plans no run.
            last = self.total_iters - ITERS_PER_EPOCH - 1
            self.wait_for_iteration(
                process, min(resumed_at + self.rng.randint(1, ITERS_PER_EPOCH), last))
            if resumed_at + ITERS_PER_EPOCH < last:  # not past this epoch's last iteration
                self.sleep_short_of(self.rng.uniform(0, 0.3), resumed_at + ITERS_PER_EPOCH)
        elif plan != 'at_start':
            self.wait_for(process, 'waiting')
        assert process.poll() is None, f'{plan}: the run ended before the kill'
        process.send_signal(signal.SIGKILL)
        process.wait()
        self.kills.append((plan, round(time.time() - started, 2), self.pointer()))
        self.check_resumable()

    def newest_epoch(self) -> int:
        pointer = self.pointer()
        return int(osp.basename(pointer)[len('epoch_'):-len('.pth')]) if pointer else 0

    def pointer(self):
        path = osp.join(self.work_dir, POINTER)
        if not osp.exists(path):
            return None
        with open(path) as f:
            return f.read()

    def check_resumable(self) -> None:
        pointer = self.pointer()
        assert pointer is None or is_complete_checkpoint(pointer), (self.kills[-1], pointer)
        for name in os.listdir(self.work_dir):
            if name.startswith('epoch_') and name.endswith('.pth'):
                assert is_complete_checkpoint(osp.join(self.work_dir, name)), name


def final_weights(work_dir: str, epochs: int) -> dict:
    return torch.load(osp.join(work_dir, f'epoch_{epochs}.pth'), map_location='cpu',
                      weights_only=False)['state_dict']


def kill_and_resume(cfg: Config, root: str, plans, epochs: int, seed: int) -> dict:
    """The uninterrupted run, then the killed and resumed one; what the test compares."""
    config = osp.join(root, 'config.py')
    cfg.dump(config)
    began = time.time()
    baseline = Run(config, osp.join(root, 'uninterrupted'), random.Random(seed), epochs)
    baseline.finish(resume=False)
    killed = Run(config, osp.join(root, 'killed'), random.Random(seed), epochs)
    for plan in plans:
        killed.kill_by(plan)
    killed.finish()
    return dict(expected=final_weights(baseline.work_dir, epochs),
                got=final_weights(killed.work_dir, epochs), kills=killed.kills,
                processes=killed.starts, seconds=round(time.time() - began))


def test_kills_at_random_moments_and_in_saves_end_bit_identical(tmp_path):
    roots = {name: str(tmp_path / name) for name in ('kd', 'upop')}
    for root in roots.values():
        os.makedirs(root)
    jobs = {'kd': (kd_config(roots['kd']), KD_PLANS, KD_EPOCHS, 0),
            'upop': (upop_config(roots['upop']), UPOP_PLANS, UPOP_EPOCHS, 1)}
    results, errors = {}, {}

    def run(name):
        try:
            cfg, plans, epochs, seed = jobs[name]
            results[name] = kill_and_resume(cfg, roots[name], plans, epochs, seed)
        except BaseException as error:  # reported below, with the other run's result
            errors[name] = error

    threads = [threading.Thread(target=run, args=(name, )) for name in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name, error in errors.items():
        raise AssertionError(f'{name}: {error!r}') from error

    total = 0
    for name, result in results.items():
        print(f"\n{name}: {len(result['kills'])} kills, {result['processes']} processes, "
              f"{result['seconds']} s; (plan, s after training began, last_checkpoint):")
        for kill in result['kills']:
            print('   ', kill)
        expected, got = result['expected'], result['got']
        assert got.keys() == expected.keys(), name
        different = [key for key in expected if not torch.equal(got[key], expected[key])]
        assert not different, f'{name}: {len(different)} tensors differ, e.g. {different[:3]}'
        total += len(result['kills'])
    assert total >= 20
