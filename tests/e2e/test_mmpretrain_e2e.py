"""mmpretrain end to end: KD config → Runner train → save → resume → Accuracy → export."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from benchmarks.digits.run import write_digits
from helpers.runner import checkpoint_keys, latest_checkpoint, logged_loss_terms, train
from mmdistill.apis import export_student

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DIGITS = osp.join(ROOT, 'benchmarks', 'digits')
KD_CONFIG = osp.join(DIGITS, 'configs', 'kd_resnet18_w4_from_resnet18.py')


@pytest.fixture(scope='module')
def digits_root(tmp_path_factory):
    """A small slice of scikit-learn's digits in mmpretrain's CustomDataset layout."""
    root = str(tmp_path_factory.mktemp('digits'))
    write_digits(root, limit=120)
    return root


def test_kd_train_resume_evaluate_export(digits_root, tmp_path):
    from mmpretrain.apis import init_model
    from mmpretrain.registry import MODELS

    teacher_cfg = Config.fromfile(osp.join(DIGITS, 'configs', 'teacher_resnet18.py'))
    with DefaultScope.overwrite_default_scope('mmpretrain'):  # other tests leave theirs
        teacher = MODELS.build(teacher_cfg.model)
    teacher_ckpt = str(tmp_path / 'teacher.pth')
    torch.save({'state_dict': teacher.state_dict()}, teacher_ckpt)

    cfg = Config.fromfile(KD_CONFIG)
    work_dir = str(tmp_path / 'work')
    options = {
        'model.teacher.checkpoint': teacher_ckpt,
        'train_dataloader.dataset.data_root': digits_root,
        'val_dataloader.dataset.data_root': digits_root,
        'train_dataloader.batch_size': 16,
        'train_cfg.max_epochs': 1,
        'train_cfg.val_interval': 1,
        'default_hooks.checkpoint.interval': 1,
        'default_hooks.logger.interval': 1,
    }
    first = train(cfg, work_dir, **options)
    iters_per_epoch = len(first.train_dataloader)
    assert first.iter == iters_per_epoch
    saved = latest_checkpoint(work_dir)
    assert saved.endswith('epoch_1.pth')
    keys = checkpoint_keys(saved)
    assert any(k.startswith('student.') for k in keys)
    assert not any(k.startswith('teacher.') for k in keys)
    terms = logged_loss_terms(first)  # the logged total includes the distillation loss
    assert set(terms) == {'loss_student', 'loss_kd'} and terms['loss_kd'] > 0

    # Resume: epoch 2 continues from the saved optimizer state and iteration count.
    resumed = train(cfg, work_dir, resume=True, **{**options, 'train_cfg.max_epochs': 2})
    assert resumed.iter == 2 * iters_per_epoch and resumed.epoch == 2
    metrics = resumed.val_loop.run()
    assert 0.0 <= metrics['accuracy/top1'] <= 100.0

    # Export: the student loads with mmpretrain's own API and predicts what the distiller does.
    ckpt, student_cfg = export_student(KD_CONFIG, latest_checkpoint(work_dir),
                                       str(tmp_path / 'export'))
    model = init_model(student_cfg, ckpt, device='cpu')
    distiller = resumed.model.eval()
    batch = next(iter(resumed.val_dataloader))
    data = distiller.data_preprocessor(batch, False)
    with torch.no_grad():
        ours = distiller(data['inputs'], data['data_samples'], mode='tensor')
        theirs = model(model.data_preprocessor(batch, False)['inputs'], mode='tensor')
    torch.testing.assert_close(theirs, ours)
    assert 'mmdistill' not in open(student_cfg).read()
