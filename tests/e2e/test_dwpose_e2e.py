"""DWPose's two stages end to end, with the repository's own configs and MMEngine's Runner.

Stage 1 (``s1_dwpose_l-to-t_coco-256x192.py``, RTMPose-t ← RTMPose-l): train, save, resume,
CocoMetric, export. Stage 2 (``s2_dwpose_t_coco-256x192.py``): the stage-1 export is the
teacher; a fresh head learns from its logits on its shared, frozen backbone, without the
ground-truth loss; the export is stage 1's backbone plus the new head and loads with mmpose's
``init_model``. Both models run at a 64×96 input on synthetic stick figures (see
``helpers.rtmpose``); the teacher checkpoint of stage 1 is an untrained RTMPose-l.
"""
import copy
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import MODELS, DefaultScope
from mmengine.runner import Runner

from helpers.rtmpose import loader, small_head, small_pipeline
from helpers.runner import (latest_checkpoint, logged_history, logged_loss_terms,
                                      predict_per_image, train, write_teacher_checkpoint)
from mmdistill.apis import export_student
from mmdistill.testing import write_coco_keypoints

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
COCO = osp.join(ROOT, 'configs', 'dwpose', 'coco')
STAGE1 = osp.join(COCO, 's1_dwpose_l-to-t_coco-256x192.py')
STAGE2 = osp.join(COCO, 's2_dwpose_t_coco-256x192.py')
BETA = 10.0  # RTMPose's KLDiscretLoss beta, which both configs pass to SimCCDistillLoss
ITERS_PER_EPOCH = 2  # 8 training images, batch 4


@pytest.fixture(scope='module')
def pose_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('stick_figures'))
    write_coco_keypoints(root, num_images=12, num_val=4, size=(128, 96))
    return root


def run_options(cfg: Config, root: str, teacher_ckpt: str, max_epochs: int) -> dict:
    """Overrides shared by both stages: small input, the stick figures, short schedule."""
    hooks = copy.deepcopy(cfg.custom_hooks)
    for hook in hooks:
        if hook['type'] == 'mmdet.PipelineSwitchHook':
            hook['switch_pipeline'] = small_pipeline(hook['switch_pipeline'])
    return {
        **small_head('model.student.'),
        'model.teacher.checkpoint': teacher_ckpt,
        'model.teacher.cfg_options': small_head('model.'),
        'train_dataloader': loader(cfg.train_dataloader, root, 'train'),
        'val_dataloader': loader(cfg.val_dataloader, root, 'val'),
        'test_dataloader': loader(cfg.test_dataloader, root, 'val'),
        'val_evaluator.ann_file': osp.join(root, 'annotations', 'val.json'),
        'custom_hooks': hooks,
        'param_scheduler.0.end': 2,  # a 2-iteration warm-up instead of 1000: the head moves
        'train_cfg.max_epochs': max_epochs,
        'train_cfg.val_interval': 10,  # validated explicitly below
        'default_hooks.checkpoint.interval': 1,
        'default_hooks.logger.interval': 1,
    }


