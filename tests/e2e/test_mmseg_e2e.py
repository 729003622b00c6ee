"""mmseg end to end: pixel-wise KD config (PSPNet-R18 <- PSPNet-R101) on generated shapes →
Runner train (iterations) → save → resume → IoUMetric → export → mmseg's own API."""
import copy
import math
import os.path as osp
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from torch import nn

from helpers.runner import (checkpoint_keys, latest_checkpoint, logged_history,
                                      logged_loss_terms, set_in_pipeline, train,
                                      write_teacher_checkpoint)
from mmdistill.apis import export_student
from mmdistill.testing import write_seg_dataset

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
KD_CONFIG = osp.join(ROOT, 'configs', 'kd',
                     'kd_pspnet_r18_from_r101-d8_4xb2-80k_cityscapes-512x1024.py')
CROP = (64, 64)
FIRST_ITERS, RESUMED_ITERS = 4, 6
BASE_LR, MIN_LR, POWER = 0.01, 1e-4, 0.9  # the recipe's SGD lr and PolyLR settings


def tiny_seg_overrides(cfg: Config, root: str, metainfo: dict, teacher_checkpoint: str,
                       teacher_options: dict) -> dict:
    """What turns the Cityscapes recipe into a CPU run of a few iterations on generated data."""
    train_pipeline = set_in_pipeline(
        set_in_pipeline(cfg.train_dataloader.dataset.pipeline, 'RandomResize', scale=CROP),
        'RandomCrop', crop_size=CROP)
    test_pipeline = set_in_pipeline(cfg.test_pipeline, 'Resize', scale=CROP)

    def split(name: str, pipeline: list, batch_size: int) -> dict:
        return dict(batch_size=batch_size, num_workers=0, persistent_workers=False,
                    dataset=dict(type='BaseSegDataset', data_root=root, metainfo=metainfo,
                                 data_prefix=dict(img_path=f'img_dir/{name}',
                                                  seg_map_path=f'ann_dir/{name}'),
                                 img_suffix='.png', seg_map_suffix='.png', pipeline=pipeline))

    num_classes = len(metainfo['classes'])
    return {
        # Data: the generated images in mmseg's generic layout, 64×64 crops.
        'train_dataloader': split('train', train_pipeline, 2),
        'val_dataloader': split('val', test_pipeline, 1),
        'test_dataloader': split('val', test_pipeline, 1),
        'test_pipeline': test_pipeline,  # what mmseg.apis.inference_model reads
        'data_preprocessor.size': CROP,
        # Student: our classes, no ImageNet download, batches padded to the crop size.
        'model.student.pretrained': None,
        'model.student.data_preprocessor.size': CROP,
        'model.student.decode_head.num_classes': num_classes,
        'model.student.auxiliary_head.num_classes': num_classes,
        # Teacher: the same heads through its config options, and its checkpoint.
        'model.teacher.checkpoint': teacher_checkpoint,
        'model.teacher.cfg_options': teacher_options,
        # Schedule: 4 iterations (resumed to 6 below), the recipe's PolyLR ending at iteration 6.
        # No validation while training: the test runs it once, after the resumed run.
        'train_cfg.max_iters': FIRST_ITERS,
        'train_cfg.val_begin': 100,
        'param_scheduler': [dict(type='PolyLR', eta_min=MIN_LR, power=POWER, begin=0,
                                 end=RESUMED_ITERS, by_epoch=False)],
        'default_hooks.checkpoint.interval': FIRST_ITERS,
        'default_hooks.logger.interval': 1,
        'randomness.seed': 0,
    }


def test_generated_seg_data_loads_in_mmseg_with_an_ignore_region(tmp_path):
    from mmseg.datasets import BaseSegDataset

    metainfo = write_seg_dataset(str(tmp_path / 'a'), num_train=6, num_val=3, size=CROP)
    write_seg_dataset(str(tmp_path / 'b'), num_train=6, num_val=3, size=CROP)
    for name in ('img_dir/train/0002.png', 'ann_dir/val/0001.png'):
        assert (tmp_path / 'a' / name).read_bytes() == (tmp_path / 'b' / name).read_bytes()
    dataset = BaseSegDataset(data_root=str(tmp_path / 'a'), metainfo=metainfo,
                             data_prefix=dict(img_path='img_dir/train',
                                              seg_map_path='ann_dir/train'),
                             img_suffix='.png', seg_map_suffix='.png', pipeline=[])
    assert len(dataset) == 6 and dataset.metainfo['classes'] == metainfo['classes']
    for index in range(len(dataset)):
        info = dataset.get_data_info(index)
        image = cv2.imread(info['img_path'])[..., ::-1]
        labels = cv2.imread(info['seg_map_path'], cv2.IMREAD_UNCHANGED)
        assert labels.shape == CROP
        assert set(np.unique(labels)) <= set(range(len(metainfo['classes']))) | {255}
        assert (labels == 255).any()  # the ignored outlines
        for label in range(1, len(metainfo['classes'])):  # each class pixel has its colour
            assert (image[labels == label] == metainfo['palette'][label]).all()
        if index == 0:  # the shape cut by the left border
            assert (labels[:, 0] != 0).any()


