"""The projects' run.py scripts turn their runs into benchmarks.evidence records: checked on
made-up runs against hand-computed table rows (the runs themselves take an hour each)."""
from conftest import project_script

from benchmarks.evidence import load_results, render_details, render_paired_table, render_table


def test_upop_records_cost_on_seed_0_and_pairs_with_the_retrained_dense_model(capsys):
    upop_run = project_script('upop')
    runs = {name: [dict(metric=top1, seconds=10.0 * (seed + 1), widths=f'{name} {seed}')
                   for seed, top1 in enumerate(values)]
            for name, values in {'dense': [90.0, 89.5], 'dense, retrained': [92.0, 84.0],
                                 'upop p=0.5': [91.0, 86.0],
                                 'magnitude p=0.5': [90.0, 80.0],
                                 'progressive magnitude p=0.5': [89.0, 84.0],
                                 'magnitude, upop widths p=0.5': [92.0, 83.0]}.items()}
    cost = {name: dict(params=params, flops=2.5e6, images_per_s=1000.4, speedup=1.5,
                       flops_reduction=2.0,
                       forward_ms=dict(attention=params / 1000, matmul=1.25, other=2.0))
            for name, params in [('dense', 1234), ('upop p=0.5', 600),
                                 ('magnitude p=0.5', 610), ('progressive magnitude p=0.5', 610),
                                 ('magnitude, upop widths p=0.5', 600)]}
    results = upop_run.pruning_results('deit', [0.5])
    assert results.table == 'digits'
    upop_run.add_runs(results, runs, cost, upop_run.convergence(runs['dense']))
    assert 'WARNING' not in capsys.readouterr().out
    rows = render_table(results).splitlines()
    # upop - retrained: -1, +2 (mean 0.5, std 3/√2 = 2.12); cost from seed 0 only
    assert rows[4] == ('| upop p=0.5 | 2 | 88.50 ± 3.54 | 91.00, 86.00 | +0.50 ± 2.12 | '
                       '-1.00, +2.00 | 1/2 | 600 | 2.50 | 1000 | 1.50× | 2.00× | 15.0 |')
    # the retrained dense model costs what the dense one does
    assert rows[3].startswith('| dense, retrained | 2 | 88.00 ± 5.66 | 92.00, 84.00 |  |  |'
                              '  | 1,234 |')
    assert results.of('upop p=0.5')[1].extra['widths'] == 'upop p=0.5 1'
    # where the forward time goes: seed 0's models only, the retrained dense one as the dense
    profile = render_details(results, 'forward_ms').splitlines()
    assert profile[2:6] == ['| dense | 0 | attention 1.23 matmul 1.25 other 2 |',
                            '| dense, retrained | 0 | attention 1.23 matmul 1.25 other 2 |',
                            '| upop p=0.5 | 0 | attention 0.6 matmul 1.25 other 2 |',
                            '| magnitude p=0.5 | 0 | attention 0.61 matmul 1.25 other 2 |']
    # UPop against each baseline at the same budget and seed: 91 − 90, 86 − 80; 91 − 89,
    # 86 − 84; 91 − 92, 86 − 83
    assert render_paired_table(results).splitlines()[2:] == [
        '| upop p=0.5 − magnitude p=0.5 | 2 | +3.50 ± 3.54 | +1.00, +6.00 | 2/2 |',
        '| upop p=0.5 − progressive magnitude p=0.5 | 2 | +2.00 ± 0.00 | +2.00, +2.00 | 2/2 |',
        '| upop p=0.5 − magnitude, upop widths p=0.5 | 2 | +1.00 ± 2.83 | -1.00, +3.00 | 1/2 |']
    # each seed's dense model: within 1 point of the best seed, on its dense record only
    assert render_details(results, 'converged').splitlines()[2:] == [
        '| dense | 0 | yes: 0.00 below the best seed (90.00) |',
        '| dense | 1 | yes: 0.50 below the best seed (90.00) |']


def test_upop_warns_about_a_dense_seed_more_than_a_point_below_the_best(capsys):
    upop_run = project_script('upop')
    verdicts = upop_run.convergence([dict(metric=95.0), dict(metric=66.18), dict(metric=94.0)])
    assert verdicts == ['yes: 0.00 below the best seed (95.00)',
                        'NO: 28.82 below the best seed (95.00)',
                        'yes: 1.00 below the best seed (95.00)']
    printed = capsys.readouterr().out
    assert printed.count('WARNING') == 1
    assert 'seed 1 (66.18 %) ended 28.82 points below the best seed (95.00 %)' in printed


