"""Hooks that prune an mmpretrain transformer inside one ``tools/train.py`` run.

- :class:`UPopHook`: UPop's search (masks, accumulated mask gradients, the progressive sine
  schedule), then compression, then training goes on with the compressed model (retraining).
- :class:`UniformMagnitudePruningHook`: the baseline; every layer loses the same share of its
  units, those of smallest weight magnitude, before the first step.

Both resume from any checkpoint of their run: mid-search checkpoints carry the masks and their
accumulated gradients as buffers; a checkpoint written after compression has narrower weights,
and the model is narrowed to them before they are loaded (``after_load_checkpoint``).
"""
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from torch import nn

from mmdistill.registry import HOOKS
from .search import check_budget, progressive_share, select_units
from mmdistill.pruning.structures import MASK, PrunableStructure, find_structures


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

    # ------------------------------------------------------------------ compression
    def _compress(self, keeps: List[torch.Tensor], runner) -> None:
        """Keep the units ``keeps[i]`` of structure ``i``; slice optimizer state alike."""
        optimizer = getattr(getattr(runner, 'optim_wrapper', None), 'optimizer', None)
        if not isinstance(optimizer, torch.optim.Optimizer):
            optimizer = None  # no optimizer built (testing) or several (not supported)
        for structure, keep in zip(self.structures, keeps):
            structure.detach_mask()
            structure.prune(keep, optimizer)
        self.compressed = True
        print_log('compressed: ' + self.describe_widths(), logger='current')

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
        state = checkpoint.get('state_dict', checkpoint)
        state = {k[len('module.'):] if k.startswith('module.') else k: v
                 for k, v in state.items()}
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
    ``w·sign(α)`` added to ``s``; the model's loss stays the task loss). Every ``interval`` steps
    and at step ``T − 1``, the scores are standardised per kind, ranked across all layers together,
    and the top-ranked units that make up the share ``π(t) = p·sin(π(t+1)/(2T))`` of the
    parameter cost are selected (:func:`~.search.select_units`; each layer's attention and MLP
    keep their lowest-ranked unit, so a layer is never removed whole); their masks are set to
    ``1 − π(t)/p``, all others to 1. At ``t = T − 1`` the selected masks reach 0 and the model is
    compressed (weights sliced in place, optimizer state sliced alike); the rest of the run
    retrains the compressed model.

    Args:
        budget: ``p``, the share of the attention and MLP parameters to remove, in (0, 1).
        search_epochs: the search length ``T`` in epochs (of the train dataloader), or
        search_iters: ``T`` in iterations (give exactly one of the two).
        interval: steps between two mask updates (the reference: 800 for DeiT, 50 for BLIP).
        sparsity_weights: ``w`` per kind (the reference: attn 4.8e-3, mlp 2e-4).
        model_path, scope: see :class:`StructuredPruningHook`.
    """

    def __init__(self,
                 budget: float,
                 search_epochs: Optional[int] = None,
                 search_iters: Optional[int] = None,
                 interval: int = 100,
                 sparsity_weights: Optional[Dict[str, float]] = None,
                 model_path: str = '',
                 scope: Union[str, Sequence[str]] = ''):
        super().__init__(model_path, scope)
        self.budget = check_budget(budget)
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

    def before_run(self, runner) -> None:
        super().before_run(runner)
        total = sum(s.num_units * s.unit_cost for s in self.structures)
        floor = sum(s.unit_cost for s in self.structures)  # one unit left in each
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

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        step = runner.iter  # 0-based: the step that just ran
        if self.compressed or step >= self.search_iters:
            return
        self._accumulate()
        last = step == self.search_iters - 1
        if (step + 1) % self.interval == 0 or last:
            share = self.update_masks(step)
            runner.message_hub.update_scalar('train/upop_pruned_share', share)
            if last:
                self._compress([torch.nonzero(s.mask).flatten().cpu() for s in self.structures],
                               runner)

    def _accumulate(self) -> None:
        with torch.no_grad():
            for structure in self.structures:
                mask, score = structure.mask, structure.score
                if mask.grad is not None:
                    score.add_(mask.grad)
                    mask.grad = None
                score.add_(self.sparsity_weights[structure.kind] * torch.sign(mask))

    def update_masks(self, step: int) -> float:
        """Select the units to prune at ``step`` and set the masks; return the pruned share of
        the cost."""
        share = progressive_share(step, self.search_iters, self.budget)
        chosen = select_units([s.score for s in self.structures],
                              [s.kind for s in self.structures],
                              [s.unit_cost for s in self.structures], share)
        value = 1 - share / self.budget
        with torch.no_grad():
            for structure, selected in zip(self.structures, chosen):
                structure.mask.copy_(torch.where(selected.to(structure.mask.device),
                                                 torch.full_like(structure.mask, value),
                                                 torch.ones_like(structure.mask)))
        pruned = sum(int(c.sum()) * s.unit_cost for c, s in zip(chosen, self.structures))
        total = sum(s.num_units * s.unit_cost for s in self.structures)
        return pruned / total


@HOOKS.register_module()
class UniformMagnitudePruningHook(StructuredPruningHook):
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

    def before_train(self, runner) -> None:
        if self.compressed:  # resumed after pruning
            return
        keeps = []
        for structure in self.structures:
            n = structure.num_units
            removed = int(round(self.budget * n))
            if removed >= n:
                raise ValueError(f'budget {self.budget} removes all {n} units of '
                                 f'{structure.path}; use a lower budget')
            magnitude = sum(_unit_magnitude(param, dim, index, n)
                            for param, dim, index in structure.cuts(torch.arange(n)))
            keeps.append(torch.sort(torch.topk(magnitude, n - removed).indices).values)
        self._compress(keeps, runner)


def _unit_magnitude(param: torch.Tensor, dim: int, index: torch.Tensor, n: int) -> torch.Tensor:
    """L1 norm of the slices of ``param`` along ``dim`` that belong to each of ``n`` units;
    ``index`` lists the slices in unit-major-last order (slice ``i`` belongs to unit ``i % n``)."""
    slices = param.detach().abs().index_select(dim, index.to(param.device))
    per_slice = slices.sum(dim=1 - dim) if slices.dim() == 2 else slices
    return per_slice.reshape(-1, n).sum(0).cpu()
