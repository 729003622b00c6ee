"""Time a distillation step against its floor: the student's own step plus the teacher's forward.

    python tools/analysis/benchmark_overhead.py CONFIG[@BxHxW] [CONFIG[@BxHxW] ...]
        [--batch-size 2] [--input-size 224 224] [--warmup 5] [--iters 20] [--threads N]
        [--data synthetic|train] [--teacher-checkpoint PATH] [--cfg-options k=v ...]
        [--teacher-dtypes float32 bfloat16 ...] [--json FILE] [--seeds 0 1 2]
        [--record TABLE [--work-dir work_dirs/TABLE]]

For each config: the median milliseconds of (a) the student's training step alone, (b) the
teacher's forward pass as the distiller runs it (no_grad, stopped after its deepest tap) and
(c) the distillation step, timed in interleaved rounds (mmdistill/benchmarking/timing.py:
models initialised as the Runner does, steps at learning rate 0, denormals flushed, wall and
CPU time); floor = a + b, ratio = the median over rounds of c / floor (with its range and its
value in CPU time), overhead = ratio - 1; the load average before and after; and the leaf
modules of the teacher that (b) ran and of the student that (c) ran. A config may
carry its own batch and input size, e.g. ``configs/kd/x.py@2x256x256``; others use
--batch-size and --input-size. The teacher is not loaded unless --teacher-checkpoint is given
(its weights do not change the timings). The table gives the precision the teacher runs in
(the config's ``model.teacher.dtype``); ``--teacher-dtypes float32 bfloat16`` times each config
with each teacher precision in turn and gives each row's distillation step against the float32
teacher's floor too: ``c / f32 floor = (c / a) / (floor_f32 / a_f32)``, each run's times taken
relative to its own student step (the same network in both runs), so that a change of machine
load between the runs cancels out. Below 1, distillation costs less than a float32 teacher's
floor.

``--seeds`` measures each config once per seed (other random weights and inputs), so that the
spread of a ratio on a shared machine shows. Before the first config and after the last, the
machine's own spread is measured (``identical_work_spread``: one fixed matrix product timed as
the three steps are; the max/min of its ratio, whose true value is 1): a row's
``rounds max/min`` near it is the machine's, not the step's.

``--record TABLE`` also saves the numbers as an evidence table (one record per config and
seed: the ratio, the three times, the modules that ran; ``benchmarks.evidence``) to
``<work-dir>/results.json`` and to ``benchmarks/cost/results/TABLE.json``, which a README block
renders (docs/evidence.md); a second command recording into the same table adds its configs to
it. The run's provenance keeps the machine's own spread.
"""
import argparse
import json
import os.path as osp
import re
import sys
from typing import List, Optional

import torch
from mmengine.config import DictAction

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if __package__ in (None, ''):  # run as a file: the repository's packages are importable
    sys.path.insert(0, ROOT)

from mmdistill.apis import benchmark_config
from mmdistill.benchmarking.timing import identical_work_spread
from benchmarks.evidence import Results, publish

SIZE_SUFFIX = re.compile(r'^(?P<config>.+)@(?P<batch>\d+)x(?P<height>\d+)x(?P<width>\d+)$')
COLUMNS = ('config', 'input', 'teacher dtype', 'student ms', 'teacher ms', 'distill ms',
           'floor ms', 'ratio [range]', 'cpu ratio', 'overhead', 'c / f32 floor', 'load',
           'teacher ran', 'student ran')
