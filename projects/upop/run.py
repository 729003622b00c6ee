"""UPop evidence on the digits: a dense model vs UPop vs three magnitude-pruning baselines.

    PYTHONPATH=. python projects/upop/run.py [--model {deit,dual-encoder}] [--budgets 0.3 0.5]
                                             [--seeds N] [--work-dir DIR] [--record]

The model is the small DeiT (``--model deit``, table ``digits``) or crossget's image–text dual
encoder (``--model dual-encoder``, table ``dual_encoder``: both towers pruned, ranked
together; the dense model is the one crossget's ``run.py`` trains, read from a run either
project finished). First the dense model (``configs/deit-digits.py``; for the dual encoder
``dense_dual_encoder`` of ``projects/crossget/run.py``) at every seed, and a check that each
seed converged: a seed more than 1 point of top-1 below the best seed is named in a warning,
and every dense record says how far below the best it ended (``converged``). Then per seed,
from its dense checkpoint: the dense model again, as long as the pruned ones train (a control:
``dense, retrained``), and at each budget (the configs named are the DeiT's; the dual
encoder's are ``configs/*-dual-encoder-digits.py``)

- ``upop``: UPop (search → compress → retrain in one run, ``configs/upop-deit-digits.py``);
- ``magnitude``: uniform magnitude pruning at step 0 (``configs/magnitude-deit-digits.py``);
- ``progressive magnitude``: the same units removed progressively on UPop's schedule and
  update steps during its search (``configs/progressive-magnitude-deit-digits.py``);
- ``magnitude, upop widths``: the widths UPop chose at that seed and budget, each filled with
  the units of largest magnitude of the dense model, then trained as ``magnitude``
  (``configs/magnitude-upop-widths-deit-digits.py``): "which widths" apart from "which units";

each exported with :func:`export_pruned` and loaded back with ``mmpretrain.get_model``. Then,
on one thread: parameters, FLOPs (MACs, attention included), images/s at batch 32 (models
interleaved, medians; seed 0's models), top-1 (mean ± std over seeds, paired per-seed
differences against ``dense, retrained``, and UPop minus each baseline), where the forward
time goes (``forward_ms``: attention, matrix products, the rest, from PyTorch's profiler) and
the per-layer widths each pruned run has; the results go to ``<work-dir>/results.json`` (with
``--record`` also ``results/<table>.json``, see docs/evidence.md).
"""
import argparse
import os.path as osp
from typing import Optional

import torch
from mmengine.config import Config
from mmengine.runner import Runner
from mmpretrain import get_model

import mmdistill  # noqa: F401
from mmdistill.engine import safe_checkpoint_loading
from benchmarks.evidence import (Results, add_recording_arguments, publish, train_run,
                                 unconverged_seeds)
from benchmarks.digits.run import write_digits
from projects.crossget.run import CLIP, DUAL_ENCODER_EPOCHS, dense_dual_encoder
from projects.upop.benchmark import measure, time_by_op
from projects.upop.upop import export_pruned

HERE = osp.dirname(osp.abspath(__file__))
MODELS = {  # --model: the pruning runs' configs; the dense model is trained by ``train_dense``
    'deit': {
        'dense': 'deit-digits.py',
        'upop': 'upop-deit-digits.py',
        'magnitude': 'magnitude-deit-digits.py',
        'progressive magnitude': 'progressive-magnitude-deit-digits.py',
        'magnitude, upop widths': 'magnitude-upop-widths-deit-digits.py',
    },
    'dual-encoder': {
        'upop': 'upop-dual-encoder-digits.py',
        'magnitude': 'magnitude-dual-encoder-digits.py',
        'progressive magnitude': 'progressive-magnitude-dual-encoder-digits.py',
        'magnitude, upop widths': 'magnitude-upop-widths-dual-encoder-digits.py',
    },
}
TABLES = {'deit': 'digits', 'dual-encoder': 'dual_encoder'}
WORK_DIRS = {'deit': 'work_dirs/upop', 'dual-encoder': 'work_dirs/upop_dual'}
BASELINES = ('magnitude', 'progressive magnitude', 'magnitude, upop widths')


