"""What a new user gets wrong in a distillation config gets an error that says what to write:
a relative teacher config, teacher.cfg_options from the command line, a forgotten _delete_."""
import argparse
import os
import os.path as osp

import pytest
from mmengine.config import Config, DictAction
from mmengine.registry import MODELS, DefaultScope

import mmdistill  # noqa: F401
from conftest import tiny_classifier, write_config
from mmdistill.distillers import Distiller

KD = dict(kd=dict(type='HintonKDLoss', inputs=dict(student_logits='student.head.fc',
                                                    teacher_logits='teacher.head.fc')))


def distillation_config(folder, teacher: dict, delete: bool = True) -> str:
    """A distillation config inheriting a student config file in ``folder``."""
    write_config(osp.join(folder, 'student.py'), default_scope='mmpretrain',
                 model=tiny_classifier(4))
    model = dict(type='mmdistill.Distiller', student='{{_base_.model}}', teacher=teacher,
                 distill_losses=KD)
    if delete:
        model = dict(_delete_=True, **model)
    text = repr(model).replace("'{{_base_.model}}'", '{{_base_.model}}')
    path = osp.join(folder, 'distill.py')
    with open(path, 'w') as f:
        f.write(f"_base_ = './student.py'\nmodel = {text}\n")
    return path


def build(cfg: Config) -> Distiller:
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(cfg.model)


def test_relative_teacher_config_error_names_the_folder_and_file_dirname(
        teacher_files, tmp_path, monkeypatch):
    config, checkpoint = teacher_files
    os.makedirs(tmp_path / 'cfgs')
    os.replace(config, tmp_path / 'cfgs' / 'teacher.py')
    monkeypatch.chdir(tmp_path)
    cfg = Config.fromfile(distillation_config(
        str(tmp_path / 'cfgs'), dict(config='teacher.py', checkpoint=checkpoint)))
    with pytest.raises(FileNotFoundError, match=(
            f"'teacher.py' not found in the working directory {tmp_path}.*"
            "write '{{ fileDirname }}/teacher.py'")):
        build(cfg)


def test_file_dirname_names_a_teacher_beside_the_config_from_any_folder(
        teacher_files, tmp_path, monkeypatch):
    config, checkpoint = teacher_files
    os.makedirs(tmp_path / 'cfgs')
    os.replace(config, tmp_path / 'cfgs' / 'teacher.py')
    path = distillation_config(str(tmp_path / 'cfgs'),
                               dict(config='{{ fileDirname }}/teacher.py', checkpoint=checkpoint))
    monkeypatch.chdir(tmp_path / 'cfgs')  # not where the run starts from
    cfg = Config.fromfile(osp.relpath(path, tmp_path / 'cfgs'))
    monkeypatch.chdir(os.sep)
    assert cfg.model.teacher.config == str(tmp_path / 'cfgs' / 'teacher.py')
    assert build(cfg).teacher.head.fc.out_features == 5


def test_teacher_cfg_options_from_the_command_line(teacher_files, tmp_path):
    config, checkpoint = teacher_files
    cfg = Config.fromfile(distillation_config(
        str(tmp_path), dict(config=config, checkpoint=checkpoint)))

    def with_options(*options):
        args = argparse.Namespace()  # what tools/train.py's --cfg-options parses
        DictAction(option_strings=['--cfg-options'], dest='cfg_options')(None, args, options)
        merged = cfg.copy()
        merged.merge_from_dict(args.cfg_options)
        return merged

    # The syntax the error recommends: one key per override below cfg_options.
    nested = with_options('model.teacher.cfg_options.model.head.loss.loss_weight=0.5')
    assert build(nested).teacher.head.loss_module.loss_weight == 0.5
    # A dict literal arrives as a string: parsed.
    literal = with_options("model.teacher.cfg_options={'model.head.loss.loss_weight':0.25}")
    assert isinstance(literal.model.teacher.cfg_options, str)
    assert build(literal).teacher.head.loss_module.loss_weight == 0.25
    # Two keys in one literal: DictAction splits it at the comma into a list of fragments.
    mangled = with_options("model.teacher.cfg_options={'model.a':1,'model.b':2}")
    with pytest.raises(ValueError, match=(
            'teacher.cfg_options must be a dict of config overrides, got the list.*'
            '--cfg-options model.teacher.cfg_options.model.head.num_classes=10')):
        build(mangled)


def test_forgotten_delete_says_to_add_it(teacher_files, tmp_path):
    config, checkpoint = teacher_files
    cfg = Config.fromfile(distillation_config(
        str(tmp_path), dict(config=config, checkpoint=checkpoint), delete=False))
    assert 'backbone' in cfg.model  # merged in from the base
    with pytest.raises(TypeError, match=(
            "unknown argument\\(s\\) \\['backbone', 'head', 'neck'\\]. Keys of the base "
            "config's model .*add _delete_=True")):
        build(cfg)
    with pytest.raises(TypeError, match="'distill_loss' \\(did you mean 'distill_losses'\\?\\)"):
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            Distiller(student=tiny_classifier(4), distill_loss={})
