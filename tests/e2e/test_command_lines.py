"""The command lines the README shows: ``tools/train.py`` trains, ``--resume`` continues from the
latest checkpoint, ``tools/export_student.py`` writes the student alone, ``tools/test.py`` tests
it; run as a user runs them (subprocesses, this tree's mmdistill first on ``PYTHONPATH``)."""
import json
import glob
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from benchmarks.digits.run import write_digits
from helpers.runner import write_teacher_checkpoint

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DIGITS = osp.join(ROOT, 'benchmarks', 'digits')
KD_CONFIG = osp.join(DIGITS, 'configs', 'kd_resnet18_w4_from_resnet18.py')


def run_tool(args, cwd):
    env = dict(os.environ, PYTHONPATH=ROOT)
    done = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done.stdout + done.stderr


def validate_exported(out_dir: str, data_root: str) -> float:
    """Top-1 of the exported student on the validation digits, through a Runner here."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(osp.join(out_dir, 'student_config.py'))
    cfg.merge_from_dict({'test_dataloader.dataset.data_root': data_root,
                         'work_dir': osp.join(out_dir, 'validated'),
                         'load_from': osp.join(out_dir, 'student.pth')})
    return Runner.from_cfg(cfg).test()['accuracy/top1']


def digits_and_teacher(tmp_path):
    """40 digits (20 to train on) and an untrained teacher checkpoint of the KD config."""
    data_root = str(tmp_path / 'digits')
    write_digits(data_root, limit=40)
    teacher = write_teacher_checkpoint(osp.join(DIGITS, 'configs', 'teacher_resnet18.py'), {},
                                       str(tmp_path / 'teacher.pth'))
    return data_root, teacher


def test_train_resume_and_export_from_the_command_line(tmp_path):
    data_root, teacher = digits_and_teacher(tmp_path)
    work_dir = str(tmp_path / 'work')
    options = [f'model.teacher.checkpoint={teacher}',
               f'train_dataloader.dataset.data_root={data_root}',
               f'val_dataloader.dataset.data_root={data_root}',
               'train_dataloader.batch_size=10', 'train_cfg.val_interval=10',
               'default_hooks.checkpoint.interval=1']
    train = [osp.join(ROOT, 'tools', 'train.py'), KD_CONFIG, '--work-dir', work_dir]
    run_tool(train + ['--cfg-options', 'train_cfg.max_epochs=1', *options], str(tmp_path))
    first = torch.load(osp.join(work_dir, 'epoch_1.pth'), weights_only=False)
    assert first['meta']['iter'] == 2  # 20 training images, batches of 10

    resumed = run_tool(train + ['--resume', '--cfg-options', 'train_cfg.max_epochs=2', *options],
                       str(tmp_path))
    assert 'resumed epoch: 1, iter: 2' in resumed, resumed[-3000:]
    second = torch.load(osp.join(work_dir, 'epoch_2.pth'), weights_only=False)
    assert second['meta']['iter'] == 4

    out_dir = str(tmp_path / 'export')
    printed = run_tool([osp.join(ROOT, 'tools', 'export_student.py'), KD_CONFIG,
                        osp.join(work_dir, 'epoch_2.pth'), out_dir], str(tmp_path))
    assert osp.join(out_dir, 'student.pth') in printed
    exported = torch.load(osp.join(out_dir, 'student.pth'), weights_only=False)['state_dict']
    student = {k[len('student.'):]: v for k, v in second['state_dict'].items()
               if k.startswith('student.')}
    assert exported.keys() == student.keys()
    assert all(torch.equal(exported[k], v) for k, v in student.items())
    assert osp.isfile(osp.join(out_dir, 'student_config.py'))

    # tools/test.py tests the student alone: the teacher checkpoint is gone and not needed
    os.remove(teacher)
    test_dir = str(tmp_path / 'test')
    printed = run_tool([osp.join(ROOT, 'tools', 'test.py'), KD_CONFIG,
                        osp.join(work_dir, 'epoch_2.pth'), '--work-dir', test_dir,
                        '--cfg-options', f'test_dataloader.dataset.data_root={data_root}'],
                       str(tmp_path))
    assert f'testing the student: {osp.join(test_dir, "student", "student_config.py")}' \
        in printed
    tested = torch.load(osp.join(test_dir, 'student', 'student.pth'), weights_only=True)
    assert all(torch.equal(tested['state_dict'][k], v) for k, v in exported.items())
    (metrics_file, ) = glob.glob(osp.join(test_dir, '*', '*.json'))
    with open(metrics_file) as f:
        top1 = json.load(f)['accuracy/top1']
    # the same student validated in this process gives the same top-1 on the same 20 images
    assert top1 == pytest.approx(validate_exported(out_dir, data_root), abs=1e-6)


def test_the_student_codebase_s_own_train_script_brings_mmdistill_in(tmp_path):
    """mmpretrain's own tools/train.py never imports mmdistill: the config's custom_imports
    does, as in a fork of an OpenMMLab codebase."""
    import mmpretrain
    own_train = osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'tools', 'train.py')
    data_root, teacher = digits_and_teacher(tmp_path)
    work_dir = str(tmp_path / 'work')
    # (the digits configs load in the main process: mmpretrain's script wants workers otherwise)
    log = run_tool([own_train, KD_CONFIG, '--work-dir', work_dir, '--no-persistent-workers',
                    '--cfg-options',
                    f'model.teacher.checkpoint={teacher}',
                    f'train_dataloader.dataset.data_root={data_root}',
                    f'val_dataloader.dataset.data_root={data_root}',
                    'train_dataloader.batch_size=10', 'train_cfg.max_epochs=1',
                    'train_cfg.val_interval=10', 'default_hooks.logger.interval=1'],
                   str(tmp_path))
    assert 'loss_kd:' in log and 'loss_student:' in log, log[-3000:]
    state_dict = torch.load(osp.join(work_dir, 'epoch_1.pth'), weights_only=False)['state_dict']
    assert any(k.startswith('student.') for k in state_dict)
    assert not any(k.startswith('teacher.') for k in state_dict)