def train(config: str, work_dir: str, data_root: str, seed: int,
          start_from: Optional[dict] = None, widths_from: Optional[dict] = None,
          **overrides) -> dict:
    """Train (from ``start_from``'s checkpoint: a run's ``checkpoint`` and ``fingerprint``;
    with the widths of ``widths_from``'s checkpoint for the pruning hook, when given) and
    validate once with :func:`~benchmarks.evidence.train_run` (a run of the same fingerprint is
    read from its work dir); return top-1 (``metric``), time, the checkpoint,
    the run's config and the per-layer widths it pruned to."""
    cfg = Config.fromfile(osp.join(HERE, 'configs', config))
    cfg.work_dir = work_dir
    cfg.merge_from_dict({
        'randomness.seed': seed,
        **({'load_from': start_from['checkpoint']} if start_from else {}),
        **({'custom_hooks.0.widths_from': widths_from['checkpoint']} if widths_from else {}),
        **overrides,
    })

    def widths(runner: Runner) -> dict:
        return dict(widths=next((h.describe_widths() for h in runner.hooks
                                 if hasattr(h, 'describe_widths')), ''))

    starts_from = [run for run in (start_from, widths_from) if run]
    return dict(train_run(cfg, 'accuracy/top1', data_root, HERE, starts_from, summarise=widths),
                config=osp.join(HERE, 'configs', config))


def add_runs(results: Results, runs: dict, cost: dict, converged: list) -> None:
    """Add each model's runs (seed by seed) to ``results``, with ``cost`` (``measure``'s
    numbers and the ``time_by_op`` split for seed 0's models; the retrained dense model costs
    what the dense one does) on the seed-0 records, and the convergence verdict of each
    seed's dense model on its dense record."""
    cost = {'dense, retrained': cost['dense'], **cost}
    for name, seeds in runs.items():
        for seed, run in enumerate(seeds):
            c = cost[name] if seed == 0 else {}
            more = dict(converged=converged[seed]) if name == 'dense' else {}
            results.add(name, seed, run['metric'], train_seconds=run['seconds'],
                        widths=run['widths'], **more, params=c.get('params'),
                        mmacs=c['flops'] / 1e6 if c else None,
                        images_per_s=c.get('images_per_s'), speedup=c.get('speedup'),
                        flops_reduction=c.get('flops_reduction'),
                        forward_ms=c.get('forward_ms'))


def convergence(dense: list) -> list:
    """For each seed's dense run, how far (points of top-1) below the best seed it ended and
    whether that is converged (:func:`~benchmarks.evidence.unconverged_seeds`); a warning names
    every seed that is not."""
    metrics = [run['metric'] for run in dense]
    best, unconverged = max(metrics), unconverged_seeds(metrics)
    verdicts = []
    for seed, metric in enumerate(metrics):
        below = best - metric
        verdicts.append(f"{'NO' if seed in unconverged else 'yes'}: {below:.2f} below the best "
                        f'seed ({best:.2f})')
        if seed in unconverged:
            print(f'WARNING: the dense model of seed {seed} ({metric:.2f} %) ended '
                  f'{below:.2f} points below the best seed ({best:.2f} %): not converged; '
                  'its rows compare pruning on an unconverged model', flush=True)
    return verdicts


DESCRIPTIONS = {
    'deit': ('Digits 32×32 (898 train / 899 val), small DeiT (patch 4, 4 layers, 64 dims, 4 '
             'heads, MLP 256), dense 80 epochs (5 of warm-up); each pruned run: 5 search + 15 '
             'retrain epochs from it.'),
    'dual-encoder': (
        "Digits 32×32 (898 train / 899 val), crossget's image–text dual encoder (image: ViT, "
        '6 layers, width 96, 3 heads of 32, MLP 384; text: 6 layers, width 64, 2 heads of 32, '
        f'MLP 256), dense {DUAL_ENCODER_EPOCHS} epochs from scratch (5 of warm-up, cosine '
        "decay: crossget's run.py dense_dual_encoder); each pruned run: 3 search + 7 retrain "
        "epochs from it, both towers ranked together; top-1: image->text among the ten "
        'prompts; MACs: one image and the ten prompts.'),
}


def pruning_results(model: str, budgets) -> Results:
    """The table's description: metric, baseline, compared models and cost columns."""
    return Results(
        table=TABLES[model], metric='top-1 (%)', precision=2, baseline='dense, retrained',
        compared=[f'{method} p={budget}' for budget in budgets
                  for method in ('upop', *BASELINES)],
        also_paired=[[f'upop p={budget}', f'{baseline} p={budget}'] for budget in budgets
                     for baseline in BASELINES],
        columns=[dict(field='params', header='params', format='{:,.0f}'),
                 dict(field='mmacs', header='MACs/image (M)', format='{:.2f}'),
                 dict(field='images_per_s', header='images/s', format='{:.0f}'),
                 dict(field='speedup', header='speed-up', format='{:.2f}×'),
                 dict(field='flops_reduction', header='FLOPs reduction', format='{:.2f}×')],
        description=(
            DESCRIPTIONS[model] + " Whether each dense seed ended within 1 point of the best: "
            "the dense records' converged field. Δ: the row minus the dense model retrained as "
            'long (same seed). Params, MACs, images/s (one thread, batch 32, models '
            "interleaved, medians), speed-up and FLOPs reduction: seed 0's models. Train time: "
            'the wall time of training, validation left out (records made before 2026-12-06: '
            'the whole run).'))