def crossget_classifier_table(from_scratch: list):
    """The CrossGET classifier table of made-up runs, one seed per ``from_scratch`` top-1:
    row i of the table loses i points off the shelf at seed 0 (one more per seed) and i / 2
    fine-tuned."""
    crossget_run = project_script('crossget')
    names = list(crossget_run.variants())
    per_seed = [{name: dict(off_the_shelf=90.0 - i - seed, finetuned=91.0 - i / 2)
                 for i, name in enumerate(names)} for seed in range(len(from_scratch))]
    for runs, top1 in zip(per_seed, from_scratch):
        runs['from_scratch'] = top1
    results = crossget_run.classifier_results(
        crossget_run.argparse.Namespace(epochs=30, finetune_epochs=5))
    crossget_run.add_merging_runs(
        results, per_seed, names, 'ViT',
        {n: dict(gflops=0.01 * (7 - i), images_per_s=100.0 + i,
                 merging_share=dict(matcher=0.1, merge=0.2) if i else None)
         for i, n in enumerate(names)})
    return results


def test_crossget_pairs_each_stage_with_the_plain_vit_of_that_stage():
    results = crossget_classifier_table([90.0, 89.5])
    assert list(dict.fromkeys(r.model.split(', ')[0] for r in results.records)) == [
        'no merging', 'tome r4', 'crossget r4', 'tome r8', 'crossget r8']
    rows = {row.split(' | ')[0][2:]: row for row in render_table(results).splitlines()[2:]}
    assert rows['tome r8, off the shelf'] == (
        '| tome r8, off the shelf | 2 | 85.50 ± 0.71 | 86.00, 85.00 | -4.00 ± 0.00 | -4.00, '
        '-4.00 | 0/2 | no merging, off the shelf | 0.0300 | 104.0 |')
    assert rows['crossget r4, importance 0, fine-tuned'] == (
        '| crossget r4, importance 0, fine-tuned | 2 | 89.50 ± 0.00 | 89.50, 89.50 | -1.50 ± '
        '0.00 | -1.50, -1.50 | 0/2 | no merging, fine-tuned | 0.0400 | 103.0 |')
    assert results.notes == ''
    assert [r.extra['converged'] for r in results.of('no merging, fine-tuned')] == [True] * 2


def test_crossget_warns_of_a_seed_more_than_a_point_below_the_best(capsys):
    results = crossget_classifier_table([88.0, 90.0, 89.0, 46.7])
    assert [r.extra['converged'] for r in results.of('no merging, off the shelf')] == [
        False, True, True, False]
    assert results.notes.startswith('Not converged: seed(s) 0, 3, whose ViT from scratch')
    assert 'WARNING: Not converged: seed(s) 0, 3' in capsys.readouterr().out


def test_crossget_speed_table_gives_each_variant_its_gain_against_the_unmerged_model():
    """GFLOPs 4 → 3 (25 % fewer, +33.3 % promised); images/s 10 → 12 at seed 0 and 10 → 13 at
    seed 1 (+20 %, +30 %: measured / promised 60 %, 90 %, mean 75 %)."""
    benchmark = project_script('crossget', 'benchmark')
    results = benchmark.speed_results('mmpretrain::deit/deit-small_4xb256_in1k.py', 224, 32,
                                      {'r8': 8})
    assert results.table == 'speed_deit-small_4xb256_in1k_224px'
    for seed, fast in enumerate([12.0, 13.0]):
        benchmark.add_speed_runs(results, seed, {
            'no merging': dict(gflops=4.0, images_per_s=10.0, merging_share=None),
            'tome r8': dict(gflops=3.0, images_per_s=fast,
                            merging_share=dict(matcher=0.01, merge=0.05)),
            'crossget r8': dict(gflops=3.0, images_per_s=10.0,
                                merging_share=dict(matcher=0.04, merge=0.1))})
    rows = render_table(results).splitlines()
    assert rows[3] == ('| tome r8 | 2 | 12.5 ± 0.7 | 12.0, 13.0 | +2.5 ± 0.7 | +2.0, +3.0 | 2/2 '
                       '| 3.0000 | 25.0% | +33.3% | +25.0% | 75% | 1.0% | 5.0% |')
    assert rows[2].endswith('| 4.0000 | – | – | – | – | – | – |')


