"""mmdistill.SafeRunner and SafeCheckpointHook in one process: a save interrupted at each of
its steps leaves a resumable work dir, resume picks the newest complete checkpoint when the
pointer is missing, empty or stale, ``--resume`` with nothing to resume never trains from
scratch silently, random states round-trip, resume is exact (epoch- and iteration-based, with
random crops, dropout and validation), and every shipped config runs with the safe runner.
(tests/e2e/test_kill_resume.py kills real ``tools/train.py`` processes.)"""
import glob
import os
import os.path as osp
import random
import shutil

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.fileio import LocalBackend
from mmengine.hooks import Hook
from mmengine.registry import HOOKS, RUNNERS, DefaultScope
from mmengine.runner import Runner

from benchmarks.digits.run import write_digits
from mmdistill.engine import (NothingToResumeError, SafeCheckpointHook, SafeRunner,
                              capture_rng_state, restore_rng_state, runner_class,
                              train_with_safe_loading)
from mmdistill.engine.checkpoint_hook import POINTER, is_complete_checkpoint

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture(scope='module')
def digits_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('digits'))
    write_digits(root, limit=40)  # 20 train (4 batches of 5), 20 val
    return root


def config(digits_root, work_dir, by_epoch=True, **more) -> Config:
    """A tiny mmpretrain classifier on the digits with every kind of randomness a run has:
    random crops (numpy), dropout (torch), a shuffling sampler, validation every epoch."""
    pipeline = [dict(type='LoadImageFromFile'), dict(type='RandomCrop', crop_size=32, padding=4),
                dict(type='PackInputs')]
    loader = dict(batch_size=5, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=True),
                  dataset=dict(type='CustomDataset', data_root=digits_root, data_prefix='train',
                               pipeline=pipeline))
    val_loader = dict(batch_size=20, num_workers=0,
                      sampler=dict(type='DefaultSampler', shuffle=False),
                      dataset=dict(type='CustomDataset', data_root=digits_root,
                                   data_prefix='val', pipeline=pipeline))
    train_cfg = dict(by_epoch=True, max_epochs=3, val_interval=1) if by_epoch else \
        dict(type='IterBasedTrainLoop', max_iters=9, val_interval=3)
    cfg = dict(
        runner_type='mmdistill.SafeRunner', default_scope='mmpretrain', work_dir=work_dir,
        model=dict(type='ImageClassifier',
                   data_preprocessor=dict(num_classes=10, mean=[32.] * 3, std=[72.] * 3),
                   backbone=dict(type='ResNet_CIFAR', depth=18, stem_channels=4,
                                 base_channels=4),
                   neck=dict(type='GlobalAveragePooling'),
                   head=dict(type='StackedLinearClsHead', num_classes=10, in_channels=32,
                             mid_channels=[16], dropout_rate=0.5)),
        train_dataloader=loader, val_dataloader=val_loader,
        val_evaluator=dict(type='Accuracy'), val_cfg=dict(), train_cfg=train_cfg,
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9)),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1 if by_epoch else 3,
                                           by_epoch=by_epoch, max_keep_ckpts=-1),
                           logger=dict(type='LoggerHook', interval=1)),
        log_processor=dict(by_epoch=by_epoch), randomness=dict(seed=0))
    cfg.update(more)
    return Config(cfg)


def build(cfg: Config) -> Runner:
    return RUNNERS.build(cfg)


def weights(path: str) -> dict:
    return torch.load(path, map_location='cpu', weights_only=False)['state_dict']


