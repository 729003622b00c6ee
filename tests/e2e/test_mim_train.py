"""`mim train mmdistill CONFIG` trains a distillation config, with this tree's mmdistill.

openmim 0.3.9 finds the mmdistill package that its interpreter imports and runs that package's
``.mim/tools/train.py`` (copied there by setup.py, which ``tools/setup.sh`` runs on the tree
too) with ``--launcher none``; it adds ``--gpus``/``--device`` only for train scripts whose
help mentions ``--gpus`` (OpenMMLab 1.0), which ours does not. The test puts the tree first on
``PYTHONPATH``, so that it checks the tree's code rather than the copy installed in the venv.
"""
import glob
import os
import os.path as osp
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.digits.run import write_digits
from helpers.runner import write_teacher_checkpoint

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DIGITS = osp.join(ROOT, 'benchmarks', 'digits')
KD_CONFIG = osp.join(DIGITS, 'configs', 'kd_resnet18_w4_from_resnet18.py')
BIN = Path(sys.executable).parent
TREE_TRAIN = osp.join(ROOT, 'mmdistill', '.mim', 'tools', 'train.py')


def test_mim_train_runs_a_distillation_config(tmp_path):
    if not osp.isfile(TREE_TRAIN):  # without it, mim would try to download mmdistill
        pytest.fail(f'{TREE_TRAIN} is missing: run bash tools/setup.sh (its install of '
                    'mmdistill builds the .mim folder; an editable install builds none)')
    with open(TREE_TRAIN) as copy, open(osp.join(ROOT, 'tools', 'train.py')) as source:
        assert copy.read() == source.read(), \
            f'{TREE_TRAIN} is older than tools/train.py: run bash tools/setup.sh again'
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
    # The mmdistill that the training process imports must be this tree's: a config of the
    # user's kind (inheriting the KD config) brings in a probe that writes down its file.
    probe = tmp_path / 'where_is_mmdistill.py'
    probe.write_text('import mmdistill\n'
                     f'open({str(tmp_path / "mmdistill_file")!r}, "w").write(mmdistill.__file__)\n')
    config = tmp_path / 'kd_with_probe.py'
    config.write_text(f'_base_ = {KD_CONFIG!r}\n'
                      "custom_imports = dict(imports=['mmdistill', 'where_is_mmdistill'], "
                      'allow_failed_imports=False)\n')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, str(tmp_path)]))
    command = [str(BIN / 'mim'), 'train', 'mmdistill', str(config), '--work-dir', str(work_dir),
               '--cfg-options', *(f'{key}={value}' for key, value in options.items())]
    done = subprocess.run(command, cwd=str(tmp_path), capture_output=True, text=True,
                          timeout=600, env=env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    echoed = next(line for line in done.stdout.splitlines()
                  if line.startswith('Training command is '))
    assert osp.realpath(echoed.split()[4]) == osp.realpath(TREE_TRAIN)
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
