"""Exporting a distiller checkpoint: exactly the student's weights come out, and the exported
config carries the data preprocessor the student trained with (real mmpretrain models)."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import load_checkpoint

from conftest import tiny_classifier, write_config
from mmdistill.apis import export_student
from mmdistill.apis.export import student_config, student_state_dict
from mmdistill.distillers import Distiller

PREPROCESSOR = dict(type='ClsDataPreprocessor', mean=[123.675, 116.28, 103.53],
                    std=[58.395, 57.12, 57.375], to_rgb=True)
STUDENT_OWN = dict(type='ClsDataPreprocessor', mean=[127.5] * 3, std=[64.0] * 3, to_rgb=False)
FEA = dict(type='FeatureMSELoss', student_channels=8, teacher_channels=16,
           inputs=dict(student_feature='student.backbone.layer2',
                       teacher_feature='teacher.backbone.layer2'))


def distillation_config(teacher_files, student: dict) -> dict:
    """A distillation config's entries: the Distiller with a top-level data_preprocessor, and
    mmdistill's import and hook beside the student codebase's."""
    config, checkpoint = teacher_files
    return dict(
        default_scope='mmpretrain',
        custom_imports=dict(imports=['mmdistill', 'mmpretrain.models'],
                            allow_failed_imports=False),
        custom_hooks=[dict(type='mmdistill.DistillLossWeightHook', policy='constant', value=0.5),
                      dict(type='EMAHook')],
        runner_type='mmdistill.SafeRunner',
        model=dict(type='mmdistill.Distiller', student=student,
                   teacher=dict(config=config, checkpoint=checkpoint),
                   data_preprocessor=PREPROCESSOR, distill_losses=dict(fea=FEA)))


def test_only_the_student_keys_are_exported(teacher_files):
    config, checkpoint = teacher_files
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        distiller = Distiller(student=tiny_classifier(4), data_preprocessor=PREPROCESSOR,
                              teacher=dict(config=config, checkpoint=checkpoint),
                              save_teacher=True, distill_losses=dict(fea=FEA))
    state = distiller.state_dict()
    student = distiller.student.state_dict()
    assert len([k for k in state if k.startswith('teacher.')]) == len(distiller.teacher
                                                                       .state_dict())
    assert {'distill_losses.fea.align.weight', 'distill_losses.fea.align.bias'} <= set(state)
    # A checkpoint of named teachers, and a data preprocessor with saved state of its own.
    state.update({f'teachers.a.{k}': v for k, v in distiller.teacher.state_dict().items()})
    state['data_preprocessor.mean'] = torch.tensor(PREPROCESSOR['mean']).view(3, 1, 1)
    state['data_preprocessor.std'] = torch.tensor(PREPROCESSOR['std']).view(3, 1, 1)
    exported = student_state_dict({'state_dict': state, 'meta': {}})
    assert sorted(exported) == sorted(student)
    for key, value in student.items():
        assert torch.equal(exported[key], value), key
    # A bare state dict (the distiller's state_dict() saved as is) exports the same.
    assert sorted(student_state_dict(state)) == sorted(student)
    with pytest.raises(ValueError, match="has no 'student.\\*' weights"):
        student_state_dict({'state_dict': {k: v for k, v in state.items()
                                           if not k.startswith('student.')}})


def test_exported_config_carries_the_distillers_data_preprocessor(teacher_files):
    cfg = Config(distillation_config(teacher_files, tiny_classifier(4)))
    out = student_config(cfg)
    assert out.model.to_dict() == dict(tiny_classifier(4), data_preprocessor=PREPROCESSOR)
    assert out.custom_imports == dict(imports=['mmpretrain.models'],
                                      allow_failed_imports=False)
    assert [hook['type'] for hook in out.custom_hooks] == ['EMAHook']
    assert 'runner_type' not in out and cfg.runner_type == 'mmdistill.SafeRunner'
    only_mmdistill = Config(dict(distillation_config(teacher_files, tiny_classifier(4)),
                                 custom_imports=dict(imports=['mmdistill'])))
    assert 'custom_imports' not in student_config(only_mmdistill)
    assert cfg.model.student.get('data_preprocessor') is None  # the input is left as it was
    # A student with a data preprocessor of its own keeps its own.
    own = student_config(Config(distillation_config(
        teacher_files, dict(tiny_classifier(4), data_preprocessor=STUDENT_OWN))))
    assert own.model.to_dict() == dict(tiny_classifier(4), data_preprocessor=STUDENT_OWN)


def test_exported_student_runs_as_it_did_in_the_distiller(teacher_files, tmp_path):
    """export_student end to end: the exported checkpoint loads strictly into the model of the
    exported config, whose preprocessor is the distiller's: same logits from the same images."""
    entries = distillation_config(teacher_files, tiny_classifier(4))
    config = write_config(osp.join(tmp_path, 'kd.py'), **entries)
    torch.manual_seed(3)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        distiller = Distiller(**{k: v for k, v in entries['model'].items() if k != 'type'},
                              save_teacher=True).eval()
    checkpoint = osp.join(tmp_path, 'iter_1.pth')
    torch.save({'state_dict': distiller.state_dict(), 'meta': dict(epoch=1)}, checkpoint)
    ckpt_path, cfg_path = export_student(config, checkpoint, str(tmp_path / 'out'))

    exported_cfg = Config.fromfile(cfg_path)
    assert exported_cfg.model.data_preprocessor.to_dict() == PREPROCESSOR
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(exported_cfg.model).eval()
    load_checkpoint(model, ckpt_path, map_location='cpu', strict=True)
    torch.manual_seed(0)
    images = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    with torch.no_grad():
        mine = model(model.data_preprocessor(dict(inputs=images.clone()))['inputs'],
                     mode='tensor')
        theirs = distiller(distiller.data_preprocessor(dict(inputs=images.clone()))['inputs'],
                           mode='tensor')
    assert torch.equal(mine, theirs)
