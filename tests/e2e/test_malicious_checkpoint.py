"""A checkpoint whose pickle would run code is refused as teacher, as ``load_from`` and on
``--resume``, through ``tools/train.py`` and the digits KD config, with an error that names
the file and its role; the code never runs (the file it would create never appears). The
same file loads (and runs its code) only when ``MMDISTILL_TRUST_CHECKPOINTS`` names it, so the
payload is live."""
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest
import torch

from benchmarks.digits.run import write_digits
from helpers.runner import write_teacher_checkpoint
from mmdistill.engine import UnsafeCheckpointError, load_checkpoint_file

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DIGITS = osp.join(ROOT, 'benchmarks', 'digits', 'configs')
KD_CONFIG = osp.join(DIGITS, 'kd_resnet18_w4_from_resnet18.py')


class CreatesFile:
    """Unpickled, it creates ``path`` (as ``open(path, 'w')`` does): a stand-in for any code a
    checkpoint could run."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return open, (self.path, 'w')


class RunsShell:
    """Unpickled, it runs ``touch path`` in a shell."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return os.system, (f'touch {self.path}', )


def poisoned(source: str, target: str, marker: str) -> str:
    """``source`` (a real checkpoint) saved at ``target`` with two payloads that create
    ``marker`` when unpickled, in its ``meta``: loadable as it was by a loader that runs code."""
    checkpoint = torch.load(source, map_location='cpu', weights_only=False)
    checkpoint.setdefault('meta', {})['payload'] = [CreatesFile(marker), RunsShell(marker)]
    torch.save(checkpoint, target)
    return target


def train_tool(args, cwd):
    done = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'train.py'), KD_CONFIG, *args],
                          cwd=cwd, env=dict(os.environ, PYTHONPATH=ROOT),
                          capture_output=True, text=True, timeout=600)
    return done.returncode, done.stdout + done.stderr


@pytest.fixture(scope='module')
def digits_run(tmp_path_factory):
    """The digits KD config on 40 digits with an untrained teacher, trained one epoch by
    ``tools/train.py``: its options and its work dir (``epoch_1.pth``)."""
    tmp = tmp_path_factory.mktemp('digits')
    data_root = str(tmp / 'digits')
    write_digits(data_root, limit=40)
    teacher = write_teacher_checkpoint(osp.join(DIGITS, 'teacher_resnet18.py'), {},
                                       str(tmp / 'teacher.pth'))
    options = [f'model.teacher.checkpoint={teacher}',
               f'train_dataloader.dataset.data_root={data_root}',
               f'val_dataloader.dataset.data_root={data_root}',
               'train_dataloader.batch_size=10', 'train_cfg.val_interval=10',
               'default_hooks.checkpoint.interval=1']
    work_dir = str(tmp / 'work')
    code, out = train_tool(['--work-dir', work_dir, '--cfg-options', 'train_cfg.max_epochs=1',
                            *options], str(tmp))
    assert code == 0, out[-3000:]
    return dict(tmp=tmp, teacher=teacher, options=options, work_dir=work_dir,
                checkpoint=osp.join(work_dir, 'epoch_1.pth'))


def refused(out: str, path: str, role: str) -> bool:
    return ('UnsafeCheckpointError' in out and f'{role} checkpoint {path} was refused' in out
            and 'MMDISTILL_TRUST_CHECKPOINTS' in out)


def test_the_payload_runs_where_full_unpickling_is_trusted(digits_run, monkeypatch):
    marker = str(digits_run['tmp'] / 'trusted_marker')
    path = poisoned(digits_run['checkpoint'], str(digits_run['tmp'] / 'trusted.pth'), marker)
    with pytest.raises(UnsafeCheckpointError, match='io.open'):
        load_checkpoint_file(path, role='load_from')
    assert not osp.exists(marker)
    monkeypatch.setenv('MMDISTILL_TRUST_CHECKPOINTS', path)
    loaded = load_checkpoint_file(path, role='load_from')
    assert osp.exists(marker)  # what the refusal prevents in the tests below
    assert loaded['meta']['iter'] == 2


def test_a_teacher_checkpoint_that_runs_code_is_refused(digits_run):
    marker = str(digits_run['tmp'] / 'teacher_marker')
    evil = poisoned(digits_run['teacher'], str(digits_run['tmp'] / 'evil_teacher.pth'), marker)
    code, out = train_tool(['--work-dir', str(digits_run['tmp'] / 'teacher_run'),
                            '--cfg-options', *digits_run['options'],
                            f'model.teacher.checkpoint={evil}'], str(digits_run['tmp']))
    assert code != 0 and refused(out, evil, 'teacher'), out[-3000:]
    assert 'io.open' in out  # the refused global, by name
    assert not osp.exists(marker)


def test_a_load_from_checkpoint_that_runs_code_is_refused(digits_run):
    marker = str(digits_run['tmp'] / 'load_from_marker')
    evil = poisoned(digits_run['checkpoint'], str(digits_run['tmp'] / 'evil_load_from.pth'),
                    marker)
    code, out = train_tool(['--work-dir', str(digits_run['tmp'] / 'load_from_run'),
                            '--cfg-options', *digits_run['options'], f'load_from={evil}'],
                           str(digits_run['tmp']))
    assert code != 0 and refused(out, evil, 'load_from'), out[-3000:]
    assert not osp.exists(marker)


def copy_of_run(digits_run, name: str) -> str:
    """A copy of the one-epoch run's work dir, its ``last_checkpoint`` naming its own copy."""
    work_dir = str(digits_run['tmp'] / name)
    shutil.copytree(digits_run['work_dir'], work_dir)
    with open(osp.join(work_dir, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(work_dir, 'epoch_1.pth'))
    return work_dir


def test_a_checkpoint_that_runs_code_is_refused_on_resume(digits_run):
    work_dir = copy_of_run(digits_run, 'resume_run')
    marker = str(digits_run['tmp'] / 'resume_marker')
    evil = osp.join(work_dir, 'epoch_1.pth')
    poisoned(evil, evil, marker)  # the work dir's latest checkpoint, replaced
    code, out = train_tool(['--work-dir', work_dir, '--resume', '--cfg-options',
                            *digits_run['options'], 'train_cfg.max_epochs=2'],
                           str(digits_run['tmp']))
    assert code != 0 and refused(out, evil, 'resume'), out[-3000:]
    assert not osp.exists(marker)
    assert not osp.exists(osp.join(work_dir, 'epoch_2.pth'))  # nothing trained


def test_a_real_checkpoint_resumes_through_the_weights_only_loader(digits_run):
    work_dir = copy_of_run(digits_run, 'clean_resume')
    code, out = train_tool(['--work-dir', work_dir, '--resume', '--cfg-options',
                            *digits_run['options'], 'train_cfg.max_epochs=2'],
                           str(digits_run['tmp']))
    assert code == 0, out[-3000:]
    assert 'resumed epoch: 1, iter: 2' in out
    assert 'local_weights_only backend' in out  # loaded by load_checkpoint_file
    second = load_checkpoint_file(osp.join(work_dir, 'epoch_2.pth'), role='resume')
    assert second['meta']['iter'] == 4
    assert second['message_hub']['log_scalars']['train/loss'].data[0].shape == (4, )
