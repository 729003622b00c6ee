"""Shipped configs through the smoke test, offline: each trains a couple of iterations as
written (its pipelines, optimizer, clipped schedulers, hooks) on generated data, validates with
its own metric, keeps its teacher unchanged and exports its student.

The default suite runs :data:`SAMPLE`, a fixed config of each method directory and project
(the DeiT ViTKD and USKD configs among them, whose warm-up once failed the smoke test; YOLOX
for detection, DWPose for pose), in one process, in about three minutes on two cores. Every
config (``configs/**`` but ``_base_``, and ``projects/*/configs``) runs with

    MMDISTILL_SMOKE_ALL=1 .venv/bin/python -m pytest tests/test_smoke_configs.py

(docs/contributing.md): about an hour on two cores, the detection configs at COCO's 1333×800
taking one to three minutes each.
"""
import glob
import math
import os
import os.path as osp

import pytest
from mmengine.config import Config

from mmdistill.apis.smoke import problems, smoke_test
from mmdistill.engine import SafeRunner

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
ALL = sorted(osp.relpath(path, ROOT) for path in
             glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True) +
             glob.glob(osp.join(ROOT, 'projects', '*', 'configs', '*.py'))
             if '_base_' not in osp.relpath(path, ROOT).split(osp.sep))
SAMPLE = [
    'configs/dwpose/coco/s2_dwpose_s_coco-256x192.py',
    'configs/fgd/fgd_yolox-m_from_yolox-l_8xb8-300e_coco.py',
    'configs/kd/kd_resnet18_from_resnet34_8xb32_in1k.py',
    'configs/mgd/mgd_resnet18_from_resnet34_8xb32_in1k.py',
    'configs/nkd/tf-nkd_resnet18_8xb32_in1k.py',
    'configs/uskd/uskd_deit-tiny_4xb256_in1k.py',
    'configs/vitkd/vitkd_deit-tiny_from_deit3-small_4xb256_in1k.py',
    'projects/crossget/configs/kd_crossget_vit-p4_from_vit-p4_digits.py',
    'projects/upop/configs/kd-upop-deit-digits.py',
]
CONFIGS = ALL if os.environ.get('MMDISTILL_SMOKE_ALL') == '1' else SAMPLE


def search_fits_the_run(config: str) -> dict:
    """Overrides for UPop's search hook, whose search (epochs of the training data) must end
    inside the run: the smoke run's one epoch holds a search of one iteration."""
    hooks = Config.fromfile(osp.join(ROOT, config)).get('custom_hooks') or []
    options = {}
    for index, hook in enumerate(hooks):
        if str(hook.get('type')).endswith('UPopHook'):
            options.update({f'custom_hooks.{index}.search_epochs': None,
                            f'custom_hooks.{index}.search_iters': 1})
    return options


def test_the_sample_is_shipped_configs_and_upop_searches_fit():
    assert set(SAMPLE) <= set(ALL)
    # One of each method directory (configs/<method>) and project (projects/<project>).
    assert sorted(path.split('/')[1] for path in SAMPLE) == sorted(
        {path.split('/')[1] for path in ALL})
    assert search_fits_the_run('projects/upop/configs/kd-upop-deit-digits.py') == {
        'custom_hooks.0.search_epochs': None, 'custom_hooks.0.search_iters': 1}
    assert search_fits_the_run('configs/kd/kd_resnet18_from_resnet34_8xb32_in1k.py') == {}


@pytest.mark.parametrize('config', CONFIGS)
def test_config_trains_validates_and_exports_offline(config, tmp_path):
    result = smoke_test(osp.join(ROOT, config), str(tmp_path), offline=True,
                        cfg_options=search_fits_the_run(config))
    assert problems(result) == []
    assert math.isfinite(result.losses['loss'])
    assert result.runner.iter >= 2 and osp.isfile(result.checkpoint)
    assert isinstance(result.runner, SafeRunner)  # the runner tools/train.py builds
    if 'student' in result.runner.cfg.model:
        assert len(result.exported) == 2 and all(osp.isfile(path) for path in result.exported)
        assert result.teacher_unchanged in (True, None)  # None: no teacher (USKD, tf-NKD)