TEACHER_DTYPES = ('float32', 'bfloat16', 'float16')
RECORDS = osp.join(ROOT, 'benchmarks', 'cost')  # --record TABLE: RECORDS/results/TABLE.json


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('configs', nargs='+', metavar='CONFIG[@BxHxW]',
                        help='distillation configs, each optionally with batch x height x width')
    parser.add_argument('--batch-size', type=int, default=2)
    parser.add_argument('--input-size', type=int, nargs=2, default=(224, 224),
                        metavar=('H', 'W'))
    parser.add_argument('--warmup', type=int, default=5, help='untimed rounds first (at least 2)')
    parser.add_argument('--iters', type=int, default=20,
                        help='timed rounds (each runs the three steps once)')
    parser.add_argument('--threads', type=int, help='torch.set_num_threads (default: torch\'s)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0],
                        help='measure each config once per seed (random weights and inputs)')
    parser.add_argument('--data', choices=('synthetic', 'train'), default='synthetic',
                        help="random images and labels, or the first batch of the config's "
                        'train_dataloader (its data must exist; --input-size is then unused)')
    parser.add_argument('--teacher-checkpoint',
                        help='load the teacher from this checkpoint (one config only)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries of every config, key=value')
    parser.add_argument('--teacher-dtypes', nargs='+', choices=TEACHER_DTYPES,
                        help='time each config with its teacher in each of these precisions '
                        '(model.teacher.dtype); float32 first, to compare against its floor')
    parser.add_argument('--json', help='also write the numbers to this JSON file')
    parser.add_argument('--record', metavar='TABLE',
                        help='also save an evidence table to <work-dir>/results.json and '
                        'benchmarks/cost/results/TABLE.json (rendered in a README)')
    parser.add_argument('--work-dir',
                        help='where --record writes results.json (default: work_dirs/TABLE, '
                        'so that commands recording other tables do not meet)')
    args = parser.parse_args()
    if args.work_dir is None:
        args.work_dir = osp.join('work_dirs', args.record or 'benchmark_overhead')
    if args.teacher_checkpoint and len(args.configs) > 1:
        parser.error('--teacher-checkpoint fits one teacher: give one config with it')
    return args


def split_config(spec: str, batch_size: int, input_size) -> tuple:
    """``'x.py@2x256x192'`` -> ``('x.py', 2, (256, 192))``; without a suffix, the defaults."""
    match = SIZE_SUFFIX.match(spec)
    if match is None:
        return spec, batch_size, tuple(input_size)
    return (match['config'], int(match['batch']),
            (int(match['height']), int(match['width'])))


def versus_float32_floor(result, float32_result) -> Optional[float]:
    """The distillation step of ``result`` against the float32 teacher's floor, both relative
    to the student step of their own run; ``None`` without a float32 run."""
    if float32_result is None:
        return None
    float32_floor = float32_result.floor_ms / float32_result.student_step_ms
    return result.distill_step_ms / result.student_step_ms / float32_floor


def table_row(config: str, result, versus_float32: Optional[float]) -> tuple:
    teacher = result.teacher_modules
    versus_float32 = f'{versus_float32:.3f}' if versus_float32 is not None else '-'
    spread, cpu = result.ratio_spread, result.cpu_ratio_spread
    return (config, 'x'.join(map(str, result.input_shape)), result.teacher_dtype,
            f'{result.student_step_ms:.1f}',
            f'{result.teacher_forward_ms:.1f}', f'{result.distill_step_ms:.1f}',
            f'{result.floor_ms:.1f}',
            f'{result.ratio:.3f} [{spread.low:.3f}-{spread.high:.3f}]',
            f'{cpu.median:.3f}', f'{result.overhead_pct:+.1f}%', versus_float32,
            f'{result.load_start:.2f}-{result.load_end:.2f}',
            str(teacher) if teacher else 'no teacher', str(result.student_modules))


def print_table(rows) -> None:
    widths = [max(len(row[i]) for row in (COLUMNS, *rows)) for i in range(len(COLUMNS))]
    for row in (COLUMNS, ['-' * w for w in widths], *rows):
        print('  '.join(cell.ljust(w) for cell, w in zip(row, widths)))


def overhead_results(table: str, dtypes: List[Optional[str]], warmup: int, iters: int) -> Results:
    """The evidence table of a run: c / (a + b) per config (and teacher precision) and seed."""
    columns = [dict(field='student_ms', header='student step a (ms)', format='{:.1f}'),
               dict(field='teacher_ms', header='teacher forward b (ms)', format='{:.1f}'),
               dict(field='distill_ms', header='distillation step c (ms)', format='{:.1f}'),
               dict(field='cpu_ratio', header='c / (a + b), CPU time', format='{:.2f}'),
               dict(field='round_spread', header='rounds max/min', format='{:.2f}')]
    if len(dtypes) > 1:
        columns.append(dict(field='versus_float32_floor', header='c / float32 floor',
                            format='{:.3f}'))
    return Results(
        table=table, metric='c / (a + b)', precision=2, columns=columns,
        description=(
            f'{iters} interleaved rounds after {warmup} untimed ones, random weights '
            '(initialised as the Runner does) and inputs, steps at learning rate 0, denormals '
            'flushed (one record per seed): the student\'s own training step (a), the '
            "teacher's forward pass as the distiller runs it (b) and the distillation step "
            '(c), median wall milliseconds; the ratio c / (a + b) is the median of the '
            'per-round ratios (1 when distilling costs exactly its floor), beside it the same '
            'in process CPU time and the max/min of the per-round ratios (above 1.15: a noisy '
            'row). Each row is a config at its input (batch × channels × height × width).'))


