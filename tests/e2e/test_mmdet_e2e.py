"""mmdet end to end: the FPN-imitation config (RetinaNet-R18 <- RetinaNet-R50) on generated
COCO-format shapes → Runner train → save → resume → CocoMetric → export → mmdet's API."""
import copy
import math
import os.path as osp
from types import SimpleNamespace

import cv2
import pytest
import torch
from mmengine.config import Config

from helpers.runner import (checkpoint_keys, latest_checkpoint, logged_history,
                                      logged_loss_terms, set_in_pipeline, train,
                                      write_teacher_checkpoint)
from mmdistill.apis import export_student
from mmdistill.testing import write_coco_detection

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
KD_CONFIG = osp.join(ROOT, 'configs', 'kd', 'fpn_retinanet_r18_from_r50_fpn_1x_coco.py')
SCALE = (128, 128)
NUM_TRAIN, NUM_VAL = 6, 2
FPN_LEVELS = 5
BASE_LR = 0.01  # the RetinaNet-R18 recipe's SGD learning rate


def tiny_coco_overrides(cfg: Config, root: str, metainfo: dict, teacher_checkpoint: str,
                        teacher_options: dict) -> dict:
    """What turns the COCO recipe into a CPU run of a few iterations on the generated data."""
    train_pipeline = set_in_pipeline(cfg.train_dataloader.dataset.pipeline, 'Resize',
                                     scale=SCALE)
    test_pipeline = set_in_pipeline(cfg.test_dataloader.dataset.pipeline, 'Resize', scale=SCALE)

    def split(name: str, pipeline: list, batch_size: int, **dataset) -> dict:
        return dict(batch_size=batch_size, num_workers=0, persistent_workers=False,
                    dataset=dict(data_root=root, ann_file=f'annotations/{name}.json',
                                 data_prefix=dict(img='images/'), metainfo=metainfo,
                                 pipeline=pipeline, **dataset))

    val_json = osp.join(root, 'annotations', 'val.json')
    return {
        # Data: the generated images at 128×128. The image without objects is trained on
        # (not filtered out), as box-based distillation losses must cope with it.
        'train_dataloader': split('train', train_pipeline, 2,
                                  filter_cfg=dict(filter_empty_gt=False)),
        'val_dataloader': split('val', test_pipeline, 1),
        'test_dataloader': split('val', test_pipeline, 1),
        'val_evaluator.ann_file': val_json,
        'test_evaluator.ann_file': val_json,
        # Student: our classes, no ImageNet download; an untrained detector scores every box
        # below the recipe's 0.05, so keep all boxes for CocoMetric to match.
        'model.student.backbone.init_cfg': None,
        'model.student.bbox_head.num_classes': len(metainfo['classes']),
        'model.student.test_cfg.score_thr': 0.0,
        # Teacher: the same head size through its config options, and its checkpoint.
        'model.teacher.checkpoint': teacher_checkpoint,
        'model.teacher.cfg_options': teacher_options,
        # Schedule: 1 epoch (resumed to 2 below); linear warm-up reaching lr at iteration 3
        # (mmengine's schedulers end at step end - 1), ×0.1 after epoch 1. No validation
        # while training: the test runs it once, after the resumed epoch.
        'train_cfg.max_epochs': 1,
        'train_cfg.val_begin': 100,
        'param_scheduler': [
            dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=3),
            dict(type='MultiStepLR', by_epoch=True, begin=0, end=2, milestones=[1], gamma=0.1),
        ],
        'default_hooks.checkpoint.interval': 1,
        'default_hooks.logger.interval': 1,
        'randomness.seed': 0,
    }


