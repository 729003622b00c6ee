"""Every distillation config in configs/ builds, resolves its taps and distils on a tiny batch.

Each config is built as the Runner builds it (its default scope, its top-level data
preprocessor, SyncBN turned into BN, ``init_weights``), with no teacher checkpoint and no
pretrained weights in student or teacher, so nothing is downloaded (a download fails the
test), and small: small inputs (RTMPose heads of student and teacher shrunk to 64×96) and 16
region proposals per image in two-stage detectors. Every loss's taps name modules of the
student or the teacher, and one ``loss``-mode step on a tiny synthetic batch gives every
configured distillation loss, finite, with a gradient that reaches the student features it
reads, and none that reaches the teacher.
"""
import ast
import fnmatch
import glob
import inspect
import os.path as osp
import re
from contextlib import contextmanager

import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import MODELS, DefaultScope

from mmdistill.apis.offline import offline_options
from helpers.rtmpose import small_head
from mmdistill.apis import synthetic_batch
from mmdistill.distillers import Distiller, Tap
from mmdistill.distillers.taps import find_submodule
from mmdistill.registry import MODELS as DISTILL_MODELS
from mmdistill.utils import load_config, model_cfg_of

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# Runnable configs only: files in a _base_ folder are parts that others inherit.
CONFIGS = sorted(path for path in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'),
                                            recursive=True)
                 if '_base_' not in osp.relpath(path, ROOT).split(osp.sep))
# The digits project's single-teacher and teacher-free distillation configs
# (benchmarks/digits/configs/*; students alone and teachers left out) build and distil the same
# way; the method-values table covers only configs/. Its two-teacher config is built in
# tests/test_teacher_own_inputs_and_tap_check.py.
DIGITS_CONFIGS = sorted(path for path in glob.glob(osp.join(ROOT, 'benchmarks', 'digits',
                                                            'configs', '*.py'))
                        if 'distill_losses' in open(path).read() and
                        'teachers=' not in open(path).read())
# (H, W) of the tiny batches. Classifiers take any size (mmpretrain's ViTs resize their position
# embedding). Detectors get 2×2 cells at FPN stride 128: with a single cell MGD's random mask
# (ratio 0.65) often hides all of a level, and deformable 3×3 convolutions refuse maps < 3×3.
INPUT_SIZES = dict(mmpretrain=(64, 64), mmdet=(160, 160), mmseg=(64, 64))
PROPOSALS = 16  # region proposals per image in two-stage detectors


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    """Fail on any checkpoint download through MMEngine (URLs and ``open-mmlab://``)."""

    def refuse(url, *args, **kwargs):
        raise AssertionError(f'the test tried to download {url}')

    monkeypatch.setattr('mmengine.runner.checkpoint.load_url', refuse)


def small_options(model: dict) -> dict:
    """Overrides (relative to a model dict) for small inputs where a model fixes its input
    size, and few region proposals: mmseg pads every input to its crop size (512×1024 on
    Cityscapes); an RTMPose head flattens the feature map of its SimCC input size (shrunk to
    64×96 as in the e2e test); two-stage detectors run their RoI heads (a Cascade Mask R-CNN
    teacher three mask heads) on 1000 or more proposals per image."""
    options = {}
    if model.get('data_preprocessor', {}).get('size') is not None:
        options['data_preprocessor.size'] = INPUT_SIZES['mmseg']
    if 'in_featuremap_size' in model.get('head', {}):
        options.update(small_head(''))
    for mode, stage in (('test_cfg', 'rpn'), ('train_cfg', 'rpn_proposal')):
        if (model.get(mode) or {}).get(stage) is not None:
            options.update({f'{mode}.{stage}.nms_pre': PROPOSALS,
                            f'{mode}.{stage}.max_per_img': PROPOSALS})
    return options


def tiny_options(cfg: Config) -> dict:
    """Overrides that build the config's distiller small and offline: no teacher checkpoint,
    no pretrained weights in the student or the teacher (teacher modules may be shared with
    the student, whose ``init_weights`` then reaches them), small inputs in both."""
    options = offline_options(cfg)
    options.update({f'model.student.{k}': v for k, v in small_options(cfg.model.student).items()})
    if cfg.model.get('teacher') is not None:
        teacher_options = options['model.teacher.cfg_options']
        model = load_config(cfg.model.teacher.config, teacher_options).model
        teacher_options.update({f'model.{k}': v for k, v in small_options(model).items()})
    return options


def build_distiller(cfg: Config) -> Distiller:
    """The config's model as the Runner builds it (its scope, its top-level data
    preprocessor, SyncBN as BN), small and offline."""
    cfg = cfg.copy()
    cfg.merge_from_dict(tiny_options(cfg))
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(model_cfg_of(cfg))
    return revert_sync_batchnorm(model)


def tiny_batch(scope: str, student) -> dict:
    """Two synthetic images and their ground truth, as the codebase's dataloader yields them
    (boxes come with filled-box instance masks, for Mask R-CNN and SOLO students)."""
    if scope == 'mmpose':
        width, height = student.head.decoder.input_size
        return synthetic_batch(student, scope, 2, (height, width))
    return synthetic_batch(student, scope, 2, INPUT_SIZES[scope])


def tensors_in(value) -> list:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [tensor for item in value for tensor in tensors_in(item)]
    return []


