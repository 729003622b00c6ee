"""mmpose end to end: RTMPose KD config → Runner train → save → resume → CocoMetric → export.

The config is trained as written (its EMA hook, its stage-2 pipeline switch, its checkpoint
hook saving the best ``coco/AP``), on synthetic stick figures, with the input size of student
and teacher shrunk from 192×256 to 64×96 (codec, head and pipelines together) for speed.
"""
import copy
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import load_checkpoint

from helpers.rtmpose import loader, small_head, small_pipeline
from helpers.runner import (latest_checkpoint, logged_loss_terms,
                                      predict_per_image, train, write_teacher_checkpoint)
from mmdistill.apis import export_student
from mmdistill.engine import safe_checkpoint_loading
from mmdistill.testing import write_coco_keypoints

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
KD_CONFIG = osp.join(ROOT, 'configs', 'kd',
                     'kd_rtmpose-s_from_rtmpose-m_8xb256-420e_coco-256x192.py')


@pytest.fixture(scope='module')
def pose_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('stick_figures'))
    write_coco_keypoints(root, num_images=12, num_val=4, size=(128, 96))
    return root


def test_kd_train_resume_evaluate_export(pose_root, tmp_path):
    from mmpose.apis import inference_topdown, init_model

    cfg = Config.fromfile(KD_CONFIG)
    teacher_options = small_head('model.')
    teacher_ckpt = write_teacher_checkpoint(cfg.model.teacher.config, teacher_options,
                                            str(tmp_path / 'teacher.pth'))

    hooks = copy.deepcopy(cfg.custom_hooks)
    for hook in hooks:
        if hook['type'] == 'mmdet.PipelineSwitchHook':  # stage 2 from the second epoch
            hook.update(switch_epoch=1, switch_pipeline=small_pipeline(hook['switch_pipeline']))
    work_dir = str(tmp_path / 'work')
    options = {
        **small_head('model.student.'),
        'model.teacher.checkpoint': teacher_ckpt,
        'model.teacher.cfg_options': teacher_options,
        'train_dataloader': loader(cfg.train_dataloader, pose_root, 'train'),
        'val_dataloader': loader(cfg.val_dataloader, pose_root, 'val'),
        'test_dataloader': loader(cfg.test_dataloader, pose_root, 'val'),
        'val_evaluator.ann_file': osp.join(pose_root, 'annotations', 'val.json'),
        'custom_hooks': hooks,
        'train_cfg.max_epochs': 1,
        # No validation while training: each one also saves a best checkpoint, and every
        # checkpoint formats this long config with yapf (seconds each); validated below.
        'train_cfg.val_interval': 10,
        'default_hooks.checkpoint.interval': 1,
        'default_hooks.logger.interval': 1,
    }
    first = train(cfg, work_dir, **options)
    assert first.iter == len(first.train_dataloader) == 2
    logged = first.message_hub.log_scalars
    for key in ('train/loss_kd_x', 'train/loss_kd_y', 'train/loss_kpt'):
        assert np.isfinite(logged[key].current()) and logged[key].current() > 0, key
    assert set(logged_loss_terms(first)) == {'loss_kd_x', 'loss_kd_y', 'loss_kpt'}
    saved = latest_checkpoint(work_dir)
    assert saved.endswith('epoch_1.pth')
    checkpoint = torch.load(saved, map_location='cpu', weights_only=False)
    for part in ('state_dict', 'ema_state_dict'):  # the EMA hook saves both
        keys = list(checkpoint[part])
        assert any('student.' in k for k in keys)
        assert not any('teacher.' in k for k in keys), part

    # Resume: the second epoch runs stage 2's pipeline, then the student is evaluated.
    resumed = train(cfg, work_dir, resume=True, **{**options, 'train_cfg.max_epochs': 2})
    assert resumed.iter == 4 and resumed.epoch == 2
    bbox_transform = next(t for t in resumed.train_dataloader.dataset.pipeline.transforms
                          if type(t).__name__ == 'RandomBBoxTransform')
    assert bbox_transform.shift_factor == 0.0  # stage 2's; stage 1 shifts boxes
    # The recipe's blur / coarse-dropout step ran in both stages (albumentations installed).
    assert any(type(t).__name__ == 'Albumentation'
               for t in resumed.train_dataloader.dataset.pipeline.transforms)
    metrics = resumed.val_loop.run()
    assert 0.0 <= metrics['coco/AP'] <= 1.0

    # Export with the config the run dumped (overrides included); mmpose's own API loads the
    # student and predicts, from the image and a box, what the distiller's student predicts.
    run_config = osp.join(work_dir, osp.basename(KD_CONFIG))
    ckpt, student_cfg = export_student(run_config, latest_checkpoint(work_dir),
                                       str(tmp_path / 'export'))
    model = init_model(student_cfg, ckpt, device='cpu')
    distiller = resumed.model.eval()
    with safe_checkpoint_loading('load_from'):  # EMA weights
        load_checkpoint(distiller, latest_checkpoint(work_dir), map_location='cpu')
    batch = next(iter(resumed.val_dataloader))
    ours = predict_per_image(distiller, batch)
    for sample in ours:
        theirs = inference_topdown(model, sample.img_path, sample.gt_instances.bboxes)
        assert len(theirs) == 1
        torch.testing.assert_close(theirs[0].pred_instances.keypoints,
                                   sample.pred_instances.keypoints)
        torch.testing.assert_close(theirs[0].pred_instances.keypoint_scores,
                                   sample.pred_instances.keypoint_scores)
    assert 'mmdistill' not in open(student_cfg).read()
