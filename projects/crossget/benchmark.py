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

    python projects/crossget/benchmark.py --steps [--official-tome PATH/tome/merge.py]
        [--rounds 300] [--seeds 0 1 2] [--record]

times one merging step alone instead (what a layer adds between attention and MLP: the
metric from the attention's q and k, the matching, the weighted merge), on random tensors at
DeiT-S size (batch 8, 197 tokens, width 384, 6 heads; r 8 and 13) and at the digits ViT's
(``configs/vit-p4_digits.py``: its training batch, tokens, width and heads; r 4 and 8): CPU
time of the thread (``time.thread_time``, one torch thread; the machine is shared), all
variants in every round (their order rotating), each variant's time over the baseline's in
the same round, the median and the range of those ratios. The baseline is ToMe's own
``bipartite_soft_matching`` + ``merge_wavg`` when ``--official-tome`` points at ToMe's
``tome/merge.py`` (fetched, never part of this repository), else this project's ToMe step.
For CrossGET's full-width metric it also prints the time beyond the baseline's against the
time its extra similarity FLOPs predict (the full-width similarity matmul, timed in the same
rounds, scaled by the share of its FLOPs that ToMe's bipartite head-mean one does not do).
The table goes to ``results/merging_step_cpu.json`` with ``--record``.
"""
import argparse
import importlib.util
import math
import os.path as osp
import statistics
import sys
import time
from collections import defaultdict
from typing import Callable, Dict, List, Optional

import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope

from mmdistill.apis.complexity import count_flops
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


STEP_VARIANTS = {  # name: (matcher, metric)
    'ToMe': ('tome', 'head_mean'),
    'CrossGET, head-mean metric': ('crossget', 'head_mean'),
    'CrossGET, full-width metric': ('crossget', 'full'),
}


def step_sizes(config: str = BASE_CONFIG) -> Dict[str, dict]:
    """The layer sizes the merging step is timed at: DeiT-S and the digits ViT of ``config``
    (its training batch, tokens with the class token, width, heads)."""
    cfg = Config.fromfile(config)
    backbone = cfg.model.backbone
    tokens = (backbone.img_size // backbone.patch_size) ** 2 + 1
    return {
        'DeiT-S': dict(batch=8, tokens=197, width=384, heads=6, r=[8, 13]),
        'digits ViT': dict(batch=cfg.train_dataloader.batch_size, tokens=tokens,
                           width=backbone.arch.embed_dims, heads=backbone.arch.num_heads,
                           r=[4, 8]),
    }


def load_official_tome(path: str):
    """ToMe's ``tome/merge.py`` (facebookresearch/ToMe) loaded from ``path`` as a module."""
    spec = importlib.util.spec_from_file_location('official_tome_merge', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def similarity_flops(batch: int, tokens: int, width: int, heads: int, metric: str) -> int:
    """Multiply-accumulates of a step's similarity matmul: ToMe's bipartite one on the
    head-mean keys (A: the ⌈N/2⌉ even positions, B the rest), or CrossGET's complete graph on
    the N−1 mergeable tokens, the guide's query one more row, at the metric's width."""
    if metric == 'bipartite':
        return batch * math.ceil(tokens / 2) * (tokens // 2) * (width // heads)
    mergeable = tokens - 1
    channels = width if metric == 'full' else width // heads
    return batch * (mergeable + 1) * mergeable * channels


def step_functions(batch: int, tokens: int, width: int, heads: int, r: int,
                   official=None) -> Dict[str, Callable[[], object]]:
    """The timed calls on random tensors: each variant's merging step of one layer (metric
    from q and k as the attention gives them, matching, merge), ToMe's own step with
    ``official`` (its ``merge`` module), and the full-width similarity matmul alone."""
    from projects.crossget.crossget.token_merging import TokenMergingState
    qkv = torch.randn(batch, tokens, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
    query, key = qkv[0], qkv[1]  # B×H×N×d views of one qkv output, as in mmpretrain
    x, sizes = torch.randn(batch, tokens, width), torch.ones(batch, tokens, 1)

    def project_step(matcher: str, metric: str) -> Callable[[], object]:
        state = TokenMergingState([r], matcher, num_leading=1, cross_token=False,
                                  metric=metric)

        def step():
            state.sizes = sizes
            state.record(query, key)
            return state.merge(x, 0)
        return step

    functions = {}
    if official is not None:
        def official_step():
            merge, _ = official.bipartite_soft_matching(key.mean(dim=1), r, class_token=True)
            return official.merge_wavg(merge, x, sizes)
        functions['official ToMe'] = official_step
    for name, (matcher, metric) in STEP_VARIANTS.items():
        functions[name] = project_step(matcher, metric)
    unit = torch.nn.functional.normalize(
        torch.cat([key.transpose(1, 2).flatten(2)[:, 1:], query[:, :, 0].flatten(1)[:, None]],
                  dim=1), dim=-1)
    functions['full-width similarity matmul'] = lambda: unit @ unit[:, :-1].transpose(-1, -2)
    return functions


def cpu_times(functions: Dict[str, Callable[[], object]], rounds: int,
              warmup: int = 10) -> Dict[str, List[float]]:
    """Thread CPU seconds of each call, ``rounds`` rounds of every function, the order
    rotating from round to round (``warmup`` rounds first, not kept)."""
    names = list(functions)
    seconds = defaultdict(list)
    with torch.no_grad():
        for round_index in range(warmup + rounds):
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                start = time.thread_time()
                functions[name]()
                elapsed = time.thread_time() - start
                if round_index >= warmup:
                    seconds[name].append(elapsed)
    return dict(seconds)


def step_rows(seconds: Dict[str, List[float]], size: dict, baseline: str) -> Dict[str, dict]:
    """Per variant: median CPU µs, and its time over ``baseline``'s in the same round (median,
    min, max) and over this project's ToMe step's (median); for the full-width metric also
    the time beyond the baseline's, measured and predicted by the extra similarity FLOPs
    (median over rounds), and their ratio."""
    shape = dict(batch=size['batch'], tokens=size['tokens'], width=size['width'],
                 heads=size['heads'])
    full = similarity_flops(metric='full', **shape)
    extra_share = 1 - similarity_flops(metric='bipartite', **shape) / full
    matmul = seconds['full-width similarity matmul']
    rows = {}
    for name, times in seconds.items():
        if name == 'full-width similarity matmul':
            continue
        ratios = [t / b for t, b in zip(times, seconds[baseline])]
        row = dict(us=1e6 * statistics.median(times), ratio=statistics.median(ratios),
                   ratio_min=min(ratios), ratio_max=max(ratios))
        if baseline != 'ToMe':
            row['over_tome'] = statistics.median(
                [t / b for t, b in zip(times, seconds['ToMe'])])
        if name == 'CrossGET, full-width metric':
            measured = [t - b for t, b in zip(times, seconds[baseline])]
            predicted = [m * extra_share for m in matmul]
            row.update(extra_us=1e6 * statistics.median(measured),
                       predicted_us=1e6 * statistics.median(predicted),
                       extra_over_predicted=statistics.median(
                           [m / p for m, p in zip(measured, predicted)]))
        rows[name] = row
    return rows


def step_results(baseline: str) -> Results:
    """The merging-step table: one record per (size, r, variant) and measurement seed."""
    return Results(
        table='merging_step_cpu', metric=f'CPU time / {baseline} (median)', precision=2,
        columns=[dict(field='us', header='CPU µs (median)', format='{:.0f}'),
                 dict(field='ratio_min', header='ratio min', format='{:.2f}'),
                 dict(field='ratio_max', header='ratio max', format='{:.2f}'),
                 dict(field='over_tome', header="over this project's ToMe (median)",
                      format='{:.2f}'),
                 dict(field='extra_us', header=f'µs beyond {baseline}', format='{:.0f}'),
                 dict(field='predicted_us', header='µs the extra FLOPs predict',
                      format='{:.0f}'),
                 dict(field='extra_over_predicted', header='beyond / predicted',
                      format='{:.2f}')],
        description=(
            'One merging step (metric from q and k, matching, weighted merge) on random '
            'tensors, class token protected, one torch thread, thread CPU time; all variants '
            f'in every round, each over {baseline} in the same round: the median of those '
            'ratios (mean over the measurements when there are several), their min and max. '
            'Full-width metric: its time beyond the baseline against the time the extra '
            'similarity FLOPs predict (the full-width similarity matmul timed in the same '
            "rounds, times the share of its FLOPs ToMe's bipartite head-mean one does not "
            'do), medians over rounds.'))


def run_steps(args) -> None:
    """``--steps``: time the merging step at each size and r and publish the table."""
    official = load_official_tome(args.official_tome) if args.official_tome else None
    baseline = 'official ToMe' if official is not None else 'ToMe'
    results = step_results(baseline)
    results.start_run()
    for seed in args.seeds:
        for size_name, size in step_sizes(args.config).items():
            for r in size['r']:
                torch.manual_seed(seed)
                functions = step_functions(size['batch'], size['tokens'], size['width'],
                                           size['heads'], r, official)
                rows = step_rows(cpu_times(functions, args.rounds), size, baseline)
                shape = (f"{size_name} (B {size['batch']}, N {size['tokens']}, "
                         f"C {size['width']}, H {size['heads']}) r {r}")
                for name, row in rows.items():
                    results.add(f'{shape}: {name}', seed, row.pop('ratio'), **row)
    publish(results, args.work_dir, HERE, args.record)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--steps', action='store_true',
                        help='time the merging step alone (see the module docstring)')
    parser.add_argument('--official-tome', metavar='PATH',
                        help="ToMe's tome/merge.py, the --steps baseline (default: this "
                        "project's ToMe step)")
    parser.add_argument('--rounds', type=int, default=300, help='--steps: timed rounds')
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
    if args.steps:
        return run_steps(args)
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
