"""The smoke test's schedule: every parameter scheduler of a config clipped to a run of one
epoch of a few iterations, each of its own type, and built by MMEngine as the Runner builds it
(``mmdistill.apis.short_schedule``)."""
import pytest
import torch
from mmengine.optim import OptimWrapper
from mmengine.registry import PARAM_SCHEDULERS, DefaultScope

from mmdistill.apis.short_schedule import clip_param_schedulers, clip_scheduler, in_iterations

# DeiT (ViTKD, USKD, NKD): a 20-epoch warm-up converted to iterations, then a cosine from epoch
# 20 to the end; the cosine made MMEngine fail (begin=20, end=1) before the clipping.
DEIT = [dict(type='LinearLR', start_factor=0.001, by_epoch=True, end=20,
             convert_to_iter_based=True),
        dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=20)]
# mmdet: a 500-iteration warm-up, steps at epochs 16 and 22 of 24.
MMDET = [dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
         dict(type='MultiStepLR', begin=0, end=24, by_epoch=True, milestones=[16, 22],
              gamma=0.1)]
# RTMPose / DWPose: the cosine of the second half, converted to iterations.
RTMPOSE = [dict(type='LinearLR', start_factor=1e-5, by_epoch=False, begin=0, end=1000),
           dict(type='CosineAnnealingLR', eta_min=2e-4, begin=210, end=420, T_max=210,
                by_epoch=True, convert_to_iter_based=True)]
# YOLOX: quadratic warm-up and cosine in iterations, a constant last phase by epoch.
YOLOX = [dict(type='mmdet.QuadraticWarmupLR', by_epoch=True, begin=0, end=5,
              convert_to_iter_based=True),
         dict(type='CosineAnnealingLR', eta_min=5e-4, begin=5, T_max=285, end=285,
              by_epoch=True, convert_to_iter_based=True),
         dict(type='ConstantLR', by_epoch=True, factor=1, begin=285, end=300)]


def test_deit_warm_up_and_cosine_fit_one_epoch_of_two_iterations():
    assert clip_param_schedulers(DEIT, 2) == [
        dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=2),
        dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=0, end=1)]


def test_iteration_warm_up_is_cut_and_milestones_after_the_run_dropped():
    assert clip_param_schedulers(MMDET, 3) == [
        dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=3),
        dict(type='MultiStepLR', begin=0, end=1, by_epoch=True, milestones=[], gamma=0.1)]


def test_a_scheduler_starting_after_the_run_takes_its_last_step():
    # Epoch 210 of the cosine is iteration 420 at 2 iterations per epoch; T_max 420 iterations
    # is cut to the one step the clipped cosine has.
    assert clip_param_schedulers(RTMPOSE, 2) == [
        dict(type='LinearLR', start_factor=1e-5, by_epoch=False, begin=0, end=2),
        dict(type='CosineAnnealingLR', eta_min=2e-4, begin=1, end=2, T_max=1, by_epoch=False)]
    assert clip_param_schedulers(YOLOX, 4) == [
        dict(type='mmdet.QuadraticWarmupLR', by_epoch=False, begin=0, end=4),
        dict(type='CosineAnnealingLR', eta_min=5e-4, begin=3, T_max=1, end=4, by_epoch=False),
        dict(type='ConstantLR', by_epoch=True, factor=1, begin=0, end=1)]


def test_iteration_based_poly_and_step_counts_inside_the_run():
    poly = dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=80000, by_epoch=False)
    assert clip_scheduler(poly, 2) == dict(poly, end=2)
    steps = dict(type='MultiStepLR', by_epoch=False, begin=1, milestones=[1, 3, 10])
    # Begins at iteration 1 of 5: 4 steps, milestones counted from its begin.
    assert clip_scheduler(steps, 5) == dict(steps, end=5, milestones=[1, 3])
    one_cycle = dict(type='OneCycleLR', eta_max=0.1, total_steps=1000, by_epoch=False)
    assert clip_scheduler(one_cycle, 2) == dict(one_cycle, total_steps=2, begin=0, end=2)
    restarts = dict(type='CosineRestartLR', periods=[3, 3, 3], restart_weights=[1, 0.5, 0.2],
                    eta_min=0.0, by_epoch=False)
    assert clip_scheduler(restarts, 5) == dict(restarts, periods=[3, 2],
                                               restart_weights=[1, 0.5], begin=0, end=5)