def simcc_kl(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """KL(softmax(β z_t) ‖ softmax(β z_s)) over the bins, averaged over samples and keypoints,
    written out here independently of the library's helper."""
    log_p_t = F.log_softmax(BETA * teacher, dim=-1)
    return (log_p_t.exp() * (log_p_t - F.log_softmax(BETA * student, dim=-1))).sum(-1).mean()


def train_batch(runner: Runner, distiller):
    batch = next(iter(runner.train_dataloader))
    data = distiller.data_preprocessor(batch, True)
    return data['inputs'], data['data_samples']


def backbone_and_head(state_dict: dict):
    backbone = {k: v for k, v in state_dict.items() if k.startswith('backbone.')}
    head = {k: v for k, v in state_dict.items() if k.startswith('head.')}
    assert backbone and head and len(backbone) + len(head) == len(state_dict)
    return backbone, head


class StageTwoProbe(Hook):
    """Counts the shared backbone's stem calls in each training step, keeps each step's logged
    losses and the head's weights as training starts (after the student's initialisation)."""

    def __init__(self):
        self.stem_calls, self.step_logs, self.head_at_start = [], [], None
        self.calls = []  # stem calls since the last clear

    def before_train(self, runner):
        distiller = runner.model
        self.head_at_start = copy.deepcopy(distiller.student.head.state_dict())
        distiller.teacher.backbone.stem.register_forward_hook(
            lambda *args: self.calls.append(1))

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.calls.clear()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.stem_calls.append(len(self.calls))
        self.step_logs.append({k: float(v) for k, v in outputs.items()})


def test_stage_two_distiller_from_config_shares_a_frozen_backbone(tmp_path):
    """The stage-2 config builds a student whose backbone IS the teacher's: its init_cfg (a
    pretrained file, here a missing one) never runs, it stays in eval mode and frozen, and
    only the fresh head trains."""
    cfg = Config.fromfile(STAGE2)
    teacher_options = small_head('model.')
    ckpt = write_teacher_checkpoint(cfg.model.teacher.config, teacher_options,
                                    str(tmp_path / 'stage1.pth'))
    saved = torch.load(ckpt, weights_only=False)['state_dict']
    missing = str(tmp_path / 'no-such-pretrained.pth')
    cfg.merge_from_dict({
        **small_head('model.student.'), 'model.teacher.checkpoint': ckpt,
        'model.teacher.cfg_options': {
            **teacher_options,
            'model.backbone.init_cfg': dict(type='Pretrained', prefix='backbone.',
                                            checkpoint=missing)}})
    with DefaultScope.overwrite_default_scope('mmpose'):
        distiller = MODELS.build(cfg.model)
    distiller.init_weights()  # would raise FileNotFoundError if the init_cfg ran

    backbone = distiller.teacher.backbone
    assert distiller.student.backbone is backbone
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, saved[f'backbone.{key}']), key
    assert not any(torch.equal(value, saved[f'head.{key}'])
                   for key, value in distiller.student.head.state_dict().items()
                   if value.dim() > 1)  # the head is fresh, not the teacher's
    distiller.train()
    assert not distiller.teacher.training and not backbone.training
    assert distiller.student.head.training
    assert not any(p.requires_grad for p in backbone.parameters())
    assert all(p.requires_grad for p in distiller.student.head.parameters())
    assert distiller.student_loss_weight == 0.0
    assert list(distiller.distill_losses) == ['logit']
    state = distiller.state_dict()
    assert not any(k.startswith('teacher.') for k in state)
    assert any(k.startswith('student.backbone.') for k in state)  # exported with the student


