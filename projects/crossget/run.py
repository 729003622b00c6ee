"""CrossGET's evidence on scikit-learn's digits, end to end (CPU, one thread).

    python projects/crossget/run.py [--seeds N] [--epochs N] [--finetune-epochs N]
                                    [--clip-epochs N] [--skip-clip]

1. writes the digits as projects/digits does (32×32 PNGs, half train, half validation);
2. per seed, trains the digits ViT (patch 4, 65 tokens) without merging, then for ToMe and
   CrossGET at each r schedule evaluates it off the shelf (the same weights, merging on) and
   after a short fine-tuning with merging on (the plain ViT gets the same extra epochs, as
   a control);
   (a seed's results are kept in ``<work-dir>/seed<N>/*.json`` and reused by later runs);
3. per seed, trains the CLIP-style dual encoder from scratch without merging, with CrossGET
   merging guided by the class token, and with cross guidance (cross tokens in both towers
   and the cross-token loss), and evaluates image->text top-1 among the ten prompts;
4. runs the speed benchmark (``benchmark.py``) on the trained ViT;
5. prints the tables (markdown) and writes them with the raw numbers to ``results.json``.
"""
import argparse
import importlib.util
import json
import os
import os.path as osp
import sys

import numpy as np
import torch
from mmengine.config import Config
from mmengine.runner import Runner

HERE = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(osp.dirname(HERE))
sys.path.insert(0, ROOT)
CONFIGS = osp.join(HERE, 'configs')

from projects.crossget import benchmark  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    'digits_run', osp.join(ROOT, 'projects', 'digits', 'run.py'))
digits_run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(digits_run)

VIT = osp.join(CONFIGS, 'vit-p4_digits.py')
MERGING_VIT = osp.join(CONFIGS, 'crossget_vit-p4_digits.py')
CLIP = osp.join(CONFIGS, 'clip_vit-p4_digits.py')
CLIP_VARIANTS = {
    'no merging': {},
    'CrossGET r4, class-token guided': {
        'model.token_merging': dict(r=4, matcher='crossget', cross_token=False)},
    'CrossGET r4, cross-guided (+ cross tokens, JS loss)': {
        'model.token_merging': dict(r=4, matcher='crossget', cross_token=True),
        'model.text_cross_token': True},
}
FINETUNE_LR = 2e-4


def data_options(data_root: str) -> dict:
    return {f'{split}_dataloader.dataset.data_root': data_root
            for split in ('train', 'val', 'test')}


def evaluate(config: str, work_dir: str, data_root: str, checkpoint: str, **overrides) -> float:
    """Top-1 of ``config`` with the weights of ``checkpoint``, on the validation half."""
    cfg = Config.fromfile(config)
    cfg.work_dir = work_dir
    cfg.load_from = checkpoint
    cfg.merge_from_dict({**data_options(data_root), **overrides})
    return Runner.from_cfg(cfg).val()['accuracy/top1']


def merging_overrides(merging: dict) -> dict:
    return {'model.r': merging['r'], 'model.matcher': merging['matcher']}


def cached(kind: str):
    """Keep a seed's results in ``<work_dir>/seed<N>/<kind>.json`` and reuse them when the
    script runs again (so that more seeds can be added later)."""
    def wrap(runs):
        def run_or_load(args, data_root: str, seed: int) -> dict:
            path = osp.join(args.work_dir, f'seed{seed}', f'{kind}.json')
            if osp.isfile(path):
                with open(path) as f:
                    return json.load(f)
            results = runs(args, data_root, seed)
            with open(path, 'w') as f:
                json.dump(results, f, indent=1)
            return results
        return run_or_load
    return wrap


@cached('classifier')
def classifier_runs(args, data_root: str, seed: int) -> dict:
    """Top-1 of every variant, off the shelf and fine-tuned, for one seed."""
    work = osp.join(args.work_dir, f'seed{seed}')
    base = digits_run.train(VIT, osp.join(work, 'vit'), data_root, args.epochs, seed)
    results = {}
    finetune = {'load_from': base['checkpoint'], 'optim_wrapper.optimizer.lr': FINETUNE_LR}
    for name, merging in benchmark.variants().items():
        config, overrides = (VIT, {}) if merging is None else (
            MERGING_VIT, merging_overrides(merging))
        tag = name.replace(' ', '_')
        off_the_shelf = evaluate(config, osp.join(work, f'eval_{tag}'), data_root,
                                 base['checkpoint'], **overrides)
        tuned = digits_run.train(config, osp.join(work, f'finetune_{tag}'), data_root,
                                 args.finetune_epochs, seed, **overrides, **finetune)
        results[name] = dict(off_the_shelf=off_the_shelf, finetuned=tuned['top1'])
        print(f'seed {seed} {name}: off the shelf {off_the_shelf:.2f}, fine-tuned '
              f'{tuned["top1"]:.2f}', flush=True)
    results['checkpoint'] = base['checkpoint']
    results['from_scratch'] = base['top1']
    return results


