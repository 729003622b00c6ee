"""What distillation costs on top of its floor: the student's own step plus the teacher's forward.

The least a distillation step can cost is the student's training step plus the teacher's
forward pass, without autograd and only as deep as its deepest tap. :func:`benchmark_overhead`
times the three (each a median over many steps after a warm-up) and counts the leaf modules
that run in the teacher and in the student, so that a teacher tapped in its neck is seen not
to run its head. ``tools/analysis/benchmark_overhead.py`` is its command line.
"""
import copy
import logging
import math
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.logging import MessageHub, print_log
from mmengine.optim import OptimWrapper
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import DefaultScope
from mmengine.runner import Runner, set_random_seed
from torch import nn

from mmdistill.distillers import Distiller
from mmdistill.utils import load_config, model_cfg_of

STEPS = ('student_step', 'teacher_forward', 'distill_step')
BOXES_PER_IMAGE = 3
CODEC_MAPPING_TABLES = ('field_mapping_table', 'instance_mapping_table',
                        'label_mapping_table')
SGD_LR = 1e-4  # small: random weights must not diverge to NaN within the timed steps


# ------------------------------------------------------------------------------- results
@dataclass
class ModuleUsage:
    """Which leaf modules of a model ran during one step (its data preprocessor left out).

    ``parts`` maps each top-level child (``backbone``, ``neck``, ``head``...) to
    ``(ran, total)``; ``last`` is the last leaf module that started running.
    """
    ran: int
    total: int
    last: Optional[str]
    parts: Dict[str, Tuple[int, int]]

    def __str__(self) -> str:
        return f'{self.ran}/{self.total}'


@dataclass
class OverheadResult:
    """Median milliseconds of the three steps, the network input and the modules that ran.

    ``floor_ms = student_step_ms + teacher_forward_ms``, ``ratio = distill_step_ms /
    floor_ms`` and ``overhead_pct = 100 * (distill_step_ms - floor_ms) / floor_ms``.
    ``teacher_modules`` is ``None`` when no loss taps a teacher; ``teacher_dtype`` is the
    precision the teacher runs in (``'float32'``, ``'bfloat16'``, ``'float16'``).
    """
    student_step_ms: float
    teacher_forward_ms: float
    distill_step_ms: float
    input_shape: Tuple[int, ...]
    teacher_modules: Optional[ModuleUsage]
    student_modules: ModuleUsage
    teacher_dtype: str = 'float32'

    @property
    def floor_ms(self) -> float:
        return self.student_step_ms + self.teacher_forward_ms

    @property
    def ratio(self) -> float:
        return self.distill_step_ms / self.floor_ms

    @property
    def overhead_pct(self) -> float:
        return 100.0 * (self.distill_step_ms - self.floor_ms) / self.floor_ms

    def to_dict(self) -> dict:
        return dict(asdict(self), floor_ms=self.floor_ms, ratio=self.ratio,
                    overhead_pct=self.overhead_pct)


# ---------------------------------------------------------------------- module counting
def leaf_modules(model: nn.Module) -> Dict[str, nn.Module]:
    """The modules of ``model`` without children, by name, its data preprocessor left out."""
    return {name: module for name, module in model.named_modules()
            if name and next(module.children(), None) is None
            and name.split('.')[0] != 'data_preprocessor'}


class _LeavesRun:
    """Forward hooks on ``model`` that note which of its leaf modules run inside its own calls.

    A leaf counts only while ``model`` itself is being called: a module the student shares
    with the teacher (``Distiller(shared_modules=...)``) and that runs in the teacher's pass
    does not count for the student. A forward *pre*-hook counts a leaf, so that the module
    whose output stops the teacher early (its deepest tap) still counts as run.
    """

    def __init__(self, model: nn.Module):
        self.leaves = leaf_modules(model)
        self.ran: Dict[str, None] = {}  # insertion-ordered set
        self.depth = 0
        self.handles = [model.register_forward_pre_hook(self._enter),
                        model.register_forward_hook(self._leave, always_call=True)]
        self.handles += [module.register_forward_pre_hook(self._counter(name))
                         for name, module in self.leaves.items()]

    def _enter(self, module, args):
        self.depth += 1

    def _leave(self, module, args, output):
        self.depth -= 1

    def _counter(self, name: str) -> Callable:
        def hook(module, args):
            if self.depth:
                self.ran.setdefault(name)
        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    def usage(self) -> ModuleUsage:
        parts: Dict[str, Tuple[int, int]] = {}
        for name in self.leaves:
            part = name.split('.')[0]
            done, total = parts.get(part, (0, 0))
            parts[part] = (done + (name in self.ran), total + 1)
        return ModuleUsage(ran=len(self.ran), total=len(self.leaves),
                           last=next(reversed(self.ran), None), parts=parts)


