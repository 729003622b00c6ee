"""benchmarks/digits/run.py's parts: the few-shot subset, schedules stretched to any length, and
the pairing of its table's rows with their students alone."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

from benchmarks.digits import run as digits_run


def files_by_class(folder):
    return {osp.basename(c): sorted(osp.basename(f) for f in glob.glob(osp.join(c, '*.png')))
            for c in sorted(glob.glob(osp.join(folder, '*')))}


def test_few_shot_subset_is_per_class_fixed_and_from_the_training_half(tmp_path):
    root = str(tmp_path / 'digits')
    digits_run.write_digits(root, limit=100)  # 50 training images, 5 per class
    digits_run.write_subset(root, 'train_2', per_class=2)
    digits_run.write_subset(root, 'again_2', per_class=2)
    subset, train = files_by_class(osp.join(root, 'train_2')), files_by_class(
        osp.join(root, 'train'))
    assert sorted(subset) == [str(c) for c in range(10)]
    assert all(len(files) == 2 and set(files) <= set(train[c]) for c, files in subset.items())
    assert files_by_class(osp.join(root, 'again_2')) == subset  # the same for every run
    with pytest.raises(ValueError, match='fewer than the 6 per class'):
        digits_run.write_subset(root, 'train_6', per_class=6)


def test_schedules_stretch_to_the_epochs_asked_for():
    resnet = Config.fromfile(osp.join(digits_run.CONFIGS, 'student_resnet18_w4.py'))
    assert digits_run.schedule_overrides(resnet, 100) == {'param_scheduler.T_max': 100}
    vit = Config.fromfile(osp.join(digits_run.CONFIGS, 'student_deit_p4.py'))
    warmup, cosine = digits_run.schedule_overrides(vit, 100)['param_scheduler']
    assert (warmup['begin'], warmup['end']) == (0, 5)  # the warm-up is kept as it is
    assert (cosine['begin'], cosine['T_max'], cosine['end']) == (5, 95, 100)
    with pytest.raises(ValueError, match='cosine decay that begins before the end'):
        digits_run.schedule_overrides(vit, 4)


def test_tables_pair_each_method_with_its_own_student_alone_at_the_same_seed():
    from benchmarks.evidence import paired_differences
    assert [digits_run.table_of('few', m) for m in ('student', 'kd', 'deit_student', 'vitkd')] \
        == ['few', 'few', 'few_vit', 'few_vit']
    resnet, vit = digits_run.new_table('few'), digits_run.new_table('few_vit')
    for results, model, values in ((resnet, 'student', [80., 70., 90.]),
                                   (resnet, 'kd', [82., 71., 93., 99.]),
                                   (resnet, 'tf_nkd', [80., 69., 91.]),
                                   (vit, 'deit_student', [50., 60.]), (vit, 'vitkd', [49., 64.])):
        for seed, value in enumerate(values):
            results.add(model, seed, value)
    paired = paired_differences(resnet)
    # seed 3 has no student run: differences +2, +1, +3
    assert (paired['kd'].differences, paired['tf_nkd'].differences) == ([2., 1., 3.],
                                                                         [0., -1., 1.])
    assert 'student' not in paired
    assert paired_differences(vit)['vitkd'].differences == [-1., 4.]
    assert digits_run.new_table('teachers').compared == []


def test_two_teachers_get_the_seed_0_and_seed_1_checkpoints_and_are_paired_with_kd():
    # kd_two_teachers needs the seed-1 teacher even when only seed 0 is asked for; the ViT
    # methods need only theirs; the teacher-free ones none.
    assert digits_run.teachers_to_train(['kd_two_teachers', 'vitkd', 'uskd'], [0]) == {
        'deit': [0], 'resnet': [0, 1]}
    assert digits_run.teachers_to_train(['student', 'tf_nkd'], [0, 2]) == {}
    checkpoints = {('resnet', 0): 'r0.pth', ('resnet', 1): 'r1.pth', ('deit', 0): 'v0.pth'}
    overrides = digits_run.teacher_checkpoint_overrides('kd_two_teachers', checkpoints)
    assert overrides == {'model.teachers.a.checkpoint': 'r0.pth',
                         'model.teachers.b.checkpoint': 'r1.pth'}
    cfg = Config.fromfile(osp.join(digits_run.CONFIGS, digits_run.METHODS['kd_two_teachers']))
    cfg.merge_from_dict(overrides)  # the keys name the config's two teachers, nothing new
    assert sorted(cfg.model.teachers) == ['a', 'b']
    assert [cfg.model.teachers[t].checkpoint for t in 'ab'] == ['r0.pth', 'r1.pth']
    assert digits_run.teacher_checkpoint_overrides('vitkd', checkpoints) == {
        'model.teacher.checkpoint': 'v0.pth'}
    assert digits_run.teacher_checkpoint_overrides('uskd', checkpoints) == {}
    assert digits_run.new_table('few').also_paired == [['kd_two_teachers', 'kd']]
    assert digits_run.new_table('few_vit').also_paired == []