def assert_identical(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    different = [k for k in expected if not torch.equal(got[k], expected[k])]
    assert not different, different


def checkpoint_hook(runner) -> SafeCheckpointHook:
    return next(h for h in runner.hooks if isinstance(h, SafeCheckpointHook))


# ------------------------------------------------------------------------- registration
def test_the_runner_swaps_a_plain_checkpoint_hook_for_the_safe_one(digits_root, tmp_path):
    runner = build(config(digits_root, str(tmp_path), default_hooks=dict(
        checkpoint=dict(type='CheckpointHook', interval=2, max_keep_ckpts=3, save_best='auto'))))
    assert type(runner) is SafeRunner
    hook = checkpoint_hook(runner)
    assert type(hook) is SafeCheckpointHook
    assert (hook.interval, hook.max_keep_ckpts, hook.save_best) == (2, 3, ['auto'])
    # MMEngine's default CheckpointHook (the config names none) is swapped too
    cfg = config(digits_root, str(tmp_path / 'b'))
    cfg.default_hooks.pop('checkpoint')
    assert checkpoint_hook(build(cfg)).interval == 1


def shipped_configs():
    """Every runnable config (not the ``_base_/`` pieces that a config adds to a student's)."""
    found = []
    for pattern in ('configs/**/*.py', 'projects/*/configs/**/*.py',
                    'benchmarks/*/configs/**/*.py'):
        found += glob.glob(osp.join(ROOT, pattern), recursive=True)
    return sorted(osp.relpath(path, ROOT) for path in found if '/_base_/' not in path)


def test_every_shipped_config_runs_with_the_safe_runner():
    configs = shipped_configs()
    assert len(configs) > 90
    wrong = {}
    for path in configs:
        cfg = Config.fromfile(osp.join(ROOT, path), import_custom_modules=False)
        runner_type = cfg.get('runner_type')
        with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
            cls = RUNNERS.get(runner_type) if runner_type else None
        if cls is not SafeRunner:
            wrong[path] = runner_type
    assert not wrong, wrong


# ------------------------------------------------------------------------ random states
def test_random_states_round_trip_through_a_weights_only_load(tmp_path):
    random.seed(3), np.random.seed(3), torch.manual_seed(3)
    np.random.normal()  # numpy's cached gaussian is part of its state
    state = capture_rng_state()
    path = str(tmp_path / 'rng.pth')
    torch.save(state, path)

    def draws():
        return random.random(), np.random.normal(), np.random.rand(3).tolist(), \
            torch.rand(3).tolist()
    first = draws()
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    assert draws() != first
    restore_rng_state(torch.load(path, weights_only=True))
    assert draws() == first


# ------------------------------------------------------------------- interrupted saves
class Interrupted(Exception):
    pass


def fail_at(monkeypatch, step: str) -> None:
    """Make the next save fail at ``step``, as a kill there would leave it (the exception
    stops the save where the kill would)."""
    put, replace, remove = LocalBackend.put, os.replace, os.remove

    def put_half(backend, obj, filepath):
        if str(filepath).endswith('.pth.saving'):
            with open(filepath, 'wb') as f:
                f.write(obj[:len(obj) // 2])
            raise Interrupted
        put(backend, obj, filepath)

    def replace_failing(src, dst):
        if step == 'before_replace' and str(src).endswith('.pth.saving'):
            raise Interrupted
        if step == 'before_pointer' and str(src).endswith(POINTER + '.saving'):
            raise Interrupted
        replace(src, dst)

    def remove_failing(path):
        if str(path).endswith('.pth'):
            raise Interrupted
        remove(path)
    if step == 'mid_write':
        monkeypatch.setattr(LocalBackend, 'put', put_half)
    elif step == 'before_remove':
        monkeypatch.setattr(os, 'remove', remove_failing)
    else:
        monkeypatch.setattr(os, 'replace', replace_failing)


@pytest.mark.parametrize('step,resumes_from', [('mid_write', 'epoch_2.pth'),
                                               ('before_replace', 'epoch_2.pth'),
                                               ('before_pointer', 'epoch_3.pth'),
                                               ('before_remove', 'epoch_3.pth')])
def test_a_save_interrupted_at_any_step_leaves_a_resumable_work_dir(digits_root, tmp_path,
                                                                      monkeypatch, step,
                                                                      resumes_from):
    work_dir = str(tmp_path)
    cfg = config(digits_root, work_dir, train_cfg=dict(by_epoch=True, max_epochs=2))
    cfg.default_hooks.checkpoint.max_keep_ckpts = 1  # MMEngine deletes before it writes
    runner = build(cfg)
    runner.train()
    hook = checkpoint_hook(runner)
    assert sorted(os.listdir(work_dir)).count('epoch_2.pth') == 1
    assert not osp.exists(osp.join(work_dir, 'epoch_1.pth'))

    fail_at(monkeypatch, step)
    with pytest.raises(Interrupted):
        hook._save_checkpoint_with_step(runner, 3, dict(epoch=3, iter=runner.iter))
    monkeypatch.undo()
    with open(osp.join(work_dir, POINTER)) as f:
        named = f.read()
    assert is_complete_checkpoint(named)  # the pointer never names a part
    assert is_complete_checkpoint(osp.join(work_dir, 'epoch_2.pth'))  # the previous one kept
    assert osp.basename(named) == ('epoch_3.pth' if step == 'before_remove' else 'epoch_2.pth')
    assert osp.basename(runner.find_resumable_checkpoint()) == resumes_from
    leftovers = glob.glob(osp.join(work_dir, '*.saving'))
    assert bool(leftovers) == (step in ('mid_write', 'before_replace', 'before_pointer'))

    # the next run removes what the killed save left, and resumes
    resumed = build(config(digits_root, work_dir, resume='auto',
                           train_cfg=dict(by_epoch=True, max_epochs=3)))
    resumed.train()
    assert resumed.epoch == 3 and not glob.glob(osp.join(work_dir, '*.saving'))


# --------------------------------------------------------------- choosing the checkpoint
def write_fake(path, complete=True):
    torch.save({'meta': {}, 'state_dict': {}}, path)
    if not complete:
        with open(path, 'rb') as f:
            data = f.read()
        with open(path, 'wb') as f:
            f.write(data[:len(data) // 2])


@pytest.mark.parametrize('pointer,expected', [
    (None, 'epoch_2.pth'),  # no last_checkpoint
    ('', 'epoch_2.pth'),  # empty (killed while MMEngine rewrote it)
    ('epoch_3.pth', 'epoch_2.pth'),  # names a file cut short
    ('epoch_7.pth', 'epoch_2.pth'),  # names a deleted file
    ('epoch_1.pth', 'epoch_2.pth'),  # complete, but a newer complete one is beside it
    ('epoch_2.pth', 'epoch_2.pth'),
])
def test_resume_takes_the_newest_complete_checkpoint(digits_root, tmp_path, pointer, expected):
    work_dir = str(tmp_path)
    write_fake(osp.join(work_dir, 'epoch_1.pth'))
    write_fake(osp.join(work_dir, 'epoch_2.pth'))
    write_fake(osp.join(work_dir, 'epoch_3.pth'), complete=False)
    write_fake(osp.join(work_dir, 'best_accuracy_top1_epoch_3.pth'))  # not for resuming
    open(osp.join(work_dir, 'epoch_4.pth'), 'w').close()  # empty
    if pointer is not None:
        with open(osp.join(work_dir, POINTER), 'w') as f:
            f.write(osp.join(work_dir, pointer) if pointer else '')
    runner = build(config(digits_root, work_dir))
    assert runner.find_resumable_checkpoint() == osp.join(work_dir, expected)


def test_nothing_to_resume_stops_or_starts_from_load_from(digits_root, tmp_path):
    for resume in ('auto', True):  # tools/train.py --resume; a codebase's train.py --resume
        runner = build(config(digits_root, str(tmp_path / 'empty'), resume=resume))
        with pytest.raises(NothingToResumeError, match='holds no checkpoint to resume') as error:
            runner.train()
        assert str(tmp_path / 'empty') in str(error.value)
        assert '--resume PATH' in str(error.value)

    start = build(config(digits_root, str(tmp_path / 'start'), train_cfg=dict(
        by_epoch=True, max_epochs=1)))
    start.train()
    load_from = str(tmp_path / 'start' / 'epoch_1.pth')
    runner = build(config(digits_root, str(tmp_path / 'new'), resume='auto', load_from=load_from))
    runner.load_or_resume()
    assert runner.iter == 0  # loaded, not resumed
    assert_identical({k: v for k, v in runner.model.state_dict().items()}, weights(load_from))
    # with something to resume, load_from is not what is loaded
    os.makedirs(str(tmp_path / 'again'))
    shutil.copy(load_from, str(tmp_path / 'again' / 'epoch_1.pth'))
    runner = build(config(digits_root, str(tmp_path / 'again'), resume='auto',
                          load_from='does-not-exist.pth'))
    runner.load_or_resume()
    assert (runner.epoch, runner.iter) == (1, 4)


# ------------------------------------------------------------------------- exact resume
@pytest.mark.parametrize('by_epoch', [True, False])
def test_resume_continues_the_uninterrupted_run_exactly(digits_root, tmp_path, by_epoch):
    """Epoch-based: resumed from epoch 1 of 3. Iteration-based (DefaultSampler, 4 batches a
    pass): resumed from iteration 3 and 6 (MMEngine fetches the trained batches again, drawing
    crops, before the first new one). Validation runs after each save in the uninterrupted run
    only."""
    whole = build(config(digits_root, str(tmp_path / 'whole'), by_epoch=by_epoch))
    whole.train()
    last, middles = ('epoch_3.pth', ['epoch_1.pth']) if by_epoch else \
        ('iter_9.pth', ['iter_3.pth', 'iter_6.pth'])
    expected = weights(str(tmp_path / 'whole' / last))
    for middle in middles:
        resumed = build(config(digits_root, str(tmp_path / f'resumed_{middle}'),
                               by_epoch=by_epoch, resume=True,
                               load_from=str(tmp_path / 'whole' / middle)))
        resumed.train()
        assert_identical(weights(str(tmp_path / f'resumed_{middle}' / last)), expected)

    if by_epoch:  # the test can fail: MMEngine's runner resumes into another run
        plain = config(digits_root, str(tmp_path / 'plain'), resume=True,
                       load_from=str(tmp_path / 'whole' / 'epoch_1.pth'))
        plain.pop('runner_type')
        train_with_safe_loading(Runner.from_cfg(plain))  # loads inside safe loading
        got = weights(str(tmp_path / 'plain' / 'epoch_3.pth'))
        assert any(not torch.equal(got[k], expected[k]) for k in expected)


@HOOKS.register_module()
class SaveAfterFirstEpochHook(Hook):
    """Asks the checkpoint hook for a checkpoint after the first epoch (as UPop's hook could
    after compression)."""

    priority = 'ABOVE_NORMAL'

    def after_train_epoch(self, runner) -> None:
        if runner.epoch == 0:
            checkpoint_hook(runner).save_now(runner)


def test_a_hook_can_ask_for_a_checkpoint_that_resumes_exactly(digits_root, tmp_path):
    cfg = config(digits_root, str(tmp_path / 'whole'), custom_hooks=[
        dict(type='SaveAfterFirstEpochHook')])
    cfg.default_hooks.checkpoint.interval = 5  # no interval save in the 3 epochs
    build(cfg).train()
    assert sorted(f for f in os.listdir(str(tmp_path / 'whole')) if f.endswith('.pth')) == [
        'epoch_1.pth', 'epoch_3.pth']  # asked for, and the last
    resumed = build(config(digits_root, str(tmp_path / 'resumed'), resume=True,
                           load_from=str(tmp_path / 'whole' / 'epoch_1.pth')))
    resumed.train()
    assert_identical(weights(str(tmp_path / 'resumed' / 'epoch_3.pth')),
                     weights(str(tmp_path / 'whole' / 'epoch_3.pth')))


# ------------------------------------------------------------------------ the runner scripts build
def test_scripts_build_the_configs_runner_and_safe_runner_where_it_names_none():
    """tools/train.py, the smoke test and the evidence harness build through runner_class:
    the config's runner_type, SafeRunner when it names none, a clear error when misspelt."""
    unnamed = Config(dict())
    assert runner_class(unnamed, 'a test') is SafeRunner
    assert unnamed.runner_type == 'mmdistill.SafeRunner'  # RUNNERS.build reads it
    assert runner_class(Config(dict(runner_type='Runner')), 'a test') is Runner
    with pytest.raises(KeyError, match=r"runner_type 'mmdistill.SafeRunnr' is not a registered "
                                       r"runner; use 'mmdistill.SafeRunner'"):
        runner_class(Config(dict(runner_type='mmdistill.SafeRunnr')), 'a test')