def count_modules_run(models: Dict[str, nn.Module],
                      forward: Callable[[], object]) -> Dict[str, ModuleUsage]:
    """Run ``forward()`` once and report, for each of ``models`` (by name), which of its leaf
    modules ran inside its own calls (see :class:`_LeavesRun`)."""
    watched = {name: _LeavesRun(model) for name, model in models.items()}
    try:
        forward()
    finally:
        for leaves_run in watched.values():
            leaves_run.remove()
    return {name: leaves_run.usage() for name, leaves_run in watched.items()}


# ------------------------------------------------------------------------------ timing
def _sgd(model: nn.Module) -> OptimWrapper:
    params = [p for p in model.parameters() if p.requires_grad]
    return OptimWrapper(torch.optim.SGD(params, lr=SGD_LR, momentum=0.9))


def _median_ms(seconds: Sequence[float]) -> float:
    return 1000.0 * statistics.median(seconds)


def benchmark_overhead(distiller: Distiller, data: dict, warmup: int = 5,
                       iters: int = 20) -> OverheadResult:
    """Time (a) the student's training step alone, (b) the teacher's forward as the distiller
    runs it and (c) the distiller's training step, on one batch.

    (a) and (c) are full training steps as MMEngine's loop runs them (``train_step``: data
    preprocessor, ``mode='loss'``, loss parsing, backward, SGD step, zero_grad). (b) runs the
    teacher in ``tensor`` mode under ``no_grad`` through the distiller's teacher taps with
    ``stop_early=True``, on the batch the student's preprocessor prepared. The three steps
    take turns in each round, so that a change of machine load affects all three alike; the
    first ``warmup`` rounds are not timed.

    Args:
        distiller: the distiller (it is set to train mode and its student is updated).
        data: one batch as a dataloader yields it: ``dict(inputs=..., data_samples=...)``.
        warmup: untimed rounds first; at least 1, since the teacher's first pass is a full one
            (the taps learn how many calls to wait for before stopping early).
        iters: timed rounds.
    """
    if warmup < 1 or iters < 1:
        raise ValueError(f'warmup ({warmup}) and iters ({iters}) must be at least 1: the first '
                         "round runs the whole teacher, to learn where its taps let it stop")
    distiller.train()
    prepared = distiller.data_preprocessor(copy.deepcopy(data), True)
    inputs, data_samples = prepared['inputs'], prepared['data_samples']
    tapped = {teacher.prefix: teacher for teacher in distiller.teachers.values() if teacher.taps}
    runs_teacher = bool(tapped)

    def teacher_forward():
        distiller.teacher_forward(inputs, data_samples)

    student_optim, distill_optim = _sgd(distiller.student), _sgd(distiller)
    steps = dict(
        student_step=lambda batch: distiller.student.train_step(batch, student_optim),
        teacher_forward=lambda batch: teacher_forward() if runs_teacher else None,
        distill_step=lambda batch: distiller.train_step(batch, distill_optim))
    seconds: Dict[str, list] = {name: [] for name in STEPS}
    for round_ in range(warmup + iters):
        for name in STEPS:
            batch = copy.deepcopy(data)  # preprocessors may edit data samples in place
            start = time.perf_counter()
            steps[name](batch)
            if round_ >= warmup:
                seconds[name].append(time.perf_counter() - start)

    # Both models' modules are counted in one distillation step: the teacher's are those that
    # Distiller.loss runs (stopped at its deepest tap), not those of a pass of our own.
    log_vars = {}
    models = dict(student=distiller.student,
                  **{name: teacher.model for name, teacher in tapped.items()})
    modules = count_modules_run(
        models, lambda: log_vars.update(steps['distill_step'](copy.deepcopy(data))))
    loss = float(log_vars['loss'].detach())
    if not math.isfinite(loss):
        print_log(f'the distillation loss is {loss} after {warmup + iters} steps: '
                  'timings of non-finite values may not be representative',
                  logger='current', level=logging.WARNING)
    return OverheadResult(
        student_step_ms=_median_ms(seconds['student_step']),
        teacher_forward_ms=_median_ms(seconds['teacher_forward']) if runs_teacher else 0.0,
        distill_step_ms=_median_ms(seconds['distill_step']),
        input_shape=tuple(inputs.shape),
        teacher_modules=_joined_usage({name: modules[name] for name in tapped}),
        student_modules=modules['student'],
        teacher_dtype=','.join(sorted({str(teacher.dtype).replace('torch.', '')
                                       for teacher in tapped.values()})) or 'float32')