def test_generated_coco_data_loads_in_mmdet_with_its_edge_cases(tmp_path):
    from mmdet.datasets import CocoDataset

    first = write_coco_detection(str(tmp_path / 'a'), num_images=NUM_TRAIN + NUM_VAL,
                                 size=SCALE, num_classes=3, num_val=NUM_VAL)
    write_coco_detection(str(tmp_path / 'b'), num_images=NUM_TRAIN + NUM_VAL, size=SCALE,
                         num_classes=3, num_val=NUM_VAL)
    for name in ('annotations/train.json', 'annotations/val.json', 'images/0003.png'):
        assert (tmp_path / 'a' / name).read_bytes() == (tmp_path / 'b' / name).read_bytes()
    dataset = CocoDataset(data_root=str(tmp_path / 'a'), ann_file='annotations/train.json',
                          data_prefix=dict(img='images/'), metainfo=first, pipeline=[],
                          filter_cfg=dict(filter_empty_gt=False))
    infos = [dataset.get_data_info(i) for i in range(len(dataset))]
    assert len(infos) == NUM_TRAIN
    assert [len(info['instances']) == 0 for info in infos].count(True) == 1
    touching_border = 0
    for info in infos:
        image = cv2.imread(info['img_path'])[..., ::-1]
        for instance in info['instances']:
            x1, y1, x2, y2 = (int(v) for v in instance['bbox'])  # x2 = x + w: exclusive
            colour = first['palette'][instance['bbox_label']]
            painted = (image[y1:y2, x1:x2] == colour).all(-1)
            around = (image[max(y1 - 1, 0):y2 + 1, max(x1 - 1, 0):x2 + 1] == colour).all(-1)
            # The box is tight around the pixels painted in its class's colour (shapes are
            # at least a pixel apart): its edges hold some, the ring around it none.
            assert painted[0].any() and painted[-1].any()
            assert painted[:, 0].any() and painted[:, -1].any()
            assert around.sum() == painted.sum()
            touching_border += x1 == 0
    assert touching_border >= 1


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    """Train one epoch, then resume to a second one, on generated shapes."""
    tmp = tmp_path_factory.mktemp('mmdet_e2e')
    root = str(tmp / 'coco')
    metainfo = write_coco_detection(root, num_images=NUM_TRAIN + NUM_VAL, size=SCALE,
                                    num_classes=3, num_val=NUM_VAL)
    cfg = Config.fromfile(KD_CONFIG)
    teacher_options = {'model.bbox_head.num_classes': len(metainfo['classes'])}
    teacher_checkpoint = write_teacher_checkpoint(cfg.model.teacher.config, teacher_options,
                                                  str(tmp / 'teacher.pth'))
    cfg.merge_from_dict(
        tiny_coco_overrides(cfg, root, metainfo, teacher_checkpoint, teacher_options))
    config_file = str(tmp / 'fpn_retinanet_tiny.py')
    cfg.dump(config_file)  # the run's own config, which export_student reads
    work_dir = str(tmp / 'work')
    first = train(cfg, work_dir)
    first_checkpoint = latest_checkpoint(work_dir)
    resumed = train(cfg, work_dir, resume=True, **{'train_cfg.max_epochs': 2})
    return SimpleNamespace(first=first, first_checkpoint=first_checkpoint, resumed=resumed,
                           config_file=config_file, work_dir=work_dir, metainfo=metainfo,
                           teacher_checkpoint=teacher_checkpoint, tmp=tmp)


def test_student_and_distillation_losses_are_logged(run):
    logged = run.first.message_hub.log_scalars
    for key in [f'loss_fpn{i}' for i in range(FPN_LEVELS)] + ['loss_cls', 'loss_bbox']:
        value = logged[f'train/{key}'].current()
        assert math.isfinite(value) and value > 0, (key, value)
    assert set(logged_loss_terms(run.first)) == \
        {f'loss_fpn{i}' for i in range(FPN_LEVELS)} | {'loss_cls', 'loss_bbox'}