@contextmanager
def observed(student, taps):
    """``tap -> tensors`` that the student's tapped modules give (output, or first input for
    ``:input`` taps) during the block, seen by hooks of the test's own."""
    seen = {tap: [] for tap in taps}

    def observer(tap):
        def hook(module, args, output):
            seen[tap].extend(tensors_in(args[0] if tap.port == 'input' else output))
        return hook

    handles = [student.get_submodule(tap.path).register_forward_hook(observer(tap))
               for tap in taps]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def loss_keys(losses: dict, name: str):
    """The keys a distillation loss logs under: ``loss_<name>`` or ``loss_<name>_<part>``."""
    return [k for k in losses if k == f'loss_{name}' or k.startswith(f'loss_{name}_')]


@pytest.mark.parametrize('config', CONFIGS + DIGITS_CONFIGS,
                         ids=[osp.relpath(c, ROOT) for c in CONFIGS + DIGITS_CONFIGS])
def test_config_builds_and_distils(config):
    torch.manual_seed(0)  # random masks of MGD/ViTKD
    cfg = Config.fromfile(config)
    assert cfg.model.type in ('mmdistill.Distiller', 'Distiller')
    model = build_distiller(cfg)
    assert isinstance(model, Distiller)
    model.init_weights()  # the student's own initialisation (pretrained weights removed)
    # Every tap of every loss names a module of the student or the teacher.
    for name, loss in cfg.model.distill_losses.items():
        for arg, spec in loss.inputs.items():
            tap = model.loss_inputs[name][arg]
            assert tap == Tap.parse(spec)
            assert isinstance(find_submodule(getattr(model, tap.owner), tap.path, tap.owner),
                              torch.nn.Module)

    model.train()
    batch = tiny_batch(cfg.default_scope, model.student)
    student_taps = {tap for inputs in model.loss_inputs.values() for tap in inputs.values()
                    if tap.owner == 'student'}
    with observed(model.student, student_taps) as seen:
        losses = model(**model.data_preprocessor(batch, True), mode='loss')

    distill_values = []
    for name in cfg.model.distill_losses:
        keys = loss_keys(losses, name)
        assert keys, f'distillation loss {name} is missing from {sorted(losses)}'
        for key in keys:
            assert losses[key].dim() == 0 and torch.isfinite(losses[key]), (key, losses[key])
        value = sum(losses[key] for key in keys)
        assert value.requires_grad, f'distillation loss {name} has no gradient at all'
        # Its gradient reaches the student features it reads (backward through the loss only).
        features = [t for tap in model.loss_inputs[name].values() if tap.owner == 'student'
                    for t in seen[tap] if t.requires_grad]
        grads = torch.autograd.grad(value, features, retain_graph=True, allow_unused=True)
        assert any(g is not None and g.abs().sum() > 0 for g in grads), \
            f'distillation loss {name} gives no gradient to the student features it reads'
        distill_values.append(value)
    sum(distill_values).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.student.parameters())
    if model.teacher is not None:
        assert not model.teacher.training
        assert all(p.grad is None and not p.requires_grad for p in model.teacher.parameters())


def method_values_table() -> list:
    """``(globs, loss type, {argument: value})`` rows of the method-values table in
    configs/README.md, the one place the shipped configs' method values are written down."""
    with open(osp.join(ROOT, 'configs', 'README.md')) as f:
        table = f.read().split('<!-- method-values -->', 1)[1].strip().splitlines()
    rows = []
    for line in table[2:]:  # after the header and its rule
        if not line.startswith('|'):
            break
        configs, loss_type, values = (cell.strip() for cell in line.strip('|').split('|'))
        rows.append((re.findall(r'`([^`]+)`', configs), loss_type,
                     {key: _literal(value) for key, value in
                      (item.split('=') for item in values.split(', '))}))
    return rows


def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except ValueError:
        return text  # a bare word: 'mean', 'channel'


METHOD_VALUES = method_values_table()


def config_name(path: str) -> str:
    return osp.relpath(path, osp.join(ROOT, 'configs'))


@pytest.mark.parametrize('config', CONFIGS, ids=[osp.relpath(c, ROOT) for c in CONFIGS])
def test_loss_values_are_those_of_the_method_values_table(config):
    losses = Config.fromfile(config).model.distill_losses
    rows = [(loss_type, values) for globs, loss_type, values in METHOD_VALUES
            if any(fnmatch.fnmatch(config_name(config), pattern) for pattern in globs)]
    for name, loss in losses.items():
        loss_type = loss['type'].split('.')[-1]
        expected = [values for row_type, values in rows if row_type == loss_type]
        assert expected, f'{loss_type} ({name}) of {config_name(config)} is not in the table'
        defaults = inspect.signature(DISTILL_MODELS.get(loss_type)).parameters
        for values in expected:
            for key, value in values.items():
                actual = loss.get(key, defaults[key].default)
                assert actual == value, f'{config_name(config)}: {name}.{key} = {actual}, ' \
                                        f'the table says {value}'


def test_every_row_of_the_method_values_table_names_a_shipped_loss():
    names = [config_name(c) for c in CONFIGS]
    for globs, loss_type, _ in METHOD_VALUES:
        for pattern in globs:
            matched = fnmatch.filter(names, pattern)
            assert matched, f'{pattern} matches no config'
            assert any(loss['type'].split('.')[-1] == loss_type for config in matched
                       for loss in Config.fromfile(osp.join(ROOT, 'configs', config))
                       .model.distill_losses.values()), (pattern, loss_type)
