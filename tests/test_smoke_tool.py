"""tools/smoke_test.py trains a user's config as written, on generated data, for a few
iterations, validates with the config's own metric and exports the student."""
import math
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch

from mmengine.config import Config

from mmdistill.apis.smoke import go_offline, model_num_classes, smoke_test

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DIGITS_KD = osp.join(ROOT, 'benchmarks', 'digits', 'configs', 'kd_resnet18_w4_from_resnet18.py')
HEATMAP_KD = osp.join(ROOT, 'configs', 'kd',
                      'fpd_hrnet-w32_from_hrnet-w48_8xb64-210e_coco-256x192.py')


def test_command_line_runs_a_classification_distillation_config(tmp_path):
    work_dir = tmp_path / 'smoke'
    done = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'smoke_test.py'), DIGITS_KD, '--offline',
         '--iters', '3', '--image-size', '32', '32', '--work-dir', str(work_dir)],
        cwd=str(tmp_path), capture_output=True, text=True, timeout=600,
        env=dict(os.environ, PYTHONPATH=ROOT))  # this tree's mmdistill, not an installed one
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    summary = done.stdout[done.stdout.index('smoke test of'):]
    loss_kd = float(re.search(r'loss_kd: (\S+)', summary).group(1))
    assert math.isfinite(loss_kd) and loss_kd > 0
    assert 0.0 <= float(re.search(r'val accuracy/top1: (\S+)', summary).group(1)) <= 100.0
    assert 'teacher unchanged by training: True' in summary and summary.rstrip().endswith('OK')
    # One epoch of 3 generated batches: the checkpoint is epoch 1 at iteration 3.
    checkpoint = torch.load(work_dir / 'epoch_1.pth', map_location='cpu', weights_only=False)
    assert checkpoint['meta']['iter'] == 3
    assert len(list((work_dir / 'data' / 'train').glob('*/*.png'))) == 3 * 2
    student_cfg = (work_dir / 'export' / 'student_config.py').read_text()
    assert 'mmdistill' not in student_cfg and (work_dir / 'export' / 'student.pth').is_file()


def test_heatmap_pose_config_distils_on_generated_stick_figures(tmp_path):
    result = smoke_test(HEATMAP_KD, str(tmp_path), iters=2, offline=True)
    for key in ('loss_kpt', 'loss_heatmap'):
        assert math.isfinite(result.losses[key]) and result.losses[key] > 0, key
    assert 0.0 <= result.metrics['coco/AP'] <= 1.0
    assert result.teacher_unchanged is True
    assert result.runner.iter == 2 and result.checkpoint.endswith('epoch_1.pth')
    # The distillation term is the mean squared heatmap difference, weighted 0.5.
    distiller = result.runner.model.eval()
    batch = next(iter(result.runner.train_dataloader))
    data = distiller.data_preprocessor(batch, False)
    with torch.no_grad():
        losses = distiller(**data, mode='loss')
        student = distiller.student(data['inputs'], data['data_samples'], mode='tensor')
        teacher = distiller.teacher(data['inputs'], data['data_samples'], mode='tensor')
    assert student.shape[1:] == teacher.shape[1:] == (17, 64, 48)
    assert losses['loss_heatmap'].item() == pytest.approx(
        0.5 * ((student - teacher)**2).mean().item(), rel=1e-5)


def test_offline_reads_no_weights_and_classes_come_from_the_student():
    pretrained = dict(type='Pretrained', checkpoint='https://example.com/backbone.pth')
    plain = Config(dict(model=dict(type='ImageClassifier', backbone=dict(init_cfg=pretrained),
                                   head=dict(num_classes=10)),
                        load_from='https://example.com/dense.pth'))
    go_offline(plain, is_distiller=False)
    assert plain.load_from is None and plain.model.backbone.init_cfg is None
    assert model_num_classes(plain.model) == 10
    distiller = dict(student=dict(roi_head=dict(bbox_head=[dict(num_classes=80)] * 3),
                                  rpn_head=dict(in_channels=256)),
                     distill_losses=dict(kd=dict(num_classes=1000)))
    assert model_num_classes(distiller) == 80  # the student's, not a loss's
    assert model_num_classes(dict(backbone=dict(depth=18))) is None


def test_offline_drops_every_weight_a_distillation_config_would_read(tmp_path):
    """Student: an mmseg-style ``pretrained=`` string and a ``Pretrained`` init_cfg inside a
    list; two teachers whose own configs load pretrained backbones, one already overriding
    its config. Offline, every one of them is dropped and nothing else is touched."""
    pretrained = dict(type='Pretrained', checkpoint='https://example.com/backbone.pth')
    teacher = tmp_path / 'teacher.py'
    teacher.write_text(
        f"model = dict(type='ImageClassifier', backbone=dict(depth=50, init_cfg={pretrained!r}),"
        " neck=dict(init_cfg=[dict(type='Constant', val=1), "
        f"{pretrained!r}]), head=dict(num_classes=10))\n")
    student = dict(type='EncoderDecoder', pretrained='open-mmlab://resnet18_v1c',
                   backbone=dict(init_cfg=[dict(type='Kaiming'), pretrained]),
                   decode_head=dict(num_classes=10, init_cfg=dict(type='Normal')))
    teachers = dict(big=dict(config=str(teacher), checkpoint='https://example.com/big.pth'),
                    mid=dict(config=str(teacher), checkpoint='mid.pth',
                             cfg_options={'model.head.num_classes': 10}))
    cfg = Config(dict(model=dict(type='mmdistill.Distiller', student=student, teachers=teachers),
                      load_from='https://example.com/start.pth'))
    go_offline(cfg, is_distiller=True)
    assert cfg.load_from is None
    assert cfg.model.student.pretrained is None
    assert cfg.model.student.backbone.init_cfg is None
    assert cfg.model.student.decode_head.init_cfg == dict(type='Normal')  # not a weight file
    for name in ('big', 'mid'):
        options = cfg.model.teachers[name].cfg_options
        assert cfg.model.teachers[name].checkpoint is None
        assert options['model.backbone.init_cfg'] is None
        assert options['model.neck.init_cfg'] is None
        assert set(options) >= {'model.backbone.init_cfg', 'model.neck.init_cfg'}
    assert cfg.model.teachers.mid.cfg_options['model.head.num_classes'] == 10  # kept
    assert 'model.head.num_classes' not in cfg.model.teachers.big.cfg_options
