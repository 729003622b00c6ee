"""DistillLossWeightHook in a real (tiny) mmengine Runner: which losses it scales, by epoch or
by iteration, and the errors it raises before training starts."""
import pytest
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from conftest import classification_batch, tiny_classifier
from mmdistill.distillers import Distiller

LOSSES = dict(
    kd=dict(type='HintonKDLoss', tau=2.0,
            inputs=dict(student_logits='student.head.fc', teacher_logits='teacher.head.fc')),
    fea=dict(type='FeatureMSELoss', student_channels=16, teacher_channels=32,
             inputs=dict(student_feature='student.backbone.layer3',
                         teacher_feature='teacher.backbone.layer3')))
SAMPLES = 8  # batch 2: 4 iterations an epoch


def make_runner(teacher_files, tmp_path, hook, train_cfg=None):
    config, checkpoint = teacher_files
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        distiller = Distiller(student=tiny_classifier(4),
                              teacher=dict(config=config, checkpoint=checkpoint),
                              distill_losses=LOSSES)
    inputs, samples = classification_batch(n=SAMPLES)
    dataset = [dict(inputs=image, data_samples=sample) for image, sample in zip(inputs, samples)]
    return Runner(
        model=distiller, work_dir=str(tmp_path),
        train_dataloader=dict(dataset=dataset, batch_size=2, collate_fn=dict(type='pseudo_collate'),
                              sampler=dict(type='DefaultSampler', shuffle=False)),
        train_cfg=train_cfg or dict(by_epoch=True, max_epochs=3),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        default_hooks=dict(checkpoint=None),
        custom_hooks=[dict(type='mmdistill.DistillLossWeightHook', **hook)],
        default_scope='mmpretrain',
        experiment_name=tmp_path.name)  # runners made in the same second share a message hub


def history(runner, key):
    return runner.message_hub.get_scalar(key).data[0].tolist()


def test_stop_by_epoch_scales_only_the_named_loss(teacher_files, tmp_path):
    runner = make_runner(teacher_files, tmp_path,
                         dict(policy='stop', by='epoch', at=1, losses=['fea']))
    runner.train()
    assert history(runner, 'train/fea_scale') == [1.0] * 4 + [0.0] * 8
    assert 'train/kd_scale' not in runner.message_hub.log_scalars
    assert runner.model.loss_scales == {'kd': 1.0, 'fea': 0.0}
    assert len(history(runner, 'train/loss_kd')) == 12  # every step
    # Not computed after the stop: an exact 0 (that keeps its align conv in the DDP graph).
    fea = history(runner, 'train/loss_fea')
    assert len(fea) == 12 and all(v > 0 for v in fea[:4]) and fea[4:] == [0.0] * 8


def test_linear_by_iteration_without_names_scales_every_loss(teacher_files, tmp_path):
    runner = make_runner(teacher_files, tmp_path, dict(policy='linear', by='iter'),
                         train_cfg=dict(by_epoch=False, max_iters=5))
    runner.train()
    expected = [1 - i / 5 for i in range(5)]
    for name in ('kd', 'fea'):
        assert history(runner, f'train/{name}_scale') == pytest.approx(expected), name
    assert runner.model.loss_scales == pytest.approx({'kd': 0.2, 'fea': 0.2})


def test_schedule_config_by_iteration(teacher_files, tmp_path):
    # schedule=dict(type=...) instead of policy=, built while mmpretrain is the default scope.
    runner = make_runner(teacher_files, tmp_path,
                         dict(schedule=dict(type='Step', milestones=[2, 4], gamma=0.5),
                              by='iter', losses=['kd']),
                         train_cfg=dict(by_epoch=False, max_iters=5))
    runner.train()
    assert history(runner, 'train/kd_scale') == [1.0, 1.0, 0.5, 0.5, 0.25]
    assert runner.model.loss_scales == {'kd': 0.25, 'fea': 1.0}


def test_unknown_loss_name_fails_before_the_first_step(teacher_files, tmp_path):
    runner = make_runner(teacher_files, tmp_path, dict(policy='stop', at=1, losses=['fgd']))
    with pytest.raises(KeyError, match=r"names losses \['fgd'\]; the distiller has "
                                        r"\['kd', 'fea'\]"):
        runner.train()
    assert runner.iter == 0


def test_by_epoch_needs_an_epoch_based_loop(teacher_files, tmp_path):
    runner = make_runner(teacher_files, tmp_path, dict(policy='stop', by='epoch', at=1),
                         train_cfg=dict(by_epoch=False, max_iters=3))
    with pytest.raises(ValueError, match="by='epoch' needs an epoch-based train loop"):
        runner.train()
    assert runner.iter == 0
