"""Hooks that prune an mmpretrain transformer inside one ``tools/train.py`` run.

- :class:`UPopHook`: UPop's search (masks, accumulated mask gradients, the progressive sine
  schedule), then compression, then training goes on with the compressed model (retraining).
- :class:`UniformMagnitudePruningHook`: the baseline; every layer loses the same share of its
  units, those of smallest weight magnitude, before the first step.
- :class:`ProgressiveMagnitudePruningHook`: the same units masked progressively, on UPop's
  schedule and update steps, compressed at the end of UPop's search.
- :class:`MagnitudePruningToWidthsHook`: the widths of another pruned run (UPop's), each
  filled with the units of largest magnitude, before the first step.

All resume from any checkpoint of their run: mid-search checkpoints carry the masks and their
accumulated gradients as buffers; a checkpoint written after compression has narrower weights,
and the model is narrowed to them before they are loaded (``after_load_checkpoint``).

All run in several processes (DDP): the mask gradients are averaged over the processes at
every step (as DDP averages the weights' gradients), so every process selects and compresses the
same units, and after compression the DDP wrapper is rebuilt around the compressed model.
"""
import copy
import gc
import logging
import math
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmengine.dist import all_reduce
from mmengine.hooks import CheckpointHook, EMAHook, Hook
from mmengine.logging import print_log
from mmengine.model import MMSeparateDistributedDataParallel, is_model_wrapper
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from mmdistill.engine import load_checkpoint_file
from mmdistill.pruning.structures import MASK, PrunableStructure, find_structures
from mmdistill.registry import HOOKS
from .search import BOUNDARIES, check_budget, progressive_share, select_units

# When UPopHook updates the masks during its search of T steps (0-based steps t):
# 'reference': after the steps interval, 2·interval, ... and T − 1 (the authors' code);
# 'one_earlier': after the steps interval − 1, 2·interval − 1, ... and T − 1 (this project's
# rule before issue 27; the evidence tables in the README were measured with it).
UPDATE_STEPS = ('reference', 'one_earlier')


