"""projects/dense: its configs read the generated data through mmdet's / mmseg's own datasets
and pipelines, each distillation config distils on such a batch, and run.py's schedule
scaling, loss-share bookkeeping and table are right."""
import copy
import os.path as osp
import sys
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import MODELS, DefaultScope
from mmengine.runner import Runner

from conftest import project_script
from mmdistill.testing.runner import write_teacher_checkpoint
from mmdistill.testing import write_coco_detection, write_seg_dataset
from mmdistill.utils import model_cfg_of

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PROJECT = osp.join(ROOT, 'projects', 'dense')
dense_run = project_script('dense')

FPN_LEVELS = 5
FGD_PARTS = ('fg', 'bg', 'attention', 'global')
# distillation config -> (task, the loss keys it must log besides the student's own)
DISTILL_CONFIGS = {
    'fgd_retinanet_r18_from_r50_shapes-128.py':
        ('det', [f'loss_fgd{i}_{p}' for i in range(FPN_LEVELS) for p in FGD_PARTS]),
    'mgd_retinanet_r18_from_r50_shapes-128.py':
        ('det', [f'loss_mgd{i}' for i in range(FPN_LEVELS)]),
    'mgd_pspnet_r18_from_r34-d8_shapes-64x64.py': ('seg', ['loss_mgd', 'loss_logit']),
}
STUDENT_LOSSES = dict(det=('loss_cls', 'loss_bbox'), seg=('decode.loss_ce', 'aux.loss_ce'))


def project_config(name: str) -> Config:
    return Config.fromfile(osp.join(PROJECT, 'configs', name))


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    """A few images of each task's generated data, written as run.py writes it (smaller)."""
    tmp = tmp_path_factory.mktemp('dense')
    det_root, seg_root = str(tmp / 'det'), str(tmp / 'seg')
    return dict(
        det=(det_root, write_coco_detection(det_root, num_images=6, size=dense_run.DET_SIZE,
                                            num_classes=dense_run.DET_CLASSES, num_val=2)),
        seg=(seg_root, write_seg_dataset(seg_root, num_train=4, num_val=2,
                                         size=dense_run.SEG_SIZE,
                                         num_classes=dense_run.SEG_CLASSES)))


@pytest.mark.parametrize('task', ['det', 'seg'])
def test_every_config_of_a_task_names_the_generated_classes_and_colours(task, data):
    _, metainfo = data[task]
    spec = dense_run.TASKS[task]
    for name in [spec.teacher, *spec.methods.values()]:
        configured = project_config(name).metainfo
        assert tuple(configured['classes']) == metainfo['classes'], name
        assert [tuple(c) for c in configured['palette']] == \
            [tuple(c) for c in metainfo['palette']], name


@pytest.mark.parametrize('config', list(DISTILL_CONFIGS))
def test_distillation_config_distils_on_a_batch_of_the_generated_data(config, data, tmp_path):
    task, distill_keys = DISTILL_CONFIGS[config]
    root, _ = data[task]
    cfg = project_config(config)
    cfg.merge_from_dict(dense_run.TASKS[task].data_overrides(root))
    # The teacher loads, strictly, a checkpoint of its own config, as run.py passes it one.
    teacher = write_teacher_checkpoint(cfg.model.teacher.config, {},
                                       str(tmp_path / 'teacher.pth'))
    cfg.model.teacher.checkpoint = teacher
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = revert_sync_batchnorm(MODELS.build(model_cfg_of(cfg)))
        loader_cfg = dict(copy.deepcopy(cfg.train_dataloader), batch_size=2)
        batch = next(iter(Runner.build_dataloader(loader_cfg, seed=0)))
    model.init_weights()
    model.train()
    losses = model(**model.data_preprocessor(batch, True), mode='loss')

    own = STUDENT_LOSSES[task]
    assert sorted(k for k in losses if k.startswith('loss_')) == \
        sorted(distill_keys + [k for k in own if k.startswith('loss_')])
    for key in distill_keys + list(own):
        value = losses[key]
        value = torch.stack(value) if isinstance(value, list) else value  # per FPN level
        assert torch.isfinite(value).all(), (key, value)
    distilled = sum(losses[key] for key in distill_keys)
    assert distilled > 0
    distilled.backward()
    tapped = model.student.neck if task == 'det' else model.student.backbone.layer4
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tapped.parameters())
    assert all(p.grad is None for p in model.teacher.parameters())


@pytest.mark.parametrize('epochs, milestones', [(12, [8, 11]), (6, [4, 5]), (3, [2, 2]), (1, [1, 1])])
def test_det_schedule_scales_the_1x_milestones(epochs, milestones):
    cfg = project_config('retinanet_r18_fpn_shapes-128.py')
    cfg.merge_from_dict(dense_run.det_schedule(epochs))
    warmup, steps = cfg.param_scheduler
    assert warmup.type == 'LinearLR' and (warmup.begin, warmup.end) == (0, 50)
    assert steps.type == 'MultiStepLR' and steps.milestones == milestones
    assert steps.end == cfg.train_cfg.max_epochs == cfg.default_hooks.checkpoint.interval == \
        epochs


def test_seg_schedule_ends_the_poly_decay_with_training():
    cfg = project_config('pspnet_r18-d8_shapes-64x64.py')
    cfg.merge_from_dict(dense_run.seg_schedule(75))
    (poly, ) = cfg.param_scheduler
    assert poly.type == 'PolyLR' and poly.end == 75 and poly.eta_min == 1e-4
    assert cfg.train_cfg.max_iters == cfg.default_hooks.checkpoint.interval == 75


def test_distill_share_averages_the_named_losses_over_the_last_iterations():
    hub = MessageHub('dense_share_test')
    window = dense_run.SHARE_WINDOW
    # Early iterations (outside the window) would give another share: they must not count.
    for total, fgd_fg, fgd_bg, fgd10, cls in [(100, 90, 5, 1, 4)] * 5 + [(10, 2, 1, 0.5, 6.5)] * \
            window:
        hub.update_scalar('train/loss', total)
        hub.update_scalar('train/loss_fgd1_fg', fgd_fg)
        hub.update_scalar('train/loss_fgd1_bg', fgd_bg)
        hub.update_scalar('train/loss_fgd10', fgd10)  # another loss whose name starts alike
        hub.update_scalar('train/loss_cls', cls)
    runner = SimpleNamespace(message_hub=hub)
    assert dense_run.distill_share(runner, ['fgd1']) == pytest.approx(3 / 10)
    assert dense_run.distill_share(runner, ['fgd1', 'fgd10']) == pytest.approx(3.5 / 10)


def test_summary_row_gives_mean_and_sample_std_over_seeds():
    runs = [dict(metric=m, seconds=s, ms_per_iter=ms, share=0.5)
            for m, s, ms in [(0.2, 60, 250), (0.223, 66, 275), (0.243, 72, 300)]]
    cells = [c.strip() for c in dense_run.summary_row('student', runs).split('|')[1:-1]]
    # mean 0.222, sample std sqrt(((-.022)^2 + .001^2 + .021^2) / 2) = 0.0215
    assert cells == ['student', '3', '0.222 ± 0.022', '0.200 0.223 0.243', '66.0', '275.0',
                     '0.5000']


def test_run_refuses_a_schedule_length_in_the_other_task_s_unit(monkeypatch, capsys):
    monkeypatch.setattr(sys, 'argv', ['run.py', '--task', 'det', '--iters', '10'])
    with pytest.raises(SystemExit):
        dense_run.main()
    assert '--task det trains by epochs: use --epochs' in capsys.readouterr().err
