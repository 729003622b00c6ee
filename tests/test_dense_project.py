"""benchmarks/dense: its configs read the generated data through mmdet's / mmseg's own datasets
and pipelines, each distillation config distils on such a batch, and run.py's schedule
scaling, loss-share bookkeeping and table are right."""
import copy
import json
import os.path as osp
import shutil
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import MODELS, DefaultScope
from mmengine.runner import Runner

from benchmarks.dense import run as dense_run
from benchmarks.evidence import paired_differences, summarise, training
from mmdistill.testing import write_coco_detection, write_seg_dataset
from mmdistill.testing.shapes import scale_spread_shapes
from mmdistill.utils import model_cfg_of
from helpers.runner import write_teacher_checkpoint

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PROJECT = osp.join(ROOT, 'benchmarks', 'dense')

FPN_LEVELS = 5
FGD_PARTS = ('fg', 'bg', 'attention', 'global')
# distillation config -> (task, the loss keys it must log besides the student's own)
DISTILL_CONFIGS = {
    'fgd_retinanet_r18_from_r50_shapes-160.py':
        ('det', [f'loss_fgd{i}_{p}' for i in range(FPN_LEVELS) for p in FGD_PARTS]),
    'mgd_retinanet_r18_from_r50_shapes-160.py':
        ('det', [f'loss_mgd{i}' for i in range(FPN_LEVELS)]),
    'mgd_pspnet_r18_from_r34-d8_shapes-64x64.py': ('seg', ['loss_mgd', 'loss_logit']),
    'mgd-feature-only_pspnet_r18_from_r34-d8_shapes-64x64.py': ('seg', ['loss_mgd']),
    'mgd-logit-only_pspnet_r18_from_r34-d8_shapes-64x64.py': ('seg', ['loss_logit']),
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
        det=(det_root, write_coco_detection(
            det_root, **dict(dense_run.TASKS['det'].data_arguments, num_images=6, num_val=2))),
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


@pytest.mark.parametrize('epochs, milestones',
                         [(12, [8, 11]), (6, [4, 5]), (3, [2, 2]), (1, [1, 1])])
def test_det_schedule_scales_the_1x_milestones(epochs, milestones):
    cfg = project_config('retinanet_r18_fpn_shapes-160.py')
    cfg.merge_from_dict(dense_run.det_schedule(epochs))
    warmup, steps = cfg.param_scheduler
    assert warmup.type == 'LinearLR' and (warmup.begin, warmup.end) == (0, 100)
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


def test_the_seg_ablation_keeps_one_term_of_the_recipe_each_as_the_recipe_sets_it():
    seg = dense_run.TASKS['seg']
    recipe = project_config(seg.methods['mgd']).model.distill_losses
    for method, kept in (('mgd_feature_only', 'mgd'), ('mgd_logit_only', 'logit')):
        assert project_config(seg.methods[method]).model.distill_losses.to_dict() == \
            {kept: recipe[kept].to_dict()}
    # run by name only; each also paired with the whole recipe at the same seed
    assert seg.default_methods == ('student', 'mgd')
    table = dense_run.evidence_table('seg', seg, 300, 600, dict(student=[], mgd=[]))
    assert table.also_paired == [['mgd', 'mgd_logit_only'], ['mgd', 'mgd_feature_only']]


def test_evidence_table_keeps_each_run_s_provenance_and_pairs_students_by_seed():
    def run(seed, metric, date, share=0.0):
        return dict(seed=seed, metric=metric, seconds=60.0, ms_per_iter=250.0, share=share,
                    profile=dict(task=[1.8, 0.5]),
                    provenance=dict(date=date, commit='abc', command=f'python run.py {seed}'))

    runs = dict(teacher=[run(0, 0.5, 'T0')],
                student=[run(0, 0.20, 'S0'), run(1, 0.30, 'S1'), run(2, 0.25, 'S2')],
                mgd=[run(0, 0.26, 'M0', 0.4), run(1, 0.29, 'M1', 0.6), run(2, 0.30, 'M2', 0.5)])
    table = dense_run.evidence_table('det', dense_run.TASKS['det'], 12, 24, runs)
    # every method of the task is paired, also those this process did not run (fgd)
    assert table.baseline == 'student' and table.compared == ['fgd', 'mgd']
    assert {r.run: (r.model, r.seed) for r in table.records} == {
        'T0': ('teacher', 0), 'S0': ('student', 0), 'S1': ('student', 1),
        'S2': ('student', 2), 'M0': ('mgd', 0), 'M1': ('mgd', 1), 'M2': ('mgd', 2)}
    assert table.runs['M1']['command'] == 'python run.py 1'
    (paired, ) = paired_differences(table).values()
    # differences +0.06, -0.01, +0.05: mean 0.0333, sample std 0.0379, two above zero
    assert paired.differences == pytest.approx([0.06, -0.01, 0.05])
    assert (paired.mean, paired.std, paired.positive) == \
        (pytest.approx(0.1 / 3), pytest.approx(0.03786, abs=1e-5), 2)
    share = next(s for s in summarise(table) if s.model == 'mgd').columns['distill_share']
    assert share == pytest.approx(0.5)


def test_each_schedule_has_a_table_of_its_own():
    det = dense_run.TASKS['det']  # students 12 epochs, teacher twice as long, by default
    assert [dense_run.table_name('det', det, length, teacher) for length, teacher in
            ((12, 24), (24, 48), (24, 144), (12, 48))] == [
        'det', 'det_24epochs', 'det_24epochs_teacher144', 'det_teacher48']


def test_run_refuses_a_schedule_length_in_the_other_task_s_unit(monkeypatch, capsys):
    monkeypatch.setattr(sys, 'argv', ['run.py', '--task', 'det', '--iters', '10'])
    with pytest.raises(SystemExit):
        dense_run.main()
    assert '--task det trains by epochs: use --epochs' in capsys.readouterr().err


def test_detection_data_put_positives_on_every_fpn_level_where_the_old_data_did_not(tmp_path):
    """Counted with mmdet's own anchor generator and MaxIoUAssigner from the student config:
    run.py's data (fewer images) reach P3..P7; the earlier 128×128 data with the recipe's
    anchors (32..645 pixels) and sides of 16..42 pixels are matched on P3 only."""
    cfg = project_config(dense_run.TASKS['det'].methods['student'])
    arguments = dict(dense_run.TASKS['det'].data_arguments, num_images=40, num_val=2)
    write_coco_detection(str(tmp_path / 'spread'), **arguments)
    counts = dense_run.positives_per_level(cfg, str(tmp_path / 'spread/annotations/train.json'))
    assert len(counts) == FPN_LEVELS and min(counts) > 0, counts

    write_coco_detection(str(tmp_path / 'old'), num_images=40, size=(128, 128), num_val=2)
    cfg.model.bbox_head.anchor_generator.octave_base_scale = 4
    old = dense_run.positives_per_level(cfg, str(tmp_path / 'old/annotations/train.json'))
    assert old[0] > 0 and old[1:] == [0, 0, 0, 0], old
    with pytest.raises(RuntimeError, match=r"no object is matched on FPN level\(s\) "
                       r"\['P4', 'P5', 'P6', 'P7'\]"):
        dense_run.check_det_levels(cfg, str(tmp_path / 'old'))


def test_write_data_reuses_data_written_with_the_same_arguments(tmp_path):
    task = dense_run.TASKS['seg']._replace(
        data_arguments=dict(num_train=2, num_val=1, size=(32, 32), num_classes=2))
    root = str(tmp_path / 'data')
    first = dense_run.write_data(task, root)
    calls = []
    counting = task._replace(write_data=lambda *a, **k: calls.append(k) or task.write_data(*a, **k))
    assert dense_run.write_data(counting, root) == first and calls == []
    changed = counting._replace(data_arguments=dict(task.data_arguments, num_train=3))
    dense_run.write_data(changed, root)
    assert len(calls) == 1 and len(list((tmp_path / 'data').rglob('*.png'))) > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ['data']  # no half-written folder left


def _stamp(task, config, root, seed=0, teacher=None):
    """run.py's fingerprint of a run under ``root`` (the layout main() gives a work dir)."""
    data_root = osp.join(root, 'data')
    cfg = dense_run.run_config(task, config, osp.join(root, f'run_seed{seed}'), data_root, 24,
                               seed, teacher)
    return dense_run.fingerprint(cfg, task, data_root, teacher)


def test_a_run_s_fingerprint_leaves_out_where_it_runs_and_keeps_what_it_trains(
        tmp_path, monkeypatch):
    det = dense_run.TASKS['det']
    distilled = det.methods['fgd']
    teacher = dict(checkpoint='work_dirs/dense_det/teacher_seed0/epoch_48.pth',
                   fingerprint='0123456789abcdef')
    here = _stamp(det, distilled, 'work_dirs/dense_det', teacher=teacher)
    # the same run spelt with an absolute work dir, its teacher's checkpoint there too
    moved = dict(teacher, checkpoint=str(tmp_path / 'w/teacher_seed0/epoch_48.pth'))
    assert _stamp(det, distilled, str(tmp_path / 'w'), teacher=moved) == here
    # ... and from another checkout (the configs, which name the teacher's config, copied)
    monkeypatch.setattr(dense_run, 'CONFIGS', shutil.copytree(dense_run.CONFIGS,
                                                              str(tmp_path / 'configs')))
    assert _stamp(det, distilled, str(tmp_path / 'w'), teacher=moved) == here
    monkeypatch.undo()
    # what changes the result changes the stamp: seed, data, teacher, config
    assert _stamp(det, distilled, 'work_dirs/dense_det', seed=1, teacher=teacher) != here
    fewer = det._replace(data_arguments=dict(det.data_arguments, num_images=10))
    assert _stamp(fewer, distilled, 'work_dirs/dense_det', teacher=teacher) != here
    retrained = dict(teacher, fingerprint='fedcba9876543210')
    assert _stamp(det, distilled, 'work_dirs/dense_det', teacher=retrained) != here
    assert _stamp(det, det.methods['mgd'], 'work_dirs/dense_det', teacher=teacher) != here


def test_a_cached_run_is_read_from_another_spelling_of_its_work_dir(tmp_path, monkeypatch):
    """A result.json written under one spelling of the work dir is read (not trained again)
    under another, and its checkpoint is given as the reading command spells the work dir."""
    seg = dense_run.TASKS['seg']
    root = tmp_path / 'w'
    (root / 'run_seed0').mkdir(parents=True)
    cached = dict(metric=87.5, fingerprint=_stamp(seg, seg.teacher, 'elsewhere/w'),
                  checkpoint='elsewhere/w/run_seed0/iter_400.pth')
    (root / 'run_seed0' / 'result.json').write_text(json.dumps(cached))
    monkeypatch.delattr(training, 'Runner')  # reading must not build a runner
    result = dense_run.train(seg, seg.teacher, str(root / 'run_seed0'), str(root / 'data'), 24,
                             0)
    assert result['metric'] == 87.5
    assert result['checkpoint'] == str(root / 'run_seed0' / 'iter_400.pth')


def test_scale_spread_shapes_are_log_uniform_in_scale_bounded_in_aspect_largest_first():
    rng = np.random.default_rng(0)
    low, high = dense_run.DET_SCALES
    boxes = []  # rectangles (class 0 only) fill their boxes: box = drawn w × h
    for _ in range(300):
        (shape, ) = scale_spread_shapes(rng, (256, 256), 1, 1, (low, high))
        x0, y0, x1, y1 = shape.box()
        boxes.append((x1 - x0 + 1, y1 - y0 + 1))
    w, h = np.array(boxes, dtype=float).T
    scale = np.sqrt(w * h)
    assert scale.min() >= low - 1 and scale.max() <= high + 1
    assert (w / h).min() >= 0.5 - 0.1 and (w / h).max() <= 2 + 0.2
    # log-uniform: half the scales lie under the geometric mean of the range (48 pixels);
    # uniform sides would put (48 - 10) / 220 = 17 % there
    assert 0.4 < np.mean(scale < np.sqrt(low * high)) < 0.6

    shapes = scale_spread_shapes(np.random.default_rng(1), (256, 256), 4, 1, (low, high))
    areas = [int(s.mask.sum()) for s in shapes]
    assert len(shapes) >= 2 and areas == sorted(areas, reverse=True)
