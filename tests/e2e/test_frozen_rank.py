"""A frozen rank ends the job: with ``env_cfg.dist_cfg.timeout`` set, the other rank's
collective fails after that many seconds and torchrun stops the job, instead of every rank
waiting forever (``tools/dist_train.sh CONFIG 2`` on gloo, one process stopped with SIGSTOP)."""
import os
import os.path as osp
import signal
import subprocess
import sys
import time

from benchmarks.digits.run import write_digits
from e2e.dist_utils import free_port
from helpers.runner import write_teacher_checkpoint

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DIGITS_CONFIGS = osp.join(ROOT, 'benchmarks', 'digits', 'configs')
TIMEOUT_S = 30  # also how long the first rank waits for the other at start
# How long the job may take to end once a rank is frozen: the timeout, then torchrun's grace
# period (30 s) before it kills the workers it stopped, with a wide margin on a busy machine.
BOUND_S = 300


def children(pid: int) -> list:
    """The processes whose parent is ``pid`` (read from /proc)."""
    found = []
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open(f'/proc/{entry}/stat') as f:
                    parent = int(f.read().rsplit(')', 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if parent == pid:
                found.append(int(entry))
    return found


def environ(pid: int) -> dict:
    with open(f'/proc/{pid}/environ', 'rb') as f:
        pairs = [item.split(b'=', 1) for item in f.read().split(b'\0') if b'=' in item]
    return {k.decode(): v.decode(errors='replace') for k, v in pairs}


def worker_of_rank(root_pid: int, rank: int) -> int:
    """The pid of the worker process with ``RANK=rank`` under ``root_pid`` (torchrun's)."""
    todo, seen = [root_pid], []
    while todo:
        pid = todo.pop()
        seen.append(pid)
        todo += children(pid)
    for pid in seen[1:]:
        try:
            env = environ(pid)
        except OSError:
            continue
        if env.get('RANK') == str(rank) and 'LOCAL_RANK' in env:
            return pid
    raise AssertionError(f'no worker with RANK={rank} under {root_pid}')


def test_a_frozen_rank_ends_the_job_with_a_timeout_error(tmp_path):
    root = str(tmp_path / 'digits')
    write_digits(root, limit=64)
    teacher = write_teacher_checkpoint(osp.join(DIGITS_CONFIGS, 'teacher_resnet18.py'), {},
                                       str(tmp_path / 'teacher.pth'))
    work_dir = str(tmp_path / 'work')
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(free_port()), OMP_NUM_THREADS='1')
    output = open(tmp_path / 'output.txt', 'w+')
    job = subprocess.Popen(
        ['bash', 'tools/dist_train.sh', osp.join(DIGITS_CONFIGS, 'kd_resnet18_w4_from_resnet18.py'),
         '2', '--work-dir', work_dir, '--cfg-options', f'model.teacher.checkpoint={teacher}',
         f'train_dataloader.dataset.data_root={root}', f'val_dataloader.dataset.data_root={root}',
         'train_dataloader.batch_size=8', 'train_cfg.max_epochs=100000',  # never ends alone
         'train_cfg.val_begin=100000', 'default_hooks.checkpoint.interval=100000',
         'default_hooks.logger.interval=1', f'env_cfg.dist_cfg.timeout={TIMEOUT_S}'],
        cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    frozen = None
    try:
        log = osp.join(work_dir, 'never')
        while 'Epoch(train)' not in _read(log):  # both ranks are training
            assert job.poll() is None, _read(output.name)[-3000:]
            time.sleep(1)
            logs = [osp.join(d, f) for d, _, fs in os.walk(work_dir) for f in fs
                    if f.endswith('.log')]
            log = logs[0] if logs else log
        frozen = worker_of_rank(job.pid, rank=1)
        os.kill(frozen, signal.SIGSTOP)
        stopped_at = time.monotonic()
        job.wait(timeout=BOUND_S)  # a hang fails the test here (TimeoutExpired)
        print(f'the job ended {time.monotonic() - stopped_at:.0f} s after SIGSTOP')
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
        if frozen is not None:
            try:
                os.kill(frozen, signal.SIGKILL)
            except ProcessLookupError:
                pass
    text = _read(output.name)
    assert job.returncode != 0, text[-3000:]
    assert f'timeout {TIMEOUT_S} s' in text  # the process group got the configured timeout
    assert 'Timed out' in text or 'timed out' in text, text[-3000:]


def _read(path: str) -> str:
    try:
        with open(path, errors='replace') as f:
            return f.read()
    except OSError:
        return ''
