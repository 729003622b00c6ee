"""Speed of token merging on one CPU thread: images/s against FLOPs, and the matching's cost.

    python projects/crossget/benchmark.py [--batch 32] [--repeats 15] [--r 4 8]
        [--config CONFIG --image-size N] [--checkpoint CKPT]

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
"""
import argparse
import os.path as osp
import statistics
import sys
import time
from collections import defaultdict
from typing import Dict, List, Optional

import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope

from mmdistill.apis.complexity import count_flops

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


def print_table(flops, speed, shares, rows, batch) -> List[str]:
    lines = [f'| variant | GFLOPs | FLOPs reduction | images/s (batch {batch}, 1 thread) | '
             'gain promised by FLOPs | measured gain | measured / promised | '
             'matcher share of layer time | merging step share |',
             '| --- | --- | --- | --- | --- | --- | --- | --- | --- |']
    for name in flops:
        if name in rows:
            reduction, promised, measured, ratio = rows[name]
            cells = (f'{100 * reduction:.1f} %', f'{100 * promised:+.1f} %',
                     f'{100 * measured:+.1f} %', f'{100 * ratio:.0f} %',
                     f'{100 * shares[name]["matcher"]:.1f} %',
                     f'{100 * shares[name]["merge"]:.1f} %')
        else:
            cells = ('–', ) * 6
        lines.append(f'| {name} | {flops[name]:.4f} | {cells[0]} | {speed[name]:.1f} | '
                     + ' | '.join(cells[1:]) + ' |')
    print('\n'.join(lines), flush=True)
    return lines


def run_benchmark(batch: int = 32, repeats: int = 15, checkpoint: Optional[str] = None,
                  config: str = BASE_CONFIG, image_size: int = 32,
                  schedules: Dict[str, object] = SCHEDULES):
    torch.set_num_threads(1)
    models = {name: build_classifier(merging, config, checkpoint)
              for name, merging in variants(schedules).items()}
    flops = {name: gflops(model, image_size) for name, model in models.items()}
    speed = images_per_second(models, batch, repeats, image_size)
    shares = {name: merging_share(model, batch, repeats, image_size)
              for name, model in models.items() if name != 'no merging'}
    return print_table(flops, speed, shares, relative_gains(flops, speed), batch)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch', type=int, default=32)
    parser.add_argument('--repeats', type=int, default=15)
    parser.add_argument('--r', type=int, nargs='+', default=list(SCHEDULES.values()),
                        help='tokens merged per layer, one run per value')
    parser.add_argument('--config', default=BASE_CONFIG, help='a ViT classifier config')
    parser.add_argument('--image-size', type=int, default=32)
    parser.add_argument('--checkpoint', help='weights for the model (default: random)')
    args = parser.parse_args()
    run_benchmark(args.batch, args.repeats, args.checkpoint, args.config, args.image_size,
                  {f'r{r}': r for r in args.r})


if __name__ == '__main__':
    main()