def _joined_usage(usages: Dict[str, ModuleUsage]) -> Optional[ModuleUsage]:
    """The teachers' module usage as one: the single teacher's as it is; several teachers'
    summed, their parts named ``<teacher>.<part>`` (``teachers.det.backbone``)."""
    if len(usages) <= 1:
        return next(iter(usages.values()), None)
    parts = {f'{name}.{part}': counts for name, usage in usages.items()
             for part, counts in usage.parts.items()}
    last = [f'{name}.{usage.last}' for name, usage in usages.items() if usage.last]
    return ModuleUsage(ran=sum(u.ran for u in usages.values()),
                       total=sum(u.total for u in usages.values()),
                       last=last[-1] if last else None, parts=parts)


# ---------------------------------------------------------------------- synthetic batches
def _num_classes(model: nn.Module) -> int:
    """The largest ``num_classes`` a module of ``model`` declares (an RPN's 1 loses to the
    ROI head's 80)."""
    declared = [m.num_classes for m in model.modules()
                if isinstance(getattr(m, 'num_classes', None), int)]
    if not declared:
        raise ValueError(f'{type(model).__name__} declares no num_classes: cannot draw labels')
    return max(declared)


def _classification_sample(model: nn.Module, image: torch.Tensor, gen: torch.Generator):
    from mmpretrain.structures import DataSample
    label = int(torch.randint(_num_classes(model), (1, ), generator=gen))
    return DataSample().set_gt_label(label)


def _detection_sample(model: nn.Module, image: torch.Tensor, gen: torch.Generator):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    height, width = image.shape[-2:]
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    centre = 0.2 + 0.6 * torch.rand(BOXES_PER_IMAGE, 2, generator=gen)
    half_size = 0.05 + 0.15 * torch.rand(BOXES_PER_IMAGE, 2, generator=gen)
    boxes = torch.cat([centre - half_size, centre + half_size], dim=1) * scale
    labels = torch.randint(_num_classes(model), (BOXES_PER_IMAGE, ), generator=gen)
    sample = DetDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width),
                                         scale_factor=(1.0, 1.0)))
    sample.gt_instances = InstanceData(bboxes=boxes, labels=labels,
                                       masks=_box_masks(boxes, height, width))
    return sample


def _box_masks(boxes: torch.Tensor, height: int, width: int):
    """Instance masks filling each box, for detectors with mask heads (Mask R-CNN, SOLO)."""
    from mmdet.structures.mask import BitmapMasks
    rows = torch.arange(height).view(1, -1, 1)
    cols = torch.arange(width).view(1, 1, -1)
    x1, y1, x2, y2 = (boxes[:, i].view(-1, 1, 1) for i in range(4))
    masks = (cols >= x1) & (cols < x2) & (rows >= y1) & (rows < y2)
    return BitmapMasks(masks.numpy().astype('uint8'), height, width)


def _segmentation_sample(model: nn.Module, image: torch.Tensor, gen: torch.Generator):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    height, width = image.shape[-2:]
    sample = SegDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width)))
    sample.gt_sem_seg = PixelData(
        data=torch.randint(_num_classes(model), (1, height, width), generator=gen))
    return sample


def _pose_sample(model: nn.Module, image: torch.Tensor, gen: torch.Generator):
    """Random keypoints, encoded by the head's own codec into the targets its loss reads."""
    from mmpose.datasets.transforms import PackPoseInputs
    height, width = image.shape[-2:]
    codec, num_keypoints = model.head.decoder, model.head.out_channels
    if tuple(codec.input_size) != (width, height):
        raise ValueError(f'the pose head expects {codec.input_size[1]}x{codec.input_size[0]} '
                         f'(HxW) inputs (its codec input_size), not {height}x{width}: pass '
                         f'--input-size {codec.input_size[1]} {codec.input_size[0]}')
    keypoints = (torch.rand(1, num_keypoints, 2, generator=gen) *
                 torch.tensor([width, height])).numpy()
    visible = np.ones((1, num_keypoints), dtype=np.float32)
    results = dict(img=image.permute(1, 2, 0).numpy(), keypoints=keypoints,
                   keypoints_visible=visible, bbox=np.array([[0, 0, width, height]], np.float32),
                   img_shape=(height, width), ori_shape=(height, width),
                   input_size=(width, height))
    # What mmpose's GenerateTarget does with one encoder: the targets, and where to pack them.
    results.update(codec.encode(keypoints, visible,
                                **{key: results.get(key) for key in codec.auxiliary_encode_keys}))
    results.update({table: getattr(codec, table) for table in CODEC_MAPPING_TABLES
                    if getattr(codec, table)})
    return PackPoseInputs()(results)['data_samples']