def test_checkpoint_holds_the_student_and_the_teacher_stays_as_loaded(run):
    assert run.first_checkpoint.endswith('epoch_1.pth')
    keys = checkpoint_keys(run.first_checkpoint)
    assert any(k.startswith('student.bbox_head.') for k in keys)
    assert not any(k.startswith('teacher.') for k in keys)
    loaded = torch.load(run.teacher_checkpoint, weights_only=False)['state_dict']
    trained = run.resumed.model.teacher.state_dict()
    assert set(trained) == set(loaded)
    for key, value in loaded.items():  # weights and BN statistics: two epochs left them as is
        torch.testing.assert_close(trained[key], value, rtol=0, atol=0, msg=key)


def test_resume_continues_iterations_and_learning_rate_schedule(run):
    iters_per_epoch = NUM_TRAIN // 2
    assert run.first.iter == iters_per_epoch and run.first.epoch == 1
    assert run.resumed.iter == 2 * iters_per_epoch and run.resumed.epoch == 2
    assert latest_checkpoint(run.work_dir).endswith('epoch_2.pth')
    # Epoch 1: warm-up 0.1×lr, 0.55×lr, then lr; epoch 2 (after the milestone): 0.1×lr.
    expected = ([0.1 * BASE_LR, 0.55 * BASE_LR] + [BASE_LR] * (iters_per_epoch - 2) +
                [0.1 * BASE_LR] * iters_per_epoch)
    assert logged_history(run.resumed, 'train/lr') == pytest.approx(expected, rel=1e-6)


def test_teacher_stops_after_its_neck_and_losses_compare_fpn_outputs(run):
    distiller = run.resumed.model.train()
    batch = next(iter(run.resumed.train_dataloader))
    data = distiller.data_preprocessor(copy.deepcopy(batch), True)
    # Hooks on the heads' classifier convs: mmdet's tensor mode calls bbox_head.forward()
    # directly, which a hook on bbox_head itself would not see.
    calls = {'teacher': 0, 'student': 0}
    handles = [
        getattr(distiller, side).bbox_head.retina_cls.register_forward_hook(
            lambda *_, side=side: calls.__setitem__(side, calls[side] + 1))
        for side in calls
    ]
    try:
        with torch.no_grad():
            losses = distiller(**data, mode='loss')
    finally:
        for handle in handles:
            handle.remove()
    assert calls == {'teacher': 0, 'student': FPN_LEVELS}
    # Each loss is the mean squared difference of the two necks' outputs at its level.
    with torch.no_grad():
        student = distiller.student.extract_feat(data['inputs'])
        teacher = distiller.teacher.extract_feat(data['inputs'])
    for level in range(FPN_LEVELS):
        expected = (student[level] - teacher[level]).pow(2).mean()
        assert losses[f'loss_fpn{level}'].item() == pytest.approx(expected.item(), rel=1e-5)


def test_validation_reports_coco_box_metrics(run):
    metrics = run.resumed.val_loop.run()
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75'):
        assert 0.0 <= metrics[key] <= 1.0, (key, metrics[key])


def test_exported_student_loads_and_predicts_in_mmdet_api(run):
    from mmdet.apis import inference_detector, init_detector

    checkpoint, student_cfg = export_student(run.config_file, latest_checkpoint(run.work_dir),
                                             str(run.tmp / 'export'))
    assert 'mmdistill' not in open(student_cfg).read()
    model = init_detector(student_cfg, checkpoint, device='cpu')
    assert model.dataset_meta['classes'] == run.metainfo['classes']

    distiller = run.resumed.model.eval()
    batch = next(iter(run.resumed.val_dataloader))
    with torch.no_grad():
        ours = distiller.val_step(copy.deepcopy(batch))[0].pred_instances
    theirs = inference_detector(model, batch['data_samples'][0].img_path).pred_instances
    assert len(ours) > 0
    torch.testing.assert_close(theirs.bboxes, ours.bboxes)
    torch.testing.assert_close(theirs.scores, ours.scores)
    assert torch.equal(theirs.labels, ours.labels)
