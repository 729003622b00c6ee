"""Speed of token merging on one CPU thread: images/s against FLOPs, and the matching's cost.

    python projects/crossget/benchmark.py [--batch 32] [--repeats 15] [--r 4 8]
        [--config CONFIG --image-size N] [--checkpoint CKPT] [--seeds 0 1 2]
        [--work-dir DIR] [--record]

For a ViT classifier config (default: the digits ViT, ``configs/vit-p4_digits.py``; e.g.
``mmpretrain::deit/deit-small_4xb256_in1k.py`` with ``--image-size 224``) without merging
and with ToMe and CrossGET at each constant r it prints, per configuration:

- GFLOPs (multiply-accumulates, attention included) of one image through the classifier;
- images/s at the batch size, inference, one thread; the configurations run interleaved
  (one batch of each in turn, ``--repeats`` rounds) and the median time counts;
- the measured gain in images/s next to the gain the FLOPs promise (``F₀/F − 1``), and
  their ratio;
- the share of the transformer layers' time spent choosing the tokens to merge (the matcher)
  and in the whole merging step (matcher + weighted averaging).

Each of ``--seeds`` builds the models with other random weights and measures again (one
record per variant and seed, so the table shows how far a measurement moves); the table goes
to ``<work-dir>/results.json`` and, with ``--record``, to
``results/speed_<config name>_<size>px.json`` (docs/evidence.md).
"""
import argparse
import os.path as osp
import statistics
import sys
import time
from collections import defaultdict
from typing import Dict, Optional

import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope

from mmdistill.apis.complexity import count_flops
from mmdistill.engine import safe_checkpoint_loading
from benchmarks.evidence import Results, add_recording_arguments, publish

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, osp.dirname(osp.dirname(HERE)))  # the repository root: projects.crossget
BASE_CONFIG = osp.join(HERE, 'configs', 'vit-p4_digits.py')
SCHEDULES = {'r4': 4, 'r8': 8}
MATCHER_NAMES = ('tome', 'crossget')


def variants(schedules: Dict[str, object] = SCHEDULES) -> Dict[str, Optional[dict]]:
    """Name -> token-merging arguments (``None``: no merging), in table order."""
    names = {'no merging': None}
    for schedule, r in schedules.items():
        for matcher in MATCHER_NAMES:
            names[f'{matcher} {schedule}'] = dict(r=r, matcher=matcher)
    return names


def build_classifier(merging: Optional[dict], config: str = BASE_CONFIG,
                     checkpoint: Optional[str] = None) -> torch.nn.Module:
    """The config's classifier, with token merging on when ``merging`` is given."""
    from mmengine.runner import load_checkpoint

    import projects.crossget.crossget  # noqa: F401  (registers token_merging_model)
    from mmdistill.utils import resolve_config_path
    cfg = Config.fromfile(resolve_config_path(config))
    model = cfg.model
    if merging is not None:
        model = dict(type='mmdistill.token_merging_model', model=model, **merging)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        built = MODELS.build(model)
    if checkpoint is not None:
        with safe_checkpoint_loading('checkpoint'):
            load_checkpoint(built, checkpoint, map_location='cpu', logger='silent')
    built.eval()
    return built


def gflops(model: torch.nn.Module, image_size: int = 32) -> float:
    """GMACs of ``model`` on one image, attention included (:mod:`mmdistill.apis.complexity`)."""
    return count_flops(model, torch.randn(1, 3, image_size, image_size)) / 1e9


@torch.no_grad()
def images_per_second(models: Dict[str, torch.nn.Module], batch: int, repeats: int,
                      image_size: int = 32) -> Dict[str, float]:
    """Median images/s of each model's ``tensor`` forward, the models run interleaved."""
    inputs = torch.randn(batch, 3, image_size, image_size)
    seconds = defaultdict(list)
    for round_index in range(repeats + 2):  # two warm-up rounds
        for name, model in models.items():
            start = time.perf_counter()
            model(inputs, mode='tensor')
            if round_index >= 2:
                seconds[name].append(time.perf_counter() - start)
    return {name: batch / statistics.median(times) for name, times in seconds.items()}


class _Stopwatch:
    """Sums the wall time of calls to a function."""

    def __init__(self, fn):
        self.fn, self.seconds = fn, 0.

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        result = self.fn(*args, **kwargs)
        self.seconds += time.perf_counter() - start
        return result


@torch.no_grad()
def merging_share(model: torch.nn.Module, batch: int, repeats: int,
                  image_size: int = 32) -> Dict[str, float]:
    """Shares of the transformer layers' time spent in the matcher and in the merging step
    (the matcher plus the weighted averaging), over ``repeats`` timed forward passes."""
    backbone = model.backbone
    state = backbone.token_merging
    matcher, merge = _Stopwatch(state.matcher), _Stopwatch(state.merge)
    state.matcher, state.merge = matcher, merge
    layers = _Stopwatch(None)
    started = []
    hooks = [backbone.layers[0].register_forward_pre_hook(
                 lambda *_: started.append(time.perf_counter())),
             backbone.layers[-1].register_forward_hook(
                 lambda *_: setattr(layers, 'seconds',
                                    layers.seconds + time.perf_counter() - started.pop()))]
    inputs = torch.randn(batch, 3, image_size, image_size)
    try:
        for round_index in range(repeats + 2):  # two warm-up rounds
            if round_index == 2:
                matcher.seconds = merge.seconds = layers.seconds = 0.
            model(inputs, mode='tensor')
    finally:
        state.matcher = matcher.fn
        del state.merge  # the class's own method again
        for hook in hooks:
            hook.remove()
    return dict(matcher=matcher.seconds / layers.seconds, merge=merge.seconds / layers.seconds)


