"""Shared fixtures: tiny real mmpretrain classifiers and their config files."""
import importlib.util
import os.path as osp

import pytest
import torch
from mmengine.registry import DefaultScope

import mmdistill  # (registers mmdistill's modules)


def tiny_classifier(width: int, num_classes: int = 5) -> dict:
    """A real mmpretrain ResNet-18 (CIFAR stem) at a tiny width."""
    return dict(
        type='ImageClassifier',
        backbone=dict(type='ResNet_CIFAR', depth=18, stem_channels=width, base_channels=width),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=num_classes, in_channels=8 * width,
                  loss=dict(type='CrossEntropyLoss')))


ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def check_mmdistill_is_this_tree(imported_file: str, root: str) -> None:
    """Raise ``pytest.UsageError`` unless ``imported_file`` (``mmdistill.__file__``) is the
    ``mmdistill`` package of the checkout at ``root``: run elsewhere (``pytest`` from another
    directory), Python imports an installed copy and the tests would test that instead."""
    package = osp.dirname(osp.realpath(imported_file))
    expected = osp.join(osp.realpath(root), 'mmdistill')
    if package != expected:
        raise pytest.UsageError(
            f'the tests in {root} imported mmdistill from {package}, not from the tree under '
            f'test ({expected}): they would test another copy. Run them as '
            f'`python -m pytest` from the checkout: cd {root} && python -m pytest tests/...')


def pytest_configure(config):
    """Before collecting anything: the mmdistill these tests imported is this checkout's."""
    check_mmdistill_is_this_tree(mmdistill.__file__, ROOT)


def script_module(path: str, name: str):
    """The script at ``path`` (relative to the repository) as a module called ``name``, loaded
    from its file: nothing goes on ``sys.path`` and scripts of one name never clash."""
    spec = importlib.util.spec_from_file_location(name, osp.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def project_script(project: str, name: str = 'run'):
    """``projects/<project>/<name>.py`` as the module ``<project>_<name>`` (``digits_run``)."""
    return script_module(osp.join('projects', project, f'{name}.py'), f'{project}_{name}')


def write_config(path: str, **entries) -> str:
    with open(path, 'w') as f:
        for key, value in entries.items():
            f.write(f'{key} = {value!r}\n')
    return path


@pytest.fixture
def teacher_files(tmp_path):
    """A width-8 teacher config (mmpretrain scope) and a checkpoint of it."""
    from mmpretrain.registry import MODELS
    config = write_config(osp.join(tmp_path, 'teacher.py'), default_scope='mmpretrain',
                          model=tiny_classifier(8))
    torch.manual_seed(0)
    # Runners in other tests leave their codebase's default scope behind: build in mmpretrain's.
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        teacher = MODELS.build(tiny_classifier(8))
    checkpoint = osp.join(tmp_path, 'teacher.pth')
    torch.save({'state_dict': teacher.state_dict(), 'meta': {}}, checkpoint)
    return config, checkpoint


def classification_batch(n: int = 4, num_classes: int = 5, size: int = 16):
    from mmpretrain.structures import DataSample
    torch.manual_seed(1)
    inputs = torch.randn(n, 3, size, size)
    samples = [DataSample().set_gt_label(i % num_classes) for i in range(n)]
    return inputs, samples
