"""The generic distiller: one student, frozen teachers, distillation losses on taps."""
import copy
import difflib
import inspect
import math
import weakref
from numbers import Real
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmengine.model import BaseModel
from torch import nn

from mmdistill.codebases import CODEBASES
from mmdistill.registry import MODELS
from mmdistill.utils import build_model_in_scope, current_scope
from .module_sharing import TeacherModules
from .precision import float32_copies, full_precision
from .tap_check import check_taps as run_tap_check
from .taps import STUDENT, TEACHER, LossInput, ModuleTaps, Tap, describe, parse_loss_input
from .teachers import Teachers, check_tap_owner, named_teachers

TENSOR_ANNOTATIONS = (torch.Tensor, 'torch.Tensor', 'Tensor')
# mmengine's parse_losses logs the total under 'loss'; a student entry of that name is renamed.
TOTAL_LOSS_KEY = 'loss'
STUDENT_TOTAL_KEY = 'loss_student'
LossValue = Union[torch.Tensor, List[torch.Tensor]]


def _map_loss(value: LossValue, fn) -> LossValue:
    """Apply ``fn`` to a loss entry: a tensor or a list of tensors (mmdet's per-level lists)."""
    return [fn(v) for v in value] if isinstance(value, (list, tuple)) else fn(value)


def _remove_taps(student_taps: ModuleTaps, teachers: Teachers) -> None:
    student_taps.remove()
    teachers.remove_taps()