def relative_gains(flops: Dict[str, float], speed: Dict[str, float],
                   baseline: str = 'no merging') -> Dict[str, tuple]:
    """Per variant: (FLOPs reduction, gain the FLOPs promise, measured gain, their ratio)."""
    rows = {}
    for name in flops:
        if name == baseline:
            continue
        promised = flops[baseline] / flops[name] - 1
        measured = speed[name] / speed[baseline] - 1
        rows[name] = (1 - flops[name] / flops[baseline], promised, measured,
                      measured / promised if promised > 0 else float('nan'))
    return rows


def measure(models: Dict[str, torch.nn.Module], batch: int = 32, repeats: int = 15,
            image_size: int = 32) -> Dict[str, dict]:
    """Per variant: GFLOPs, images/s (the variants interleaved) and, with merging on, the
    matcher's and the merging step's shares of the layers' time."""
    flops = {name: gflops(model, image_size) for name, model in models.items()}
    speed = images_per_second(models, batch, repeats, image_size)
    return {name: dict(gflops=flops[name], images_per_s=speed[name],
                       merging_share=(None if name == 'no merging' else
                                      merging_share(model, batch, repeats, image_size)))
            for name, model in models.items()}


def speed_results(config: str, image_size: int, batch: int,
                  schedules: Dict[str, object] = SCHEDULES) -> Results:
    """The speed table of a classifier config: images/s per variant (one record per weights
    seed), paired with the model without merging; FLOPs, gains and shares as columns."""
    stem = osp.splitext(osp.basename(config.split('::')[-1]))[0]
    return Results(
        table=f'speed_{stem}_{image_size}px', metric=f'images/s (batch {batch}, 1 thread)',
        precision=1, baseline='no merging', compared=list(variants(schedules))[1:],
        columns=[dict(field='gflops', header='GFLOPs', format='{:.4f}'),
                 dict(field='flops_reduction', header='FLOPs reduction', format='{:.1%}'),
                 dict(field='promised_gain', header='gain promised by FLOPs',
                      format='{:+.1%}'),
                 dict(field='measured_gain', header='measured gain', format='{:+.1%}'),
                 dict(field='measured_over_promised', header='measured / promised',
                      format='{:.0%}'),
                 dict(field='matcher_share', header='matcher share of layer time',
                      format='{:.1%}'),
                 dict(field='merge_share', header='merging step share', format='{:.1%}')],
        description=(
            f'`{config}` at {image_size}×{image_size}, random weights (one record per weights '
            f'seed; speed does not depend on them), inference, batch {batch}, one thread, the '
            'variants interleaved, median time over the rounds. Δ: images/s minus those of '
            'the model without merging, same seed. Gains: images/s over the unmerged '
            "model's, minus 1; promised: its FLOPs over the variant's, minus 1. Shares: of the "
            "transformer layers' time."))


def add_speed_runs(results: Results, seed: int, measured: Dict[str, dict]) -> None:
    """Add one measurement (``measure``'s output for the weights of ``seed``)."""
    flops = {name: m['gflops'] for name, m in measured.items()}
    speed = {name: m['images_per_s'] for name, m in measured.items()}
    gains = relative_gains(flops, speed)
    for name, m in measured.items():
        extra = dict(gflops=m['gflops'])
        if name in gains:
            reduction, promised, gain, ratio = gains[name]
            extra.update(flops_reduction=reduction, promised_gain=promised,
                         measured_gain=gain, measured_over_promised=ratio,
                         matcher_share=m['merging_share']['matcher'],
                         merge_share=m['merging_share']['merge'])
        results.add(name, seed, m['images_per_s'], **extra)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch', type=int, default=32)
    parser.add_argument('--repeats', type=int, default=15)
    parser.add_argument('--r', type=int, nargs='+', default=list(SCHEDULES.values()),
                        help='tokens merged per layer, one run per value')
    parser.add_argument('--config', default=BASE_CONFIG, help='a ViT classifier config')
    parser.add_argument('--image-size', type=int, default=32)
    parser.add_argument('--checkpoint', help='weights for the model (default: random)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0],
                        help='random weights (and inputs) per measurement, one record each')
    parser.add_argument('--work-dir', default='work_dirs/crossget_speed',
                        help='where results.json goes')
    add_recording_arguments(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)
    schedules = {f'r{r}': r for r in args.r}
    results = speed_results(args.config, args.image_size, args.batch, schedules)
    results.start_run()
    for seed in args.seeds:
        torch.manual_seed(seed)
        models = {name: build_classifier(merging, args.config, args.checkpoint)
                  for name, merging in variants(schedules).items()}
        measured = measure(models, args.batch, args.repeats, args.image_size)
        add_speed_runs(results, seed, measured)
        publish(results, args.work_dir, HERE, args.record, echo=False)
    publish(results, args.work_dir, HERE, args.record)


if __name__ == '__main__':
    main()