def tiny_seg_kd_config(tmp, num_train: int, num_val: int) -> SimpleNamespace:
    """The KD config on ``num_train``/``num_val`` generated images (4 classes) under ``tmp``,
    with an untrained teacher checkpoint of the same classes."""
    root = str(tmp / 'shapes')
    metainfo = write_seg_dataset(root, num_train=num_train, num_val=num_val, size=CROP,
                                 num_classes=4)
    cfg = Config.fromfile(KD_CONFIG)
    num_classes = len(metainfo['classes'])
    teacher_options = {'model.decode_head.num_classes': num_classes,
                       'model.auxiliary_head.num_classes': num_classes}
    teacher_checkpoint = write_teacher_checkpoint(cfg.model.teacher.config, teacher_options,
                                                  str(tmp / 'teacher.pth'))
    cfg.merge_from_dict(
        tiny_seg_overrides(cfg, root, metainfo, teacher_checkpoint, teacher_options))
    return SimpleNamespace(cfg=cfg, metainfo=metainfo, teacher_checkpoint=teacher_checkpoint)


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    """Train 4 iterations, then resume to 6, on generated shapes."""
    tmp = tmp_path_factory.mktemp('mmseg_e2e')
    built = tiny_seg_kd_config(tmp, num_train=6, num_val=3)
    cfg, metainfo, teacher_checkpoint = built.cfg, built.metainfo, built.teacher_checkpoint
    config_file = str(tmp / 'kd_pspnet_tiny.py')
    cfg.dump(config_file)  # the run's own config, which export_student reads
    work_dir = str(tmp / 'work')
    first = train(cfg, work_dir)
    first_checkpoint = latest_checkpoint(work_dir)
    resumed = train(cfg, work_dir, resume=True, **{'train_cfg.max_iters': RESUMED_ITERS})
    return SimpleNamespace(first=first, first_checkpoint=first_checkpoint, resumed=resumed,
                           config_file=config_file, work_dir=work_dir, metainfo=metainfo,
                           teacher_checkpoint=teacher_checkpoint, tmp=tmp)


def test_student_and_distillation_losses_are_logged(run):
    logged = run.first.message_hub.log_scalars
    for key in ('loss_kd', 'decode.loss_ce', 'aux.loss_ce'):
        value = logged[f'train/{key}'].current()
        assert math.isfinite(value) and value > 0, (key, value)
    assert set(logged_loss_terms(run.first)) == {'loss_kd', 'decode.loss_ce', 'aux.loss_ce'}


def test_checkpoint_holds_the_student_and_the_teacher_stays_as_loaded(run):
    assert run.first_checkpoint.endswith(f'iter_{FIRST_ITERS}.pth')
    keys = checkpoint_keys(run.first_checkpoint)
    assert any(k.startswith('student.decode_head.') for k in keys)
    assert not any(k.startswith('teacher.') for k in keys)
    # The recipe's SyncBN is plain BN in both models: the Runner reverts the student's (not
    # distributed), the distiller the teacher's (frozen, never synchronised).
    for model in (run.resumed.model.student, run.resumed.model.teacher):
        assert any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
        assert not any(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
    loaded = torch.load(run.teacher_checkpoint, weights_only=False)['state_dict']
    trained = run.resumed.model.teacher.state_dict()
    assert set(trained) == set(loaded)
    for key, value in loaded.items():  # weights and BN statistics: training left them as is
        torch.testing.assert_close(trained[key], value, rtol=0, atol=0, msg=key)


def test_resume_continues_iterations_and_learning_rate_schedule(run):
    assert run.first.iter == FIRST_ITERS
    assert run.resumed.iter == RESUMED_ITERS
    assert latest_checkpoint(run.work_dir).endswith(f'iter_{RESUMED_ITERS}.pth')
    # PolyLR with end=6 decays over steps 0..5 (mmengine's schedulers end at step end - 1):
    # lr_k = (lr - min) (1 - k/5)^0.9 + min at iteration k + 1.
    last = RESUMED_ITERS - 1
    expected = [(BASE_LR - MIN_LR) * (1 - k / last)**POWER + MIN_LR
                for k in range(RESUMED_ITERS)]
    assert logged_history(run.resumed, 'train/lr') == pytest.approx(expected, rel=1e-6)


def test_kd_loss_is_the_kl_divergence_of_the_decode_logits(run):
    distiller = run.resumed.model.eval()  # no dropout: the logits can be computed again
    batch = next(iter(run.resumed.train_dataloader))
    data = distiller.data_preprocessor(copy.deepcopy(batch), True)
    with torch.no_grad():
        losses = distiller(**data, mode='loss')
        student = distiller.student(data['inputs'], mode='tensor')
        teacher = distiller.teacher(data['inputs'], mode='tensor')
    num_classes = len(run.metainfo['classes'])
    assert student.shape == teacher.shape == (2, num_classes, CROP[0] // 8, CROP[1] // 8)
    expected = F.kl_div(F.log_softmax(student, 1), F.log_softmax(teacher, 1),
                        log_target=True, reduction='none').sum(1).mean()
    assert losses['loss_kd'].item() == pytest.approx(expected.item(), rel=1e-5)


def test_validation_reports_iou_metrics(run):
    metrics = run.resumed.val_loop.run()
    for key in ('mIoU', 'mAcc', 'aAcc'):
        assert 0.0 <= metrics[key] <= 100.0, (key, metrics[key])


def test_exported_student_loads_and_predicts_in_mmseg_api(run):
    from mmseg.apis import inference_model, init_model

    checkpoint, student_cfg = export_student(run.config_file, latest_checkpoint(run.work_dir),
                                             str(run.tmp / 'export'))
    assert 'mmdistill' not in open(student_cfg).read()
    model = init_model(student_cfg, checkpoint, device='cpu')
    assert model.dataset_meta['classes'] == run.metainfo['classes']

    distiller = run.resumed.model.eval()
    batch = next(iter(run.resumed.val_dataloader))
    with torch.no_grad():
        ours = distiller.val_step(copy.deepcopy(batch))[0]
    theirs = inference_model(model, batch['data_samples'][0].img_path)
    torch.testing.assert_close(theirs.seg_logits.data, ours.seg_logits.data)
    assert torch.equal(theirs.pred_sem_seg.data, ours.pred_sem_seg.data)