def test_two_stages_train_resume_evaluate_export(pose_root, tmp_path):
    from mmpose.apis import inference_topdown, init_model

    # ---------------------------------------------------------------- stage 1: train 1 epoch
    cfg1 = Config.fromfile(STAGE1)
    teacher_ckpt = write_teacher_checkpoint(cfg1.model.teacher.config, small_head('model.'),
                                            str(tmp_path / 'rtmpose-l.pth'))
    work1 = str(tmp_path / 'stage1')
    options1 = run_options(cfg1, pose_root, teacher_ckpt, max_epochs=1)
    first = train(cfg1, work1, **options1)
    assert first.iter == ITERS_PER_EPOCH
    logged = first.message_hub.log_scalars
    for key in ('train/loss_fea', 'train/loss_logit', 'train/loss_kpt'):
        assert np.isfinite(logged[key].current()) and logged[key].current() > 0, key
    assert set(logged_loss_terms(first)) == {'loss_fea', 'loss_logit', 'loss_kpt'}
    saved = torch.load(latest_checkpoint(work1), map_location='cpu', weights_only=False)
    assert saved['state_dict']['distill_losses.fea.align.weight'].shape == (1024, 384, 1, 1)
    assert not any(k.startswith('teacher.') for k in saved['state_dict'])

    # Resume to 2 epochs: the decay 1 - epoch/max_epochs gives 1.0 in epoch 0, 0.5 in epoch 1.
    resumed = train(cfg1, work1, resume=True, **{**options1, 'train_cfg.max_epochs': 2})
    assert resumed.iter == 2 * ITERS_PER_EPOCH and resumed.epoch == 2
    for name in ('fea', 'logit'):
        assert logged_history(resumed, f'train/{name}_scale') == [1.0, 1.0, 0.5, 0.5], name
    metrics = resumed.val_loop.run()
    assert 0.0 <= metrics['coco/AP'] <= 1.0

    # Stage 1's losses on one batch against the formulas, at the epoch-1 scale 0.5.
    distiller = resumed.model.eval()
    inputs, samples = train_batch(resumed, distiller)
    student, teacher = distiller.student, distiller.teacher
    with torch.no_grad():
        losses = distiller.loss(inputs, samples)
        f_s, f_t = student.backbone(inputs)[-1], teacher.backbone(inputs)[-1]
        align = distiller.distill_losses.fea.align
        expected_fea = 7e-5 * ((align(f_s) - f_t)**2).sum() / inputs.shape[0]
        (x_s, y_s), (x_t, y_t) = student.head((f_s, )), teacher.head((f_t, ))
        expected_logit = 0.1 * (simcc_kl(x_s, x_t) + simcc_kl(y_s, y_t))
        own = student.loss(inputs, samples)
    torch.testing.assert_close(losses['loss_fea'], 0.5 * expected_fea)
    torch.testing.assert_close(losses['loss_logit'], 0.5 * expected_logit)
    torch.testing.assert_close(losses['loss_kpt'], own['loss_kpt'])

    stage1_ckpt, _ = export_student(osp.join(work1, osp.basename(STAGE1)),
                                    latest_checkpoint(work1), str(tmp_path / 'stage1_export'))
    stage1 = torch.load(stage1_ckpt, weights_only=False)['state_dict']
    stage1_backbone, stage1_head = backbone_and_head(stage1)

    # ------------------------------------------- stage 2: the stage-1 student is the teacher
    cfg2 = Config.fromfile(STAGE2)
    work2 = str(tmp_path / 'stage2')
    cfg2.work_dir = work2
    cfg2.merge_from_dict(run_options(cfg2, pose_root, stage1_ckpt, max_epochs=2))
    runner = Runner.from_cfg(cfg2)
    probe = StageTwoProbe()
    runner.register_hook(probe)
    runner.train()
    distiller = runner.model
    assert runner.iter == 2 * ITERS_PER_EPOCH
    assert distiller.student.backbone is distiller.teacher.backbone
    # The shared backbone ran once per step: the teacher's pass; the student reused it.
    assert probe.stem_calls == [1] * (2 * ITERS_PER_EPOCH)
    for log in probe.step_logs:  # only the logit loss counts; the GT loss is weighted 0
        assert 'loss_kpt' not in log and log['unweighted_kpt'] > 0  # logged, not in the total
        assert log['loss'] == pytest.approx(log['loss_logit'], rel=1e-6)
    for key, value in distiller.student.backbone.state_dict().items():
        assert torch.equal(value, stage1_backbone[f'backbone.{key}']), key  # bit-identical
    head = distiller.student.head.state_dict()
    assert any(not torch.equal(head[k], v) for k, v in probe.head_at_start.items())

    # Stage 2's loss on one batch: KL between the teacher's head and the student's head on
    # the same (teacher) backbone features, weight 1, no decay.
    distiller.eval()
    inputs, samples = train_batch(runner, distiller)
    probe.calls.clear()
    with torch.no_grad():
        losses = distiller.loss(inputs, samples)
        calls_in_loss = len(probe.calls)
        features = distiller.teacher.backbone(inputs)
        (x_s, y_s), (x_t, y_t) = distiller.student.head(features), \
            distiller.teacher.head(features)
    assert calls_in_loss == 1
    torch.testing.assert_close(losses['loss_logit'], simcc_kl(x_s, x_t) + simcc_kl(y_s, y_t))
    assert 'loss_kpt' not in losses and not losses['unweighted_kpt'].requires_grad

    # Export: teacher backbone + student head, loaded and run by mmpose's own API.
    stage2_ckpt, stage2_cfg = export_student(osp.join(work2, osp.basename(STAGE2)),
                                             latest_checkpoint(work2),
                                             str(tmp_path / 'stage2_export'))
    stage2_backbone, stage2_head = backbone_and_head(
        torch.load(stage2_ckpt, weights_only=False)['state_dict'])
    assert stage2_backbone.keys() == stage1_backbone.keys()
    assert all(torch.equal(v, stage1_backbone[k]) for k, v in stage2_backbone.items())
    assert stage2_head.keys() == stage1_head.keys()
    assert any(not torch.equal(v, stage1_head[k]) for k, v in stage2_head.items())

    model = init_model(stage2_cfg, stage2_ckpt, device='cpu')
    batch = next(iter(runner.val_dataloader))
    ours = predict_per_image(distiller, batch)
    for sample in ours:
        theirs = inference_topdown(model, sample.img_path, sample.gt_instances.bboxes)
        assert len(theirs) == 1
        torch.testing.assert_close(theirs[0].pred_instances.keypoints,
                                   sample.pred_instances.keypoints)
        torch.testing.assert_close(theirs[0].pred_instances.keypoint_scores,
                                   sample.pred_instances.keypoint_scores)
    assert 'mmdistill' not in open(stage2_cfg).read()
