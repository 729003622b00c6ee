"""`mim train mmdistill CONFIG` trains a distillation config through the installed package's
train script, with this tree's mmdistill (PYTHONPATH) so that the test checks the tree.

openmim 0.3.9 runs the installed mmdistill's ``.mim/tools/train.py`` (copied there by
setup.py) with its own interpreter and ``--launcher none``; it adds ``--gpus``/``--device``
only for train scripts whose help mentions ``--gpus`` (OpenMMLab 1.0), which ours does not.
"""
import glob
import os
import os.path as osp
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

from conftest import project_script
from mmdistill.testing.runner import write_teacher_checkpoint

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DIGITS = osp.join(ROOT, 'projects', 'digits')
KD_CONFIG = osp.join(DIGITS, 'configs', 'kd_resnet18_w4_from_resnet18.py')
BIN = Path(sys.executable).parent
INSTALLED_TRAIN = osp.join(sysconfig.get_paths()['purelib'], 'mmdistill', '.mim', 'tools',
                           'train.py')


def test_mim_train_runs_a_distillation_config(tmp_path):
    if not osp.isfile(INSTALLED_TRAIN):  # without it, mim would try to download mmdistill
        pytest.fail(f'{INSTALLED_TRAIN} is missing: install mmdistill with bash tools/setup.sh '
                    '(a regular install; an editable one builds no .mim folder)')
    write_digits = project_script('digits').write_digits

    data_root = str(tmp_path / 'digits')
    write_digits(data_root, limit=60)
    teacher_ckpt = write_teacher_checkpoint(osp.join(DIGITS, 'configs', 'teacher_resnet18.py'),
                                            {}, str(tmp_path / 'teacher.pth'))

    work_dir = tmp_path / 'work'
    options = {
        'model.teacher.checkpoint': teacher_ckpt,
        'train_dataloader.dataset.data_root': data_root,
        'val_dataloader.dataset.data_root': data_root,
        'test_dataloader.dataset.data_root': data_root,
        'train_cfg.max_epochs': 1,
        'train_cfg.val_interval': 1,
        'default_hooks.checkpoint.interval': 1,
        'default_hooks.logger.interval': 1,
    }
    # mim runs the installed train script; the mmdistill it imports must be this tree's (a
    # probe brought in by custom_imports writes down the one the training process imported).
    probe = tmp_path / 'where_is_mmdistill.py'
    probe.write_text('import mmdistill\n'
                     f'open({str(tmp_path / "mmdistill_file")!r}, "w").write(mmdistill.__file__)\n')
    options['custom_imports.imports'] = '[mmdistill,where_is_mmdistill]'
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, str(tmp_path)]))
    command = [str(BIN / 'mim'), 'train', 'mmdistill', KD_CONFIG, '--work-dir', str(work_dir),
               '--cfg-options', *(f'{key}={value}' for key, value in options.items())]
    done = subprocess.run(command, cwd=str(tmp_path), capture_output=True, text=True,
                          timeout=600, env=env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    echoed = next(line for line in done.stdout.splitlines()
                  if line.startswith('Training command is '))
    assert osp.realpath(echoed.split()[4]) == osp.realpath(INSTALLED_TRAIN)
    imported = (tmp_path / 'mmdistill_file').read_text()
    assert osp.realpath(imported) == osp.realpath(osp.join(ROOT, 'mmdistill', '__init__.py'))

    assert osp.isfile(work_dir / 'epoch_1.pth')
    state_dict = torch.load(work_dir / 'epoch_1.pth', map_location='cpu',
                            weights_only=False)['state_dict']
    assert any(k.startswith('student.') for k in state_dict)
    assert not any(k.startswith('teacher.') for k in state_dict)
    logs = glob.glob(str(work_dir / '*' / '*.log'))
    assert len(logs) == 1
    log = open(logs[0]).read()
    assert re.search(r'Epoch\(train\) +\[1\]\[1/\d+\].* loss_kd: \d', log), log[-2000:]
    assert re.search(r'Epoch\(val\) +\[1\].* accuracy/top1: \d', log), log[-2000:]