class StructuredPruningHook(Hook):
    """What both pruning hooks share: finding the structures, compressing them, resuming.

    Args:
        model_path: the submodule of the runner's model that is pruned: ``''`` for the model
            itself, ``'student'`` for the student of an ``mmdistill.Distiller``.
        scope: where to look for attention and MLP layers inside it (``'backbone'``), or a
            list of such places (``['vision', 'text']``: both towers of a dual encoder, ranked
            together); ``''`` for everywhere.
    """

    priority = 'ABOVE_NORMAL'  # before the checkpoint hook saves the step's model

    def __init__(self, model_path: str = '', scope: Union[str, Sequence[str]] = ''):
        self.model_path = model_path
        self.scope = scope
        self.structures: List[PrunableStructure] = []
        self.compressed = False
        self._rewrap_pending = False

    # ---------------------------------------------------------------------- finding
    def _pruned_model(self, runner) -> nn.Module:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        try:
            return model.get_submodule(self.model_path) if self.model_path else model
        except AttributeError as error:
            raise ValueError(f"{type(self).__name__}: the runner's model "
                             f"({type(model).__name__}) has no submodule '{self.model_path}' "
                             '(model_path)') from error

    def before_run(self, runner) -> None:
        self._check_runner(runner)
        model = self._pruned_model(runner)
        scopes = [self.scope] if isinstance(self.scope, str) else list(self.scope)
        self.structures = []
        for scope in scopes:
            try:
                searched = model.get_submodule(scope) if scope else model
            except AttributeError as error:
                raise ValueError(f"{type(self).__name__}: {type(model).__name__} has no "
                                 f"submodule '{scope}' (scope)") from error
            prefix = '.'.join(p for p in (self.model_path, scope) if p)
            self.structures += find_structures(searched, prefix)

    def _check_runner(self, runner) -> None:
        """Refuse, before any training, what compression would break later: a model wrapper
        other than DDP around the whole model (FSDP's flattened parameters, DeepSpeed, MMEngine's
        per-submodule MMSeparateDistributedDataParallel cannot be rebuilt), and
        ``EMAHook`` (its averaged copy of the model keeps the dense shapes)."""
        name = type(self).__name__
        if is_model_wrapper(runner.model) and (
                not isinstance(runner.model, DistributedDataParallel)
                or isinstance(runner.model, MMSeparateDistributedDataParallel)):
            raise ValueError(
                f'{name}: the model wrapper {type(runner.model).__name__} is not supported; '
                'after compression the hook rebuilds a DistributedDataParallel wrapper '
                "(MMEngine's MMDistributedDataParallel, "
                'mmdistill.AnyDeviceDistributedDataParallel) around the narrower model, and no '
                'other. Remove model_wrapper_cfg from the config or name one of those.')
        ema = [type(h).__name__ for h in getattr(runner, 'hooks', []) if isinstance(h, EMAHook)]
        if ema:
            raise ValueError(
                f'{name} cannot run beside {ema[0]}: its averaged copy of the model keeps the '
                'dense shapes when the model is compressed. Remove the EMA hook from '
                'custom_hooks for the pruning run; add it to a run that fine-tunes the pruned '
                'model (e.g. from the exported config).')

    # ------------------------------------------------------------------ compression
    def _compress(self, keeps: List[torch.Tensor], runner) -> None:
        """Keep the units ``keeps[i]`` of structure ``i``; slice optimizer state alike; under
        DDP, wrap the compressed model anew."""
        optimizer = getattr(getattr(runner, 'optim_wrapper', None), 'optimizer', None)
        if not isinstance(optimizer, torch.optim.Optimizer):
            optimizer = None  # no optimizer built (testing) or several (not supported)
        for structure, keep in zip(self.structures, keeps):
            structure.detach_mask()
            structure.prune(keep, optimizer)
        self.compressed = True
        self._rewrap_pending = isinstance(getattr(runner, 'model', None), DistributedDataParallel)
        print_log('compressed: ' + self.describe_widths(), logger='current')
        narrowest = [s.path for s in self.structures if s.num_units == 1]
        if narrowest:
            print_log(f'{type(self).__name__}: the budget left these layers one unit wide '
                      f'(one head dim in every head, or one MLP unit): {narrowest}. Such a '
                      'layer keeps almost nothing of what it computed; if accuracy suffers, '
                      'lower the budget.', logger='current', level=logging.WARNING)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        """Under DDP, the first step after compression gets a new wrapper."""
        if self._rewrap_pending:
            self._rewrap_pending = False
            _rewrap(runner)

    def describe_widths(self) -> str:
        """Per-layer widths, e.g. ``attn head dims [64, 48, ...]; mlp hidden [1536, ...]``."""
        parts = []
        for kind, what in (('attn', 'attn head dims'), ('mlp', 'mlp hidden units')):
            widths = [s.num_units for s in self.structures if s.kind == kind]
            if widths:
                parts.append(f'{what} {widths}')
        return '; '.join(parts)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Before MMEngine loads a checkpoint's weights: give the model the masks of a
        mid-search checkpoint (they then load as buffers), or narrow it to the weights of a
        checkpoint written after compression."""
        state = _model_state(checkpoint)
        if any(f'{s.path}.{MASK}' in state for s in self.structures):
            for structure in self.structures:
                structure.attach_mask()
            return
        widths = [structure.width_in(state) for structure in self.structures]
        if None in widths:
            return  # not a checkpoint of this model (e.g. a backbone-only one)
        if any(w < s.num_units for w, s in zip(widths, self.structures)):
            self._compress([torch.arange(w) for w in widths], runner)


@HOOKS.register_module()
class UPopHook(StructuredPruningHook):
    """UPop: unified and progressive pruning of attention head dims and MLP units.

    Shi et al., "UPop: Unified and Progressive Pruning for Compressing Vision-Language
    Transformers", ICML 2023. Each attention layer gets a mask ``α ∈ R^{head_dim}`` shared by its
    heads (scaling q, k and v) and each MLP a mask over its hidden units, all initialised to 1 and
    never trained. During the first ``T`` steps (the search) their gradients accumulate:

    .. math::
        s \\leftarrow s + \\nabla_\\alpha \\big(L_{task} + w_{attn}\\lVert\\alpha_{attn}\\rVert_1
        + w_{mlp}\\lVert\\alpha_{mlp}\\rVert_1\\big)

    (the sparsity terms reach only ``α``, which no optimizer updates, so their whole effect is
    ``w·sign(α)`` added to ``s``; the model's loss stays the task loss; in several processes the
    gradient is the processes' mean, as DDP averages the reference's mask parameters). After
    the 0-based steps ``interval, 2·interval, ...`` and ``T − 1`` (the reference's steps), the
    scores are standardised per kind, ranked across all layers together, and the top-ranked
    units that make up the share ``π(t) = p·sin(π(t+1)/(2T))`` of the cost are selected
    (:func:`~.search.select_units`; the unit at the threshold is kept, as is each layer's
    lowest-ranked attention and MLP unit, so a layer is never removed whole); their masks are
    set to ``1 − π(t)/p``, all others to 1. At ``t = T − 1`` the selected masks reach 0 and the
    model is compressed (weights sliced in place, optimizer state sliced alike, a DDP wrapper
    rebuilt), a checkpoint is saved through the runner's ``CheckpointHook`` at the next point a
    run can resume from exactly (the next step, or the next epoch for an epoch-based checkpoint
    hook), and the rest of the run retrains the compressed model.

    Args:
        budget: ``p``, the share of the attention and MLP cost to remove, in (0, 1).
        search_epochs: the search length ``T`` in epochs (of the train dataloader), or
        search_iters: ``T`` in iterations (give exactly one of the two).
        interval: steps between two mask updates (the reference: 800 for DeiT, 50 for BLIP).
        sparsity_weights: ``w`` per kind (the reference: attn 4.8e-3, mlp 2e-4). They cannot
            change the ranking: ``w·sign(α)`` is the same for every unit of a kind while the
            masks are positive, and standardisation per kind removes it.
        unit_costs: the cost of one unit per kind, e.g. ``dict(attn=36, mlp=1)`` (the
            reference's CLIP script: 12 heads × q, k, v); ``None`` (default): each structure's
            true parameter count (for DeiT-S 9234 and 769, the reference's DeiT weights).
        update_steps: ``'reference'`` (default) or ``'one_earlier'`` (steps ``interval − 1,
            2·interval − 1, ...``: this project's earlier rule).
        boundary: ``'reference'`` (default: the unit at the threshold is kept) or
            ``'nearest'`` (this project's earlier rule, one unit more); see
            :func:`~.search.select_units`.
        model_path, scope: see :class:`StructuredPruningHook`.
    """

    def __init__(self,
                 budget: float,
                 search_epochs: Optional[int] = None,
                 search_iters: Optional[int] = None,
                 interval: int = 100,
                 sparsity_weights: Optional[Dict[str, float]] = None,
                 unit_costs: Optional[Dict[str, float]] = None,
                 update_steps: str = 'reference',
                 boundary: str = 'reference',
                 model_path: str = '',
                 scope: Union[str, Sequence[str]] = ''):
        super().__init__(model_path, scope)
        self.budget = check_budget(budget)
        if update_steps not in UPDATE_STEPS:
            raise ValueError(f"UPopHook: update_steps must be one of {UPDATE_STEPS}, got "
                             f"'{update_steps}'")
        if boundary not in BOUNDARIES:
            raise ValueError(f"UPopHook: boundary must be one of {BOUNDARIES}, got "
                             f"'{boundary}'")
        if unit_costs is not None and (set(unit_costs) != {'attn', 'mlp'} or
                                       not all(c > 0 for c in unit_costs.values())):
            raise ValueError(f'UPopHook: unit_costs gives a positive cost to each of the kinds '
                             f'attn and mlp (e.g. dict(attn=36, mlp=1)), got {unit_costs}')
        self.update_steps = update_steps
        self.boundary = boundary
        self.unit_costs = unit_costs
        self._save_pending = False
        if (search_epochs is None) == (search_iters is None):
            raise ValueError('UPopHook needs exactly one of search_epochs and search_iters, '
                             f'got search_epochs={search_epochs}, search_iters={search_iters}')
        length = search_epochs if search_epochs is not None else search_iters
        if length < 1 or interval < 1:
            raise ValueError(f'the search length and interval must be >= 1, got {length} and '
                             f'{interval}')
        self.search_epochs = search_epochs
        self.search_iters = search_iters
        self.interval = interval
        self.sparsity_weights = dict(attn=4.8e-3, mlp=2e-4)
        unknown = set(sparsity_weights or {}) - set(self.sparsity_weights)
        if unknown:
            raise ValueError(f'sparsity_weights takes the kinds attn and mlp, got {unknown}')
        self.sparsity_weights.update(sparsity_weights or {})

    def cost_of(self, structure: PrunableStructure) -> float:
        """The cost of one unit of ``structure`` in the ranking (``unit_costs``)."""
        if self.unit_costs is None:
            return structure.unit_cost
        return self.unit_costs[structure.kind]

    def before_run(self, runner) -> None:
        super().before_run(runner)
        total = sum(s.num_units * self.cost_of(s) for s in self.structures)
        floor = sum(self.cost_of(s) for s in self.structures)  # one unit left in each
        if self.budget * total > total - floor:
            raise ValueError(
                f'budget {self.budget} would remove whole attention or MLP layers: keeping one '
                f'unit in each of the {len(self.structures)} structures leaves at most '
                f'{1 - floor / total:.4f} of the cost to remove. Use a lower budget.')

    def before_train(self, runner) -> None:
        """After any checkpoint is loaded: masks on, unless the model is compressed already
        (a mid-search checkpoint put them on already)."""
        if not self.compressed:
            for structure in self.structures:
                structure.attach_mask()
        if self.search_iters is None:
            self.search_iters = self.search_epochs * len(runner.train_dataloader)
        if self.search_iters > runner.max_iters:
            raise ValueError(f'the search ({self.search_iters} iterations) is longer than the '
                             f'run ({runner.max_iters}); lengthen train_cfg or shorten the '
                             'search')

    def is_update_step(self, step: int) -> bool:
        """Whether the masks are updated after the 0-based search step ``step``."""
        if step == self.search_iters - 1:
            return True
        if self.update_steps == 'reference':
            return step > 0 and step % self.interval == 0
        return (step + 1) % self.interval == 0

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        step = runner.iter  # 0-based: the step that just ran
        if self.compressed or step >= self.search_iters:
            return
        self._accumulate()
        if self.is_update_step(step):
            share = self.update_masks(step)
            runner.message_hub.update_scalar('train/upop_pruned_share', share)
            if step == self.search_iters - 1:
                self._compress([torch.nonzero(s.mask).flatten().cpu() for s in self.structures],
                               runner)
                self._save_pending = True

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        super().before_train_iter(runner, batch_idx, data_batch)
        if not self._save_pending:
            return
        checkpoint_hook = self._checkpoint_hook(runner)
        if checkpoint_hook is None or batch_idx == 0 or not checkpoint_hook.by_epoch:
            self._save_after_compression(runner, checkpoint_hook)

    def after_train(self, runner) -> None:
        if self._save_pending:  # the search ended with the run
            self._save_after_compression(runner, self._checkpoint_hook(runner))

    def _checkpoint_hook(self, runner) -> Optional[CheckpointHook]:
        return next((h for h in runner.hooks if isinstance(h, CheckpointHook)), None)

    def _save_after_compression(self, runner, checkpoint_hook: Optional[CheckpointHook]) -> None:
        """Save the compressed model through the runner's checkpoint hook (whatever subclass
        it is: it does the writing), named and stamped as that hook names a checkpoint of this
        point, unless it saved this point itself. Called once everything of the compression
        step (and epoch, for an epoch-based hook) has run, so that a resume from it continues
        exactly."""
        self._save_pending = False
        if checkpoint_hook is None:
            print_log('UPopHook: no CheckpointHook in the runner, so no checkpoint is saved '
                      'after compression', logger='current', level=logging.WARNING)
            return
        step = runner.epoch if checkpoint_hook.by_epoch else runner.iter
        path = checkpoint_hook.file_backend.join_path(
            checkpoint_hook.out_dir, checkpoint_hook.filename_tmpl.format(step))
        if getattr(checkpoint_hook, 'last_ckpt', None) == path:
            return  # the checkpoint hook saved this point already
        checkpoint_hook._save_checkpoint_with_step(
            runner, step, meta=dict(epoch=runner.epoch, iter=runner.iter))
        print_log(f'UPopHook: the compressed model saved as {path}', logger='current')

    def _accumulate(self) -> None:
        """Add each mask's gradient (the mean over the processes) and ``w·sign(α)`` to its
        score, and clear the gradient."""
        with torch.no_grad():
            grads = torch.cat([s.mask.grad if s.mask.grad is not None else
                               torch.zeros_like(s.mask) for s in self.structures])
            all_reduce(grads, op='mean')  # nothing to do in one process
            for structure, grad in zip(self.structures,
                                       grads.split([s.num_units for s in self.structures])):
                mask, score = structure.mask, structure.score
                score.add_(grad)
                mask.grad = None
                score.add_(self.sparsity_weights[structure.kind] * torch.sign(mask))

    def update_masks(self, step: int) -> float:
        """Select the units to prune at ``step`` and set the masks; return the pruned share of
        the cost."""
        share = progressive_share(step, self.search_iters, self.budget)
        costs = [self.cost_of(s) for s in self.structures]
        chosen = select_units([s.score for s in self.structures],
                              [s.kind for s in self.structures], costs, share, self.boundary)
        value = 1 - share / self.budget
        with torch.no_grad():
            for structure, selected in zip(self.structures, chosen):
                structure.mask.copy_(torch.where(selected.to(structure.mask.device),
                                                 torch.full_like(structure.mask, value),
                                                 torch.ones_like(structure.mask)))
        pruned = sum(int(c.sum()) * cost for c, cost in zip(chosen, costs))
        total = sum(s.num_units * cost for s, cost in zip(self.structures, costs))
        return pruned / total


class MagnitudePruningHook(StructuredPruningHook):
    """What both one-shot magnitude baselines share: before the first step, each structure
    keeps the :meth:`kept_counts` units of largest magnitude (:func:`unit_magnitudes`) and
    loses the others; training then continues on the compressed model."""

    def kept_counts(self) -> List[int]:
        """How many units each structure keeps."""
        raise NotImplementedError

    def before_train(self, runner) -> None:
        if self.compressed:  # resumed after pruning
            return
        self._compress([largest_units(unit_magnitudes(structure), kept)
                        for structure, kept in zip(self.structures, self.kept_counts())],
                       runner)


@HOOKS.register_module()
class UniformMagnitudePruningHook(MagnitudePruningHook):
    """Baseline: before the first step, each attention layer and each MLP loses
    ``round(p · n)`` of its ``n`` units, those whose weights (all rows and columns a unit owns)
    have the smallest L1 norm; training then continues on the compressed model.

    Args:
        budget: ``p``, in (0, 1).
        model_path, scope: see :class:`StructuredPruningHook`.
    """

    def __init__(self, budget: float, model_path: str = '',
                 scope: Union[str, Sequence[str]] = ''):
        super().__init__(model_path, scope)
        self.budget = check_budget(budget)

    def kept_counts(self) -> List[int]:
        return [s.num_units - uniform_removed(s, self.budget) for s in self.structures]


@HOOKS.register_module()
class MagnitudePruningToWidthsHook(MagnitudePruningHook):
    """Baseline that separates "which widths" from "which units": before the first step, each
    structure keeps as many units as it has in the checkpoint ``widths_from`` (a pruned run of
    the same model: UPop's widths at some seed and budget), those of largest weight L1 norm
    in the model being trained (not the units that run kept); training then continues on the
    compressed model.

    Args:
        widths_from: a checkpoint of the same model, pruned.
        model_path, scope: see :class:`StructuredPruningHook`.
    """

    def __init__(self, widths_from: str, model_path: str = '',
                 scope: Union[str, Sequence[str]] = ''):
        super().__init__(model_path, scope)
        self.widths_from = widths_from

    def kept_counts(self) -> List[int]:
        state = _model_state(load_checkpoint_file(self.widths_from, map_location='cpu',
                                                  role='widths_from'))
        widths = [structure.width_in(state) for structure in self.structures]
        wrong = [(s.path, w) for s, w in zip(self.structures, widths)
                 if w is None or not 0 < w <= s.num_units]
        if wrong:
            raise ValueError(f'MagnitudePruningToWidthsHook: {self.widths_from} is not a '
                             'pruned checkpoint of this model; (structure, width there): '
                             f'{wrong}')
        return widths


@HOOKS.register_module()
class ProgressiveMagnitudePruningHook(UPopHook):
    """Baseline: uniform magnitude pruning on UPop's progressive schedule.

    At UPop's mask-update steps ``t`` of a search of ``T`` steps (:meth:`UPopHook.is_update_step`)
    each attention layer and each MLP of ``n`` units has ``round(π(t) · n)`` of them masked to
    0, ``π(t) = p·sin(π(t+1)/(2T))`` (:func:`~.search.progressive_share`): those of smallest
    weight L1 norm at that step (:func:`unit_magnitudes`), a unit masked at an earlier update
    staying masked; all others keep mask 1. At ``t = T − 1``, ``π = p``: the widths of
    :class:`UniformMagnitudePruningHook`, and the model is compressed, saved and retrained as
    by :class:`UPopHook`. No gradient scores are kept.

    Args:
        budget, search_epochs, search_iters, interval, update_steps, model_path, scope: see
            :class:`UPopHook`.
    """

    def __init__(self,
                 budget: float,
                 search_epochs: Optional[int] = None,
                 search_iters: Optional[int] = None,
                 interval: int = 100,
                 update_steps: str = 'reference',
                 model_path: str = '',
                 scope: Union[str, Sequence[str]] = ''):
        super().__init__(budget, search_epochs=search_epochs, search_iters=search_iters,
                         interval=interval, update_steps=update_steps, model_path=model_path,
                         scope=scope)

    def before_run(self, runner) -> None:
        StructuredPruningHook.before_run(self, runner)
        for structure in self.structures:
            uniform_removed(structure, self.budget)  # no structure may lose all its units

    def _accumulate(self) -> None:
        """No scores: the masks' gradients are dropped."""
        for structure in self.structures:
            structure.mask.grad = None

    def update_masks(self, step: int) -> float:
        """Mask the ``round(π(step)·n)`` units of smallest magnitude of each structure (those
        masked already first); return the masked share of the parameters."""
        share = progressive_share(step, self.search_iters, self.budget)
        with torch.no_grad():
            for structure in self.structures:
                mask = structure.mask
                magnitude = unit_magnitudes(structure).masked_fill(mask.cpu() == 0, -math.inf)
                kept = largest_units(magnitude, structure.num_units -
                                     uniform_removed(structure, share))
                mask.zero_()
                mask[kept.to(mask.device)] = 1
        pruned = sum(int((s.mask == 0).sum()) * s.unit_cost for s in self.structures)
        return pruned / sum(s.num_units * s.unit_cost for s in self.structures)


def _rewrap(runner) -> None:
    """Wrap the runner's compressed model in a new DDP wrapper, as the Runner wrapped it.

    The old wrapper's reducer holds each parameter's gradient accumulator with the dense shape
    (torch would fail at the next backward with "Function TBackward0 returned an invalid
    gradient") and buckets sized for the dense parameters: it is dropped before the new one is
    built. Called before a step, never right after one: the step's loss, still referenced by
    its outputs, keeps the old accumulators alive, and a wrapper built then would take them
    over. The new wrapper checks that every process has the same
    shapes and broadcasts rank 0's weights (equal already: every process compressed the same
    units). The parameters stay the same objects, so the optimizer keeps them.
    """
    old = runner.model
    module = old.module
    runner.model = module
    del old
    gc.collect()
    runner.model = runner.wrap_model(copy.deepcopy(runner.cfg.get('model_wrapper_cfg')), module)


def _unit_magnitude(param: torch.Tensor, dim: int, index: torch.Tensor, n: int) -> torch.Tensor:
    """L1 norm of the slices of ``param`` along ``dim`` that belong to each of ``n`` units;
    ``index`` lists the slices in unit-major-last order (slice ``i`` belongs to unit ``i % n``)."""
    slices = param.detach().abs().index_select(dim, index.to(param.device))
    per_slice = slices.sum(dim=1 - dim) if slices.dim() == 2 else slices
    return per_slice.reshape(-1, n).sum(0).cpu()


def unit_magnitudes(structure: PrunableStructure) -> torch.Tensor:
    """The L1 norm of all the weights each unit of ``structure`` owns (every row and column of
    every parameter it cuts, biases included), one value per unit, on the CPU."""
    n = structure.num_units
    return sum(_unit_magnitude(param, dim, index, n)
               for param, dim, index in structure.cuts(torch.arange(n)))


def largest_units(magnitude: torch.Tensor, count: int) -> torch.Tensor:
    """The indices of the ``count`` largest entries of ``magnitude``, in increasing order."""
    return torch.sort(torch.topk(magnitude, count).indices).values


def uniform_removed(structure: PrunableStructure, share: float) -> int:
    """``round(share · n)``: how many of its ``n`` units a structure loses under uniform
    pruning of ``share``; an error if that is all of them."""
    n = structure.num_units
    removed = int(round(share * n))
    if removed >= n:
        raise ValueError(f'budget {share} removes all {n} units of {structure.path}; use a '
                         'lower budget')
    return removed


def _model_state(checkpoint: dict) -> Dict[str, torch.Tensor]:
    """A checkpoint's weights, named as in the unwrapped model (no DDP ``module.`` prefix)."""
    state = checkpoint.get('state_dict', checkpoint)
    return {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