def check_weight(value, where: str) -> None:
    """Refuse a loss weight that is not a finite number >= 0, naming ``where`` it is set: a NaN
    weight turns every weight NaN at the first step, a negative one maximises its loss, and one
    given as a string fails only inside the loss."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) \
            or value < 0:
        raise ValueError(
            f'{where} must be a finite number >= 0, got {value!r} ({type(value).__name__}): '
            'set it to a number >= 0 (0 switches the term off)')


def check_loss_weights(distill_losses: Dict[str, dict], student_loss_weight) -> None:
    """:func:`check_weight` on ``student_loss_weight`` and on each weight the config of each
    distillation loss sets (``loss_weight`` and those its class lists in ``weight_arguments``;
    the defaults of a loss class are valid)."""
    check_weight(student_loss_weight, 'model.student_loss_weight')
    for name, loss_cfg in distill_losses.items():
        loss_type = loss_cfg.get('type')
        loss_class = loss_type if inspect.isclass(loss_type) else MODELS.get(loss_type)
        for argument in getattr(loss_class, 'weight_arguments', ('loss_weight', )):
            if argument in loss_cfg:
                check_weight(loss_cfg[argument], f"distillation loss '{name}': "
                             f'model.distill_losses.{name}.{argument}')


@MODELS.register_module()
class Distiller(BaseModel):
    """Train a student with its own losses plus distillation losses on tapped features.

    In ``loss`` mode the total objective is

    .. math::
        L = w \\, L_{student} + \\sum_k s_k(t) \\, L_k(\\text{taps}_k)

    where :math:`L_{student}` are the student's own losses (weight :math:`w`,
    ``student_loss_weight``; with :math:`w = 0` they are left out of the total, not multiplied
    by 0, so a non-finite ground-truth loss cannot reach it), :math:`L_k` the configured
    distillation losses (each with its own ``loss_weight``) and :math:`s_k(t)` a scale that a
    hook may change over training (:class:`~mmdistill.hooks.DistillLossWeightHook`, default 1).
    A loss with :math:`s_k = 0` is not computed (nor the teacher, if no other loss needs it);
    its term becomes an exact zero that still reaches the loss's own parameters and the
    student features it reads, so that under DistributedDataParallel every parameter takes
    part in each step and ``find_unused_parameters`` stays off. Each loss computes in float32
    from float32 copies of its inputs, with autocast off, also under mixed precision. The
    teachers' forward time is logged as ``teacher_time`` (seconds, the sum over the teachers;
    0 in a step that ran none), with several teachers also each one's as
    ``teacher_time_<name>``.
    ``predict`` and ``tensor`` modes run the student alone, so the student codebase's
    evaluators, visualisers and exporters work unchanged.

    Each teacher (one, ``teacher=``, or several, ``teachers=``) is built from its own config and
    checkpoint, has no gradients, stays in eval mode whatever ``train()`` is called with
    (unless ``teacher_train_mode``), runs under ``torch.no_grad``, only in steps where an active
    loss taps it, and only as far as its own deepest tap (its forward pass stops once every
    tap on it has recorded). The teachers are held outside the module tree
    (:class:`~mmdistill.distillers.teachers.Teachers`): ``parameters()`` and
    ``named_children()`` do not list them, so optimizer constructors, EMA and DDP never see
    them, while ``to()``/``cuda()`` move them. They are left out of ``state_dict()`` (and so of
    checkpoints) unless ``save_teacher=True`` (under ``teacher.`` and ``teachers.<name>.``).

    Args:
        student: the student's model dict, usually ``_base_.model`` of the student config.
        teacher: ``dict(config=..., checkpoint=..., cfg_options=None, strict=True,
            dtype=None)``; ``config`` is a file (relative paths from the working directory;
            ``'{{ fileDirname }}/t.py'`` names one beside the config) or a package-scoped path
            (``'mmdet::retinanet/...py'``), ``checkpoint`` a path or URL; ``dtype``
            ``'bfloat16'`` or ``'float16'`` keeps the teacher's weights and forward pass in that
            precision (cheaper; its outputs reach the losses in float32). ``None`` for
            self-distillation without a teacher. ``inputs='own'`` gives it the student's batch
            converted to its own data preprocessor's colour order, mean and std, and with
            ``input_size=(H, W)`` resized to that size; ``inputs='student'`` the student's
            batch unchanged; the default ``'auto'`` converts colour, mean and std when they
            differ (:mod:`~mmdistill.distillers.input_preparation`).
        distill_losses: ``name -> loss dict``; each loss dict has the loss ``type`` (built in
            the ``mmdistill`` scope), its arguments, and ``inputs``: a mapping from the loss's
            forward arguments to taps such as ``'student.neck.fpn_convs.0.conv'`` or
            ``'teacher.head.fc:input'`` (``'teachers.<name>.head.fc'`` on a named teacher), with
            ``[i]`` to pick an element of a tuple or list (``'student.backbone[3]'``; see
            :class:`~mmdistill.distillers.taps.Tap`), or ``dict(mean=[tap, tap, ...])``, the
            element-wise mean of several taps (:class:`~mmdistill.distillers.taps.TapMean`).
            A loss whose forward takes ``data_samples`` receives the batch's data samples.
            Its weights (``loss_weight``, and the arguments a loss class lists in its
            ``weight_arguments``, such as FGD's ``alpha_fgd``) must be finite numbers >= 0:
            anything else is refused when the distiller is built, naming the loss.
        save_teacher: write the teacher's weights into checkpoints too.
        shared_modules: module paths (``['backbone', 'neck']``) where the student uses the
            teacher's own frozen modules instead of its own: the student never trains them, and
            in ``loss`` mode their outputs are taken from the teacher's forward pass rather than
            computed a second time. The student then holds the teacher's weights there, so an
            exported student is teacher backbone (+ neck) + student head (DWPose stage 2).
            Needs a float32 teacher.
        inherit_modules: module paths whose weights the student copies from the teacher when
            it is initialised (FGD's "inheriting strategy": ``['neck', 'bbox_head']``); the
            shapes must match. The copies are the student's own and train normally (from a
            half-precision teacher, they are its weights as rounded to its dtype).
        student_loss_weight: the weight of the student's own (ground-truth) losses; 0 trains
            on the distillation losses alone (DWPose stage 2) and logs the student's terms
            detached, ``loss`` renamed ``unweighted`` (``unweighted_kpt``).
        teacher_train_mode: let the teacher follow ``train()``/``eval()`` like the student,
            as mmpose's ``DWPoseDistiller`` does in effect (it calls ``teacher.eval()`` once,
            then mmengine's loop calls ``model.train()``): its BN layers then normalise with
            batch statistics and update their running statistics (with ``shared_modules``,
            those of the exported student too). Still without gradients. Off by default: a
            frozen teacher in eval mode is what the papers describe; switch it on only to
            reproduce upstream runs exactly.
        teachers: several teachers instead of ``teacher``: ``dict(<name>=dict(config=...,
            checkpoint=..., ...), ...)``, each as ``teacher`` describes; tapped as
            ``'teachers.<name>.<module path>'``. ``teacher=dict(...)`` is the same as
            ``teachers=dict(teacher=dict(...))``: the teacher named ``teacher`` is tapped as
            ``'teacher.<module path>'``, saved under ``teacher.``, and is the one that
            ``shared_modules`` and ``inherit_modules`` take from.
        check_taps: at build time, run the student and the teachers once on a random batch
            (of this (H, W), or 224×224 with ``True``) and raise a ``ValueError`` listing every
            loss whose inputs do not fit (:mod:`~mmdistill.distillers.tap_check`; the same
            check as ``tools/analysis/print_taps.py``).
        data_preprocessor: the config's top-level ``data_preprocessor`` (the Runner passes it);
            it becomes the student's when the student dict has none.
        init_cfg: unused by the distiller itself; kept for the BaseModel interface.
    """

    def __init__(self,
                 student: dict,
                 teacher: Optional[dict] = None,
                 distill_losses: Optional[Dict[str, dict]] = None,
                 save_teacher: bool = False,
                 shared_modules: Sequence[str] = (),
                 inherit_modules: Sequence[str] = (),
                 student_loss_weight: float = 1.0,
                 teacher_train_mode: bool = False,
                 teachers: Optional[Dict[str, dict]] = None,
                 check_taps: Union[bool, Sequence[int]] = False,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None,
                 **unknown):
        if unknown:
            self._raise_unknown_arguments(unknown)
        super().__init__(init_cfg=init_cfg)
        check_loss_weights(distill_losses or {}, student_loss_weight)
        teacher_configs = named_teachers(teacher, teachers)
        # Every tap is checked against the teachers' names before a model is built: a
        # teacher's checkpoint can take minutes to load.
        loss_inputs = {name: _parse_loss_inputs(name, loss_cfg, teacher_configs)
                       for name, loss_cfg in (distill_losses or {}).items()}
        student = copy.deepcopy(student)
        if data_preprocessor is not None:
            student.setdefault('data_preprocessor', data_preprocessor)
        self.student_scope = student.pop('_scope_', None) or current_scope()
        self.student = build_model_in_scope(student, self.student_scope)
        codebase = CODEBASES.get(self.student_scope)
        self.student_aliases = codebase.model_aliases if codebase is not None else ()
        # The student's own preprocessor (with its Mixup/CutMix batch augments) feeds both models.
        self.data_preprocessor = self.student.data_preprocessor

        # Teachers is no module: parameters(), named_children() and so the optimizer
        # constructors, EMA averaging and DDP never see the teachers. train(), _apply (device
        # and dtype moves), _set_device and the state-dict hooks below are what reach them.
        self.teachers = Teachers(teacher_configs, self.data_preprocessor)
        self.save_teacher = save_teacher
        if self.teachers:
            # torch 2.0 has these two hooks only under their private names (the public
            # register_load_state_dict_pre_hook and register_state_dict_post_hook came later).
            self._register_load_state_dict_pre_hook(self._load_teacher_weights, with_module=True)
            if save_teacher:
                self._register_state_dict_hook(self._add_teacher_weights)
        self.teacher_modules = TeacherModules(self.student, self.teachers.get(TEACHER),
                                              shared_modules, inherit_modules)
        self.student_loss_weight = student_loss_weight
        self.teacher_train_mode = teacher_train_mode

        self.distill_losses = nn.ModuleDict()
        self.loss_inputs: Dict[str, Dict[str, LossInput]] = {}
        self.loss_scales: Dict[str, float] = {}
        self._tensor_inputs: Dict[str, List[str]] = {}  # loss name -> args typed as tensors
        self._losses_taking_data_samples = set()
        for name, loss_cfg in (distill_losses or {}).items():
            self._add_loss(name, loss_cfg, loss_inputs[name])

        taps = [tap for inputs in self.loss_inputs.values() for spec in inputs.values()
                for tap in spec.taps]
        # The teacher also records what its shared modules produce, for the student to reuse.
        taps += self.teacher_modules.taps
        self.student_taps = ModuleTaps(
            self.student, [t for t in taps if t.owner == STUDENT], STUDENT)
        self.teachers.tap(taps)
        # The hooks live in the student's and teachers' modules: remove them with the distiller.
        weakref.finalize(self, _remove_taps, self.student_taps, self.teachers)
        if check_taps:
            run_tap_check(self, None if check_taps is True else check_taps)

    # ----------------------------------------------------------------------------- building
    @classmethod
    def _raise_unknown_arguments(cls, unknown: dict) -> None:
        known = [p for p in inspect.signature(cls.__init__).parameters
                 if p not in ('self', 'unknown')]
        typos = {key: difflib.get_close_matches(key, known, n=1, cutoff=0.75)
                 for key in unknown}
        if all(typos.values()):
            raise TypeError(
                'Distiller got unknown argument(s) ' + ', '.join(
                    f"'{key}' (did you mean '{match[0]}'?)" for key, match in typos.items()))
        raise TypeError(
            f'Distiller got unknown argument(s) {sorted(unknown)}. Keys of the base config\'s '
            "model (backbone, neck, head, pretrained, ...) arrive here when the distillation "
            'config merges its model dict into the base one: add _delete_=True to replace it, '
            "model = dict(_delete_=True, type='mmdistill.Distiller', student=_base_.model, ...).")

    @property
    def teacher(self) -> Optional[nn.Module]:
        """The model of the teacher named ``teacher`` (``teacher=``); ``None`` without one
        (``self.teachers['<name>'].model`` is that of any teacher)."""
        own = self.teachers.get(TEACHER)
        return own.model if own is not None else None

    def _add_loss(self, name: str, loss_cfg: dict, inputs: Dict[str, LossInput]) -> None:
        """Build distillation loss ``name``, which reads ``inputs`` (its parsed taps)."""
        loss_cfg = {key: value for key, value in loss_cfg.items() if key != 'inputs'}
        loss_cfg.setdefault('_scope_', 'mmdistill')
        loss = MODELS.build(loss_cfg)
        params = inspect.signature(loss.forward).parameters
        takes = [p for p in params if p != 'data_samples']
        required = [p for p in takes if params[p].default is inspect.Parameter.empty]
        unknown = [arg for arg in inputs if arg not in takes]
        missing = [arg for arg in required if arg not in inputs]
        if unknown or missing:
            raise ValueError(
                f"distillation loss '{name}' ({type(loss).__name__}) takes inputs "
                f'{takes}; the config gives {list(inputs)} (unknown: {unknown}, missing: '
                f'{missing})')
        self.distill_losses[name] = loss
        self.loss_inputs[name] = inputs
        self._tensor_inputs[name] = [arg for arg in inputs
                                     if params[arg].annotation in TENSOR_ANNOTATIONS]
        self.loss_scales[name] = 1.0
        if 'data_samples' in params:
            self._losses_taking_data_samples.add(name)

    def init_weights(self) -> None:
        """Initialise the student and the losses' own layers; never touch the teacher.

        Shared modules keep the teacher's weights (the student's initialisation would otherwise
        reach them); inherited modules are copied from the teacher after the student's own
        initialisation.
        """
        self.teacher_modules.init_weights(self.student.init_weights)
        for loss in self.distill_losses.values():
            if hasattr(loss, 'init_weights'):
                loss.init_weights()

    # ----------------------------------------------------------------- teacher bookkeeping
    def train(self, mode: bool = True) -> 'Distiller':
        """Set the student (and losses) to ``mode``; the teachers stay in eval mode unless
        ``teacher_train_mode``."""
        super().train(mode)
        self.teachers.train(mode and self.teacher_train_mode)  # super().train cannot reach them
        return self

    def _apply(self, fn, *args, **kwargs) -> 'Distiller':
        """``to``/``cuda``/``half``... move the teachers too (they are not submodules). Further
        arguments pass through as torch gives them (``recurse`` since torch 2.1)."""
        super()._apply(fn, *args, **kwargs)
        self.teachers.apply(fn, *args, **kwargs)
        return self

    def _set_device(self, device: torch.device) -> None:
        """Tell the teachers' data preprocessors where they live, as for the student's."""
        super()._set_device(device)
        self.teachers.set_device(device)

    @staticmethod
    def _add_teacher_weights(module, state_dict, prefix, local_metadata) -> None:
        module.teachers.save_into(state_dict, prefix)

    @staticmethod
    def _load_teacher_weights(module, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:
        """Take the teachers' weights (``teacher.*``, ``teachers.<name>.*``) out of a
        checkpoint; load them only with ``save_teacher=True`` (otherwise each teacher's own
        checkpoint stays authoritative)."""
        module.teachers.take_from(state_dict, prefix, module.save_teacher, missing_keys,
                                  unexpected_keys)

    def extra_repr(self) -> str:
        if not self.teachers:
            return 'teacher=None'
        return ', '.join(f'{teacher.prefix}={type(teacher.model).__name__}'
                         for teacher in self.teachers.values()) + \
            ' (frozen, outside the module tree)'

    def set_loss_scale(self, name: str, scale: float) -> None:
        """Scale distillation loss ``name`` by ``scale`` from the next step on (0 skips it)."""
        if name not in self.loss_scales:
            raise KeyError(f"no distillation loss '{name}'; the distiller has "
                           f'{list(self.loss_scales)}')
        self.loss_scales[name] = float(scale)

    def __getattr__(self, name: str):
        """The student under the names its codebase's hooks look for in a model that wraps
        one (the ``model_aliases`` of :mod:`mmdistill.codebases`: ``detector`` for mmdet, whose
        ``YOLOXModeSwitchHook`` switches ``model.detector.bbox_head`` to its L1 loss)."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in self.__dict__.get('student_aliases', ()):
                return self.student
            raise

    # ------------------------------------------------------------------------------ forward
    def forward(self, inputs: torch.Tensor, data_samples=None, mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        return self.student(inputs, data_samples, mode=mode)

    def loss(self, inputs: torch.Tensor, data_samples=None) -> Dict[str, torch.Tensor]:
        """The student's own losses plus each active distillation loss, by name.

        Also logs ``teacher_time``: the seconds the teachers' forward passes took in this step
        (their sum; 0 when no active loss needed a teacher), and each teacher's own as
        ``teacher_time_<name>`` unless the only one is ``teacher`` (``teacher=``).
        """
        active = [name for name, scale in self.loss_scales.items() if scale != 0]
        needed = {tap.owner for name in active for spec in self.loss_inputs[name].values()
                  for tap in spec.taps if tap.owner != STUDENT}
        records, seconds = self.teachers.forward(needed, inputs, data_samples)
        losses = {}
        with self.teacher_modules.reused_outputs(records):
            records.update(self.student_taps.record(
                lambda: losses.update(self.student(inputs, data_samples, mode='loss'))))
        losses = self._weigh_student_losses(losses)
        for name in self.loss_scales:
            terms = (self._distill_loss(name, records, data_samples) if name in active else
                     self._switched_off(name, records))
            for key, value in terms.items():
                if key in losses:
                    raise KeyError(f"distillation loss '{name}' logs as '{key}', which the "
                                   'student already uses: rename the loss')
                losses[key] = value
        losses.update(self.teachers.times(seconds))
        return losses

    def teacher_forward(self, inputs: torch.Tensor, data_samples=None) -> Dict[Tap, object]:
        """Run every teacher as a training step does (each on its inputs from the student's
        batch, no gradients, in its dtype, stopped after its deepest tap) and return what their
        taps recorded."""
        return self.teachers.forward(list(self.teachers), inputs, data_samples)[0]

    def _weigh_student_losses(self, losses: Dict[str, LossValue]) -> Dict[str, LossValue]:
        """Name and weigh the student's own outputs so that mmengine's total is the real one.

        mmengine's ``parse_losses`` sums every ``*loss*`` entry into the total and logs it as
        ``loss``; a student entry named ``loss`` (mmpretrain's heads) would overwrite that total
        in the log, so it becomes ``loss_student``. With ``student_loss_weight == 0`` the
        student's loss terms stay out of the total altogether (``0 * nan`` is ``nan``): they
        are logged detached, ``loss`` replaced by ``unweighted`` in their names.
        """
        weight = self.student_loss_weight
        weighed = {}
        for key, value in losses.items():
            key = STUDENT_TOTAL_KEY if key == TOTAL_LOSS_KEY else key
            if 'loss' not in key or weight == 1:
                weighed[key] = value
            elif weight == 0:
                weighed[key.replace('loss', 'unweighted')] = _map_loss(value, torch.detach)
            else:
                weighed[key] = _map_loss(value, lambda v: v * weight)
        return weighed

    def _raise_not_a_tensor(self, name: str, arg: str, value) -> None:
        tap = self.loss_inputs[name][arg]
        hint = ''
        if isinstance(value, (tuple, list)) and value:
            hint = (f" (the module returns several values, or ran {len(value)} times in one "
                    f"forward pass). Pick one with an index: '{tap}[{len(value) - 1}]' is the "
                    'last')
        raise TypeError(
            f"distillation loss '{name}' ({type(self.distill_losses[name]).__name__}) takes a "
            f"tensor as '{arg}', but tap '{tap}' gives {describe(value)}{hint}.")

    def _distill_loss(self, name: str, records: dict, data_samples) -> Dict[str, torch.Tensor]:
        try:
            kwargs = {arg: spec.value(records) for arg, spec in self.loss_inputs[name].items()}
        except ValueError as error:
            raise ValueError(f"distillation loss '{name}': {error}") from error
        for arg in self._tensor_inputs[name]:
            if not isinstance(kwargs[arg], torch.Tensor):
                self._raise_not_a_tensor(name, arg, kwargs[arg])
        kwargs = {arg: float32_copies(value) for arg, value in kwargs.items()}
        if name in self._losses_taking_data_samples:
            kwargs['data_samples'] = data_samples
        try:
            with full_precision(self._device_type(kwargs)):
                value: Union[torch.Tensor, Dict[str, torch.Tensor]] = \
                    self.distill_losses[name](**kwargs)
        except ValueError as error:
            where = ', '.join(f'{arg}={spec}' for arg, spec in self.loss_inputs[name].items())
            raise ValueError(f"distillation loss '{name}' ({where}): {error}") from error
        scale = self.loss_scales[name]
        if isinstance(value, dict):
            return {f'loss_{name}_{part}': v * scale for part, v in value.items()}
        return {f'loss_{name}': value * scale}

    def _switched_off(self, name: str, records: dict) -> Dict[str, torch.Tensor]:
        """Loss ``name`` at scale 0, not computed: an exact zero built from its own trainable
        parameters and the student features it would read, so that what trains through the
        loss gets a (zero) gradient in every step, as DistributedDataParallel expects."""
        student_inputs = [records[tap] for spec in self.loss_inputs[name].values()
                          for tap in spec.taps if tap.owner == STUDENT]
        reached = [t for t in (*self.distill_losses[name].parameters(), *_tensors(student_inputs))
                   if t.requires_grad]
        with full_precision(self._device_type(reached)):
            zero = sum((t.float().sum() * 0.0 for t in reached), torch.zeros(()))
        return {f'loss_{name}': zero}

    @staticmethod
    def _device_type(tensors) -> str:
        found = _tensors(tensors)
        return found[0].device.type if found else 'cpu'


def _parse_loss_inputs(name: str, loss_cfg: dict,
                       teachers: Dict[str, dict]) -> Dict[str, LossInput]:
    """The parsed ``inputs`` of distillation loss ``name``, each tap reading the student or
    one of ``teachers`` (their configs by name; none is built yet)."""
    if not name.isidentifier():
        raise ValueError(f"distillation loss name '{name}' must be a Python identifier")
    inputs = loss_cfg.get('inputs')
    if not inputs:
        raise ValueError(
            f"distillation loss '{name}' needs 'inputs', a mapping from its forward "
            "arguments to taps, e.g. inputs=dict(student_logits='student.head.fc', "
            "teacher_logits='teacher.head.fc')")
    parsed = {arg: parse_loss_input(spec) for arg, spec in inputs.items()}
    for tap in [tap for spec in parsed.values() for tap in spec.taps]:
        check_tap_owner(tap, teachers, f"distillation loss '{name}'")
    return parsed


def _tensors(value) -> List[torch.Tensor]:
    """The tensors in ``value`` (a tensor, or lists, tuples and dicts of them)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _tensors(item)]
    return []
