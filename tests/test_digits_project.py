"""projects/digits/run.py's parts: the few-shot subset, schedules stretched to any length, and
the paired per-seed differences of its table."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

from conftest import project_script

digits_run = project_script('digits')


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


def test_table_pairs_each_method_with_the_student_alone_at_the_same_seed():
    def runs(model, top1s, seeds=(0, 1, 2)):
        return [dict(model=model, seed=s, top1=t, seconds=1.0, ms_per_iter=2.0)
                for s, t in zip(seeds, top1s)]
    by_model = {'student': runs('student', [80., 70., 90.]),
                'kd': runs('kd', [82., 71., 93., 99.], seeds=(0, 1, 2, 3)),
                'deit_student': runs('deit_student', [50., 60.]),
                'vitkd': runs('vitkd', [49., 64.])}
    cells = [c.strip() for c in
             digits_run.summary_row('kd', by_model['kd'], by_model).split('|')[1:-1]]
    # top-1 std: sqrt((4.25² + 15.25² + 6.75² + 12.75²) / 3) = 12.37; seed 3 has no student
    # run: differences +2, +1, +3 -> mean 2, sample std 1, all up
    assert cells[:4] == ['kd', '4', '86.25 ± 12.37', '+2.00 ± 1.00 (3/3 up)']
    cells = [c.strip() for c in
             digits_run.summary_row('vitkd', by_model['vitkd'], by_model).split('|')[1:-1]]
    assert cells[3] == '+1.50 ± 3.54 (1/2 up)'  # paired with the ViT student: -1, +4
    cells = [c.strip() for c in
             digits_run.summary_row('student', by_model['student'], by_model).split('|')[1:-1]]
    assert cells[3] == '–'