@cached('clip')
def clip_runs(args, data_root: str, seed: int) -> dict:
    work = osp.join(args.work_dir, f'seed{seed}')
    results = {}
    for name, overrides in CLIP_VARIANTS.items():
        run = digits_run.train(CLIP, osp.join(work, 'clip_' + name.split(',')[0].replace(
            ' ', '_') + str(len(overrides))), data_root, args.clip_epochs, seed, **overrides)
        results[name] = dict(top1=run['top1'], ms_per_iter=run['ms_per_iter'])
        print(f'seed {seed} dual encoder, {name}: image->text top-1 {run["top1"]:.2f}',
              flush=True)
    return results


def per_seed_and_delta(runs: list, name: str, key: str, baseline: str) -> str:
    """``a / b / ...`` (one value per seed) and the mean difference to ``baseline``."""
    values = [run[name][key] for run in runs]
    text = ' / '.join(f'{v:.2f}' for v in values)
    if name == baseline:
        return text + ' | –'
    delta = np.mean([run[name][key] - run[baseline][key] for run in runs])
    return f'{text} | {delta:+.2f}'


def classifier_table(per_seed: list, flops: dict, speed: dict) -> list:
    lines = ['| variant | GFLOPs | images/s (batch 32, 1 thread) | top-1 off the shelf (%), '
             'per seed | mean Δ | top-1 fine-tuned (%), per seed | mean Δ |',
             '| --- | --- | --- | --- | --- | --- | --- |']
    for name in benchmark.variants():
        lines.append(
            f'| {name} | {flops[name]:.4f} | {speed[name]:.1f} | '
            f'{per_seed_and_delta(per_seed, name, "off_the_shelf", "no merging")} | '
            f'{per_seed_and_delta(per_seed, name, "finetuned", "no merging")} |')
    return lines


def clip_table(per_seed: list) -> list:
    lines = ['| dual encoder | image->text top-1 (%), per seed | mean Δ | ms/iteration |',
             '| --- | --- | --- | --- |']
    for name in CLIP_VARIANTS:
        lines.append(f'| {name} | {per_seed_and_delta(per_seed, name, "top1", "no merging")} | '
                     f'{np.mean([s[name]["ms_per_iter"] for s in per_seed]):.0f} |')
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seeds', type=int, default=1, help='seeds 0..N-1')
    parser.add_argument('--epochs', type=int, default=30, help='ViT from scratch')
    parser.add_argument('--finetune-epochs', type=int, default=5)
    parser.add_argument('--clip-epochs', type=int, default=30)
    parser.add_argument('--skip-clip', action='store_true')
    parser.add_argument('--repeats', type=int, default=15, help='benchmark rounds')
    parser.add_argument('--work-dir', default='work_dirs/crossget')
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault('OMP_NUM_THREADS', '1')

    data_root = osp.join(args.work_dir, 'data')
    if not osp.isdir(osp.join(data_root, 'val')):
        digits_run.write_digits(data_root)
    per_seed, clip = [], []
    for seed in range(args.seeds):
        per_seed.append(classifier_runs(args, data_root, seed))
        if not args.skip_clip:
            clip.append(clip_runs(args, data_root, seed))

    checkpoint = per_seed[0]['checkpoint']
    models = {name: benchmark.build_classifier(merging, checkpoint=checkpoint)
              for name, merging in benchmark.variants().items()}
    flops = {name: benchmark.gflops(model) for name, model in models.items()}
    speed = benchmark.images_per_second(models, 32, args.repeats)
    shares = {name: benchmark.merging_share(model, 32, args.repeats)
              for name, model in models.items() if name != 'no merging'}

    from_scratch = ' / '.join(f'{run["from_scratch"]:.2f}' for run in per_seed)
    print(f'\nDigits ViT (patch 4, 65 tokens, 6 layers, width 96): {args.epochs} epochs from '
          f'scratch, fine-tuning {args.finetune_epochs} epochs at lr {FINETUNE_LR}, '
          f'{args.seeds} seed(s); ViT from scratch top-1 per seed: {from_scratch}')
    tables = classifier_table(per_seed, flops, speed)
    print('\n'.join(tables))
    print('\nSpeed (benchmark.py, the seed-0 weights):')
    tables += [''] + benchmark.print_table(flops, speed, shares,
                                           benchmark.relative_gains(flops, speed), 32)
    if clip:
        print(f'\nDual encoder, {args.clip_epochs} epochs from scratch, {args.seeds} seed(s):')
        lines = clip_table(clip)
        print('\n'.join(lines))
        tables += [''] + lines
    with open(osp.join(args.work_dir, 'results.json'), 'w') as f:
        json.dump(dict(args=vars(args), classifier=per_seed, clip=clip, gflops=flops,
                       images_per_second=speed, merging_share=shares, tables=tables), f,
                  indent=1)


if __name__ == '__main__':
    main()