def modules_run(usage) -> str:
    """``'132/153 to neck.fpn_convs.4.conv'``: the leaf modules that ran, the last of them."""
    return 'none' if usage is None else f'{usage} to {usage.last}'


def add_record(evidence: Results, config: str, seed: int, result,
               versus_float32: Optional[float], several_dtypes: bool) -> None:
    """One config's measurement at ``seed``, named by the config's file name, its input and,
    when several are timed, the teacher's precision."""
    name = f'{osp.splitext(osp.basename(config))[0]} @ ' + '×'.join(map(str, result.input_shape))
    if several_dtypes:
        name += f', teacher {result.teacher_dtype}'
    evidence.add(name, seed, result.ratio, student_ms=result.student_step_ms,
                 teacher_ms=result.teacher_forward_ms, distill_ms=result.distill_step_ms,
                 versus_float32_floor=versus_float32,
                 cpu_ratio=result.cpu_ratio_spread.median,
                 round_spread=result.ratio_spread.max_over_min,
                 load=[result.load_start, result.load_end],
                 modules=f'teacher {modules_run(result.teacher_modules)}; '
                         f'student {modules_run(result.student_modules)}')


def describe_modules(owner: str, usage) -> str:
    parts = ', '.join(f'{part} {ran}/{total}' for part, (ran, total) in usage.parts.items())
    return f'  {owner} ran {usage.ran}/{usage.total} leaf modules, last {usage.last} ({parts})'


def time_config(args, spec: str, seed: int, dtypes: List[Optional[str]]):
    """Time one config at ``seed`` with its teacher in each of ``dtypes``; yield the config
    path, its batch size, each result and that result against the float32 teacher's floor."""
    config, batch_size, input_size = split_config(spec, args.batch_size, args.input_size)
    float32_result = None
    for dtype in dtypes:
        options = dict(args.cfg_options or {})
        if dtype is not None:
            options['model.teacher.dtype'] = dtype
        result = benchmark_config(
            config, batch_size, input_size, data=args.data, cfg_options=options or None,
            teacher_checkpoint=args.teacher_checkpoint, warmup=args.warmup,
            iters=args.iters, seed=seed)
        if result.teacher_dtype == 'float32':
            float32_result = result
        yield config, batch_size, result, versus_float32_floor(result, float32_result)


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtypes = sorted(args.teacher_dtypes, key=TEACHER_DTYPES.index) if args.teacher_dtypes \
        else [None]
    results, records = [], []
    evidence = overhead_results(args.record, dtypes, args.warmup, args.iters) \
        if args.record else None
    run = evidence.start_run() if evidence is not None else None
    machine_spreads = [identical_work_spread(rounds=args.iters).max_over_min]
    for seed in args.seeds:
        for spec in args.configs:
            for config, batch_size, result, versus_float32 in time_config(args, spec, seed,
                                                                          dtypes):
                results.append((config.split('/')[-1], result, versus_float32))
                records.append(dict(config=config, batch_size=batch_size, data=args.data,
                                    warmup=args.warmup, iters=args.iters, seed=seed,
                                    threads=torch.get_num_threads(), **result.to_dict(),
                                    versus_float32_floor=versus_float32))
                if evidence is not None:
                    add_record(evidence, config, seed, result, versus_float32,
                               several_dtypes=len(dtypes) > 1)
    machine_spreads.append(identical_work_spread(rounds=args.iters).max_over_min)
    print()
    print_table([table_row(*row) for row in results])
    print('the machine\'s own spread (identical matrix products timed as the three steps; '
          'rounds max/min before and after): '
          + ', '.join(f'{spread:.2f}' for spread in machine_spreads))
    for name, result, _ in results:
        print(f'{name}:')
        if result.teacher_modules:
            print(describe_modules('teacher', result.teacher_modules))
        print(describe_modules('student', result.student_modules))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(records, f, indent=2)
        print(f'numbers written to {args.json}')
    if evidence is not None:
        evidence.runs[run]['identical_work_spread'] = machine_spreads
        publish(evidence, args.work_dir, RECORDS, record=True)


if __name__ == '__main__':
    main()
