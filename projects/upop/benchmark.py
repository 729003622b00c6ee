"""Parameters, FLOPs and measured speed of dense and pruned models; speed-up vs FLOPs reduction.

    PYTHONPATH=. python projects/upop/benchmark.py DENSE_CFG DENSE_CKPT \
        [NAME=PRUNED_CFG:PRUNED_CKPT ...] [--batch 32] [--rounds 15] [--by-op]

Each model runs ``model(images, mode='tensor')`` on a batch of ``--batch`` images in eval mode,
without gradients, on one thread. The models take turns in interleaved rounds
(``mmdistill.benchmarking.timing``: rotating order, so a change of machine load hits all alike);
each round times ``--repeats`` forward passes per model. Images/s comes from the median time;
speed-up is ``dense time / model time`` in each round, its median; FLOPs reduction is
``dense FLOPs / model FLOPs``; their ratio says how much of the FLOPs reduction the CPU turns
into speed. ``--by-op`` adds where each model's forward time goes (attention, matrix products,
the rest), from PyTorch's profiler.
"""
import argparse
import statistics
from typing import Dict

import torch
from mmpretrain import get_model
from torch import nn

from mmdistill.apis.complexity import count_flops
from mmdistill.benchmarking.timing import Timing, time_rounds


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def time_models(models: Dict[str, nn.Module], images: torch.Tensor, rounds: int = 15,
                repeats: int = 3, warmup: int = 3) -> Timing:
    """Seconds per forward pass of each model in eval mode without gradients, the models in
    interleaved rounds (:func:`mmdistill.benchmarking.timing.time_rounds`: rotating order,
    wall and CPU time, denormals flushed)."""
    for model in models.values():
        model.eval()
    with torch.no_grad():
        return time_rounds({name: (lambda model=model: model(images, mode='tensor'))
                            for name, model in models.items()}, rounds, warmup, repeats)


def seeded_batch(image_size: int, batch: int) -> torch.Tensor:
    """The batch every measurement here runs on: ``batch`` random images, seed 0."""
    torch.manual_seed(0)
    return torch.randn(batch, 3, image_size, image_size)


def measure(models: Dict[str, nn.Module], image_size: int = 32, batch: int = 32,
            rounds: int = 15, repeats: int = 3) -> Dict[str, dict]:
    """Parameters, MACs per image, images/s (median wall time) and the speed-up over the first
    model (the reference), paired per round: its median and range, and its median in CPU
    time."""
    images = seeded_batch(image_size, batch)
    timing = time_models(models, images, rounds, repeats)
    reference = next(iter(models))
    results = {}
    for name, model in models.items():
        speedup = timing.ratio(reference, [name])
        results[name] = dict(params=count_params(model),
                             flops=count_flops(model, images[:1]),
                             images_per_s=batch / statistics.median(timing.times[name].wall),
                             speedup=speedup.median, speedup_low=speedup.low,
                             speedup_high=speedup.high,
                             cpu_speedup=timing.ratio(reference, [name], clock='cpu').median)
    for result in results.values():
        result['flops_reduction'] = results[reference]['flops'] / result['flops']
    return results


def time_by_op(models: Dict[str, nn.Module], image_size: int = 32, batch: int = 32,
               repeats: int = 20) -> Dict[str, Dict[str, float]]:
    """Milliseconds per forward pass spent in attention (``scaled_dot_product_attention``),
    in matrix products (``addmm``/``mm``/``bmm``) and in everything else, from PyTorch's
    profiler (self time), on the same seeded batch as :func:`measure`."""
    from torch.profiler import ProfilerActivity, profile
    images = seeded_batch(image_size, batch)
    split = {}
    with torch.no_grad():
        for name, model in models.items():
            model.eval()
            model(images, mode='tensor')
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(repeats):
                    model(images, mode='tensor')
            parts = dict(attention=0.0, matmul=0.0, other=0.0)
            for event in prof.key_averages():
                part = ('attention' if 'scaled_dot_product' in event.key else
                        'matmul' if event.key in ('aten::addmm', 'aten::mm', 'aten::bmm') else
                        'other')
                parts[part] += event.self_cpu_time_total / 1000 / repeats
            split[name] = parts
    return split


def print_table(results: Dict[str, dict]) -> None:
    print('| model | params | MACs/image | images/s | FLOPs reduction | speed-up | '
          'speed-up / FLOPs reduction |')
    print('| --- | --- | --- | --- | --- | --- | --- |')
    for name, r in results.items():
        print(f'| {name} | {r["params"]:,} | {r["flops"] / 1e6:.2f} M | '
              f'{r["images_per_s"]:.1f} | {r["flops_reduction"]:.2f}× | {r["speedup"]:.2f}× | '
              f'{r["speedup"] / r["flops_reduction"]:.2f} |')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('dense_config')
    parser.add_argument('dense_checkpoint')
    parser.add_argument('pruned', nargs='*', help='NAME=CONFIG:CHECKPOINT of exported models')
    parser.add_argument('--image-size', type=int, default=32)
    parser.add_argument('--batch', type=int, default=32)
    parser.add_argument('--rounds', type=int, default=15)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--by-op', action='store_true',
                        help='also print where the time goes (PyTorch profiler)')
    args = parser.parse_args()
    torch.set_num_threads(1)
    models = {'dense': get_model(args.dense_config, pretrained=args.dense_checkpoint)}
    for spec in args.pruned:
        name, _, paths = spec.partition('=')
        config, _, checkpoint = paths.rpartition(':')
        models[name] = get_model(config, pretrained=checkpoint)
    print_table(measure(models, args.image_size, args.batch, args.rounds, args.repeats))
    if args.by_op:
        print('\n| model | attention (ms) | matrix products (ms) | other (ms) |')
        print('| --- | --- | --- | --- |')
        for name, parts in time_by_op(models, args.image_size, args.batch).items():
            print(f'| {name} | {parts["attention"]:.2f} | {parts["matmul"]:.2f} | '
                  f'{parts["other"]:.2f} |')


if __name__ == '__main__':
    main()