def train_dense(model: str, work_dir: str, data_root: str, seed: int) -> dict:
    """The dense model of ``seed``: the digits DeiT of ``configs/deit-digits.py``, or
    crossget's dual encoder as crossget's evidence trains it (the same fingerprint: a run
    either project trained is read, not trained again)."""
    if model == 'deit':
        return train(MODELS[model]['dense'], work_dir, data_root, seed)
    return dict(dense_dual_encoder(work_dir, data_root, DUAL_ENCODER_EPOCHS, seed),
                widths='', config=CLIP)


def compare_at_seed(model: str, seed: int, dense: dict, budgets, work_dir: str,
                    data_root: str) -> dict:
    """From the dense run ``dense`` of ``seed``: the retrained dense control, then at each
    budget UPop and each baseline (``magnitude, upop widths`` with the widths of UPop's run at
    that budget), each pruned model exported; return the runs by row name."""
    # control: the dense model trained as long again as the pruned ones, same schedule
    configs = MODELS[model]
    runs = {'dense, retrained': train(configs['upop'],
                                      osp.join(work_dir, f'dense-retrained_seed{seed}'),
                                      data_root, seed, dense, custom_hooks=[])}
    for budget in budgets:
        for method in ('upop', *BASELINES):
            run_dir = osp.join(work_dir, f"{method.replace(', ', '-').replace(' ', '-')}"
                                         f'_p{budget}_seed{seed}')
            options = ({'widths_from': runs[f'upop p={budget}']}
                       if method == 'magnitude, upop widths' else
                       {'custom_hooks.0.budget': budget})
            run = train(configs[method], run_dir, data_root, seed, dense, **options)
            run['exported'] = export_pruned(run['config'], run['checkpoint'],
                                            osp.join(run_dir, 'exported'))
            runs[f'{method} p={budget}'] = run
    return runs


def seed0_cost(runs: dict, rounds: int = 15) -> dict:
    """Cost and speed of seed 0's models (``measure``'s numbers and ``time_by_op``'s split as
    ``forward_ms``, by row name; the dense model first, the reference), each loaded back with
    mmpretrain's own API: the dense model from its training checkpoint (its message hub and
    optimiser state need mmdistill's safe loading where ``torch.load`` reads weights only, as
    torch >= 2.6 does by default), every pruned one from its export."""
    with safe_checkpoint_loading('load_from'):
        models = {'dense': get_model(runs['dense'][0]['config'],
                                     pretrained=runs['dense'][0]['checkpoint'])}
    for name, seeds in runs.items():
        if name not in ('dense', 'dense, retrained'):
            checkpoint, config = seeds[0]['exported']
            models[name] = get_model(config, pretrained=checkpoint)
    cost = measure(models, image_size=32, batch=32, rounds=rounds)
    for name, parts in time_by_op(models, image_size=32, batch=32).items():
        cost[name]['forward_ms'] = parts
    return cost


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', choices=sorted(MODELS), default='deit',
                        help="the digits DeiT, or crossget's image–text dual encoder")
    parser.add_argument('--budgets', type=float, nargs='+', default=[0.3, 0.5])
    parser.add_argument('--seeds', type=int, default=1)
    parser.add_argument('--work-dir', help=f'default: {WORK_DIRS}')
    add_recording_arguments(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)
    work_dir = args.work_dir or WORK_DIRS[args.model]
    results = pruning_results(args.model, args.budgets)
    results.start_run()

    data_root = osp.join(work_dir, 'data')
    if not osp.isdir(osp.join(data_root, 'val')):
        write_digits(data_root)
    runs = {'dense': [train_dense(args.model, osp.join(work_dir, f'dense_seed{seed}'),
                                  data_root, seed) for seed in range(args.seeds)]}
    converged = convergence(runs['dense'])
    for seed, dense in enumerate(runs['dense']):
        for name, run in compare_at_seed(args.model, seed, dense, args.budgets, work_dir,
                                         data_root).items():
            runs.setdefault(name, []).append(run)

    add_runs(results, runs, seed0_cost(runs), converged)
    print('\nPer-layer widths (seed by seed):')
    for name, seeds in runs.items():
        for seed, run in enumerate(seeds):
            if run['widths']:
                print(f'- {name}, seed {seed}: {run["widths"]}')
    publish(results, work_dir, HERE, args.record)


if __name__ == '__main__':
    main()