def test_crossget_dual_encoder_table_adds_cross_guidance_and_pairs_it_with_tome(capsys):
    """The dual encoder's rows: the classifier's, each CrossGET r without importance followed
    by CrossGET r with cross guidance (cross tokens in both towers); each paired with the
    model without merging at its stage, and every CrossGET row with ToMe at its r and stage."""
    crossget_run = project_script('crossget')
    variants = crossget_run.clip_variants()
    names = list(variants)
    assert names == ['no merging', 'tome r4', 'crossget r4', 'crossget r4, importance 0',
                     'crossget r4, cross-guided', 'tome r8', 'crossget r8',
                     'crossget r8, importance 0', 'crossget r8, cross-guided']
    assert variants['no merging'] == {}
    assert variants['crossget r8, cross-guided'] == {
        'model.token_merging': dict(r=8, matcher='crossget', cross_token=True),
        'model.text_cross_token': True}
    assert variants['crossget r4, importance 0'] == {
        'model.token_merging': dict(r=4, matcher='crossget', importance_weight=0.)}
    per_seed = [dict({name: dict(off_the_shelf=80.0 - i + seed, finetuned=81.0 - i)
                      for i, name in enumerate(names)}, from_scratch=top1)
                for seed, top1 in enumerate([92.0, 95.0])]
    results = crossget_run.clip_results(crossget_run.argparse.Namespace(
        clip_epochs=60, finetune_epochs=5))
    crossget_run.add_merging_runs(results, per_seed, names, 'dual encoder')
    assert results.table == 'clip'
    # cross-guided r4 (row 4) − ToMe r4 (row 1): −3 at both seeds and stages
    paired = render_paired_table(results).splitlines()
    assert ('| crossget r4, cross-guided, off the shelf − tome r4, off the shelf | 2 | '
            '-3.00 ± 0.00 | -3.00, -3.00 | 0/2 |') in paired
    assert sum(' − tome r' in row for row in paired) == 12
    assert results.notes.startswith('Not converged: seed(s) 0, whose dual encoder from scratch')
    assert 'WARNING' in capsys.readouterr().out


def test_upop_dual_encoder_has_its_own_table_and_dense_model():
    upop_run = project_script('upop')
    results = upop_run.pruning_results('dual-encoder', [0.3])
    assert results.table == 'dual_encoder'
    assert "crossget's image–text dual encoder" in results.description
    assert set(upop_run.MODELS['dual-encoder']) == {'upop', *upop_run.BASELINES}


def test_crossget_skip_classifier_records_the_dual_encoder_table_alone(tmp_path, monkeypatch):
    """``--skip-classifier``: no ViT run, no speed benchmark, no classifier table; the dual
    encoder's table is built from its runs at every seed."""
    crossget_run = project_script('crossget')
    names = list(crossget_run.clip_variants())
    (tmp_path / 'data' / 'val').mkdir(parents=True)  # the digits are there already

    def classifier_runs(*args):
        raise AssertionError('--skip-classifier trained the ViT')

    def clip_runs(args, data_root, seed):
        return dict({name: dict(off_the_shelf=90.0 + seed, finetuned=91.0 + seed)
                     for name in names}, from_scratch=95.0 + seed)

    monkeypatch.setattr(crossget_run, 'classifier_runs', classifier_runs)
    monkeypatch.setattr(crossget_run, 'clip_runs', clip_runs)
    # main() sets one torch thread and OMP_NUM_THREADS for its runs: not for the tests after
    monkeypatch.setattr(crossget_run.torch, 'set_num_threads', lambda threads: None)
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    monkeypatch.setattr(crossget_run.sys, 'argv', [
        'run.py', '--seeds', '3', '--skip-classifier', '--work-dir', str(tmp_path)])
    crossget_run.main()
    assert not (tmp_path / 'classifier').exists()
    saved = load_results(str(tmp_path / 'clip' / 'results.json'))
    rows = {row.split(' | ')[0]: row for row in render_table(saved).splitlines()}
    assert rows['| no merging, fine-tuned'].startswith(
        '| no merging, fine-tuned | 3 | 92.00 ± 1.00 | 91.00, 92.00, 93.00 |')