def test_epoch_counts_converted_as_mmengine_converts_them():
    step = dict(type='StepLR', step_size=2, gamma=0.5, begin=1, end=3, by_epoch=True,
                convert_to_iter_based=True)
    assert in_iterations(step, 4) == dict(type='StepLR', step_size=8, gamma=0.5, begin=4,
                                          end=12, by_epoch=False)
    # by epoch without conversion, or already by iteration: unchanged.
    assert in_iterations(MMDET[1], 4) == MMDET[1] and in_iterations(MMDET[0], 4) == MMDET[0]
    # From epoch 1: after the run's one epoch of 4 iterations, so on its last iteration.
    assert clip_scheduler(step, 4) == dict(type='StepLR', step_size=1, gamma=0.5, begin=3,
                                           end=4, by_epoch=False)
    # Steps every half epoch: every 2 of the 4 iterations.
    half = dict(type='StepLR', step_size=0.5, gamma=0.5, by_epoch=True,
                convert_to_iter_based=True)
    assert clip_scheduler(half, 4) == dict(type='StepLR', step_size=2, gamma=0.5,
                                           by_epoch=False, begin=0, end=4)


def test_the_form_of_the_config_is_kept_and_its_dicts_untouched():
    single = dict(type='StepLR', by_epoch=True, step_size=1, gamma=0.98)
    assert clip_param_schedulers(single, 2) == dict(single, begin=0, end=1)
    per_optimizer = dict(generator=DEIT, discriminator=single)
    assert clip_param_schedulers(per_optimizer, 2) == dict(
        generator=clip_param_schedulers(DEIT, 2), discriminator=dict(single, begin=0, end=1))
    assert clip_param_schedulers(None, 2) is None
    assert DEIT[1] == dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=20)
    assert MMDET[1]['milestones'] == [16, 22] and 'begin' not in DEIT[0]


# The learning rate (base 0.1) of each of the 3 iterations: each warm-up now ends in the run.
BUILT = dict(deit=(DEIT, [1e-4, 0.05005, 0.1]), mmdet=(MMDET, [1e-4, 0.05005, 0.1]),
             rtmpose=(RTMPOSE, [1e-6, 0.050001, 0.1]),
             yolox=(YOLOX, [0.1 / 9, 0.4 / 9, 0.1]))  # quadratic: 0.1·(k/3)²


@pytest.mark.parametrize('name', list(BUILT))
def test_mmengine_builds_and_steps_every_clipped_scheduler(name):
    """Built as the Runner builds them (epoch length 3) and stepped as ParamSchedulerHook
    steps them through one epoch of 3 iterations; each keeps its type."""
    import mmdet.engine  # noqa: F401  (registers QuadraticWarmupLR)
    schedulers, expected = BUILT[name]
    optimizer = OptimWrapper(torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1))
    with DefaultScope.overwrite_default_scope('mmdet'):
        built = [PARAM_SCHEDULERS.build(dict(s), default_args=dict(
            optimizer=optimizer, epoch_length=3)) for s in clip_param_schedulers(schedulers, 3)]
    assert [type(s).__name__ for s in built] == [
        s['type'].split('.')[-1] for s in schedulers]
    assert all(0 <= s.begin < s.end <= (1 if s.by_epoch else 3) for s in built)
    lrs = []
    for _ in range(3):
        lrs.append(optimizer.param_groups[0]['lr'])
        optimizer.step()
        for scheduler in (s for s in built if not s.by_epoch):
            scheduler.step()
    for scheduler in (s for s in built if s.by_epoch):
        scheduler.step()
    assert lrs == pytest.approx(expected, rel=1e-5)