SAMPLE_SYNTHESIZERS = dict(mmpretrain=_classification_sample, mmdet=_detection_sample,
                           mmseg=_segmentation_sample, mmpose=_pose_sample)


def synthetic_batch(model: nn.Module, scope: str, batch_size: int,
                    input_size: Tuple[int, int], seed: int = 0) -> dict:
    """A batch as the ``scope`` codebase's dataloader yields it: random uint8 images of
    ``input_size`` (H, W) and data samples with what the model's loss reads (class labels;
    boxes and labels; a label map; keypoints encoded by the head's codec)."""
    if scope not in SAMPLE_SYNTHESIZERS:
        raise ValueError(f"no synthetic batch for a '{scope}' student (known: "
                         f'{sorted(SAMPLE_SYNTHESIZERS)}); use the config\'s own data '
                         "(data='train', --data train) instead")
    # Batch augments such as YOLOX's random resize read the iteration a Runner would set.
    message_hub = MessageHub.get_current_instance()
    if message_hub.get_info('iter') is None:
        message_hub.update_info('iter', 0)
    gen = torch.Generator().manual_seed(seed)
    images = [torch.randint(0, 256, (3, *input_size), generator=gen, dtype=torch.uint8)
              for _ in range(batch_size)]
    make_sample = SAMPLE_SYNTHESIZERS[scope]
    return dict(inputs=images, data_samples=[make_sample(model, image, gen) for image in images])


def train_batch(cfg, batch_size: int, seed: int = 0) -> dict:
    """The first batch of the config's own ``train_dataloader`` (its data must exist)."""
    loader_cfg = copy.deepcopy(cfg.train_dataloader)
    loader_cfg.update(batch_size=batch_size, num_workers=0, persistent_workers=False)
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        return next(iter(Runner.build_dataloader(loader_cfg, seed=seed)))


# ------------------------------------------------------------------------------ configs
def build_distiller(config: str, cfg_options: Optional[dict] = None,
                    teacher_checkpoint: Optional[str] = None) -> Tuple[Distiller, object]:
    """Build the distiller of a config as the Runner would, with the teacher checkpoint
    replaced by ``teacher_checkpoint`` (``None``: random teacher weights, no download; the
    weights do not change the timings). Several teachers (``teachers=``) get random weights.

    Returns:
        The distiller and the loaded config.
    """
    cfg = load_config(config, cfg_options)
    model_cfg = model_cfg_of(cfg)
    if isinstance(model_cfg.get('teacher'), dict):
        model_cfg.teacher.checkpoint = teacher_checkpoint
    teachers = model_cfg.get('teachers') or {}
    if teachers and teacher_checkpoint is not None:
        raise ValueError(f'{config} has several teachers ({", ".join(teachers)}): one '
                         'teacher_checkpoint cannot replace their checkpoints; benchmark them '
                         'with random weights (teacher_checkpoint=None)')
    for teacher in teachers.values():
        teacher.checkpoint = None
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        model = MMENGINE_MODELS.build(model_cfg)
    if not isinstance(model, Distiller):
        raise ValueError(f"{config} builds a {type(model).__name__}, not an mmdistill "
                         "Distiller: benchmark a distillation config (model.type="
                         "'mmdistill.Distiller')")
    return model, cfg


def benchmark_config(config: str, batch_size: int, input_size: Tuple[int, int] = (224, 224),
                     data: str = 'synthetic', cfg_options: Optional[dict] = None,
                     teacher_checkpoint: Optional[str] = None, warmup: int = 5,
                     iters: int = 20, seed: int = 0) -> OverheadResult:
    """:func:`benchmark_overhead` on a config's distiller.

    Args:
        data: ``'synthetic'`` (a :func:`synthetic_batch` of ``input_size``) or ``'train'``
            (the first batch of the config's ``train_dataloader``; ``input_size`` unused).
    """
    if data not in ('synthetic', 'train'):
        raise ValueError(f"data must be 'synthetic' or 'train', not '{data}'")
    set_random_seed(seed)
    distiller, cfg = build_distiller(config, cfg_options, teacher_checkpoint)
    if data == 'train':
        batch = train_batch(cfg, batch_size, seed)
    else:
        batch = synthetic_batch(distiller.student, distiller.student_scope, batch_size,
                                input_size, seed)
    result = benchmark_overhead(distiller, batch, warmup, iters)
    if data == 'synthetic' and result.input_shape[-2:] != tuple(input_size):
        print_log(f'{config}: the student\'s data preprocessor turned {tuple(input_size)} '
                  f'images into {result.input_shape[-2:]} network inputs (it pads to a fixed '
                  'size or a size divisor); override it through cfg_options, e.g. '
                  'model.student.data_preprocessor.size, to time another size',
                  logger='current', level=logging.WARNING)
    return result
