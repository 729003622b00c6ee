"""benchmarks.evidence: results files, paired summaries, rendered README blocks — checked
against hand-computed numbers; and the repository's README blocks are what their results
files render (so a README number is always one a run recorded)."""
import json
import math
import os.path as osp
import subprocess
from dataclasses import replace

import mmengine
import pytest
import torch

from benchmarks.evidence import (Results, collect_provenance, load_results, mean_std,
                                 paired_difference, publish, render_details, render_markdown,
                                 render_paired_table, render_table, summarise, update_blocks)
from benchmarks.evidence.provenance import cpu_model, git_state, portable_argument
from conftest import ROOT, script_module

PROVENANCE = dict(commit='0123456789abcdef', dirty=False, cpu='Test CPU', cpu_count=2,
                  torch_threads=1, omp_num_threads='1', date='2026-12-01 18:00 UTC',
                  versions={}, command='python run.py --seeds 0 1 2')


def pose_table() -> Results:
    """Baseline at seeds 0-2; ``kd`` at seeds 0-3 (seed 3 has no pair)."""
    results = Results(table='t', metric='AP', baseline='alone', compared=['kd'])
    results.start_run(dict(PROVENANCE))
    for seed, value in enumerate([0.30, 0.10, 0.50]):
        results.add('alone', seed, value, train_seconds=10.0 + seed, ms_per_iter=100.0)
    for seed, value in enumerate([0.35, 0.05, 0.60, 0.90]):
        results.add('kd', seed, value, train_seconds=20.0, ms_per_iter=200.0)
    return results


def test_mean_std_is_the_sample_std():
    mean, std = mean_std([1.0, 2.0, 4.0])
    assert mean == pytest.approx(7 / 3)
    # deviations -4/3, -1/3, 5/3: (16 + 1 + 25) / 9 / (3 - 1) = 7/3
    assert std == pytest.approx(math.sqrt(7 / 3))
    assert mean_std([0.5]) == (0.5, None)
    with pytest.raises(ValueError, match='at least one'):
        mean_std([])


def test_paired_difference_uses_the_common_seeds():
    d = paired_difference(pose_table(), 'kd', 'alone')
    assert d.seeds == [0, 1, 2]  # seed 3 has no baseline run
    assert d.differences == pytest.approx([0.05, -0.05, 0.10])
    assert d.mean == pytest.approx(0.1 / 3)
    # deviations 1/60, -5/60, 4/60: (1 + 25 + 16) / 3600 / 2
    assert d.std == pytest.approx(math.sqrt(42 / 7200))
    assert (d.n, d.positive) == (3, 2)


def test_pairing_removes_the_seed_effect():
    """Seeds that move both runs alike leave a wide unpaired spread but a narrow paired one."""
    results = Results(table='t', metric='acc', baseline='a', compared=['b'])
    for seed, (a, b) in enumerate([(10.0, 11.0), (50.0, 51.5), (90.0, 90.5)]):
        results.add('a', seed, a)
        results.add('b', seed, b)
    d = paired_difference(results, 'b', 'a')
    assert (d.mean, d.std) == pytest.approx((1.0, 0.5))
    # b: mean 51, deviations -40, 0.5, 39.5: (1600 + 0.25 + 1560.25) / 2
    assert summarise(results)[1].std == pytest.approx(math.sqrt(1580.25))


def test_paired_difference_without_common_seeds_names_the_models():
    results = Results(table='t', metric='AP')
    results.add('a', 0, 1.0)
    results.add('b', 1, 2.0)
    with pytest.raises(ValueError, match="'b' and the baseline 'a' have no seed in common"):
        paired_difference(results, 'b', 'a')


def test_summarise_per_model():
    alone, kd = summarise(pose_table())
    assert (alone.model, alone.seeds, alone.values) == ('alone', [0, 1, 2], [0.30, 0.10, 0.50])
    assert (alone.mean, alone.std) == pytest.approx((0.3, 0.2))
    assert alone.train_seconds == pytest.approx(11.0)
    assert kd.mean == pytest.approx(0.475)


def test_render_table_by_hand():
    # kd: mean 0.475, deviations ±0.125, ±0.425: sqrt(2 (0.015625 + 0.180625) / 3) = 0.362
    assert render_table(pose_table()) == '\n'.join([
        '| model | seeds | AP | AP per seed | Δ vs alone (paired) | Δ per seed | Δ > 0 | '
        'train time (s) | ms/iteration |',
        '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
        '| alone | 3 | 0.300 ± 0.200 | 0.300, 0.100, 0.500 |  |  |  | 11.0 | 100 |',
        '| kd | 4 | 0.475 ± 0.362 | 0.350, 0.050, 0.600, 0.900 | +0.033 ± 0.076 | '
        '+0.050, -0.050, +0.100 | 2/3 | 20.0 | 200 |',
    ])


def test_further_pairs_get_a_table_of_their_own():
    results = pose_table()
    results.add('kd + stage 2', 0, 0.25)
    results.add('kd + stage 2', 2, 0.65)
    results.also_paired = [['kd + stage 2', 'kd'], ['not run', 'kd']]
    # kd + stage 2 - kd: seed 0 -0.10, seed 2 +0.05: mean -0.025, std 0.15/√2
    assert render_paired_table(results) == '\n'.join([
        '| paired difference | seeds | Δ AP | Δ per seed | Δ > 0 |',
        '| --- | --- | --- | --- | --- |',
        '| kd + stage 2 − kd | 2 | -0.025 ± 0.106 | -0.100, +0.050 | 1/2 |'])
    assert render_paired_table(results) in render_markdown(results)
    assert render_paired_table(pose_table()) not in render_markdown(pose_table())
    # A difference that is zero but for rounding is +0.000, not -0.000.
    even = pose_table()
    even.add('kd + stage 2', 0, 0.35 - 1e-12)
    assert '| kd + stage 2 − kd | 1 | +0.000 |' in render_paired_table(
        replace(even, also_paired=[['kd + stage 2', 'kd']]))
    # A pair of which a model has not run yet: no empty table under the main one.
    partly = pose_table()
    partly.also_paired = [['not run', 'kd']]
    assert '| paired difference |' not in render_markdown(partly)


def test_extra_columns_show_the_mean_of_their_field():
    results = Results(table='t', metric='top-1 (%)', precision=2,
                      columns=[dict(field='params', header='params', format='{:,.0f}')])
    results.add('dense', 0, 97.0, params=12000)
    results.add('dense', 1, 96.0, params=13000)
    assert render_table(results).splitlines()[-1] == \
        '| dense | 2 | 96.50 ± 0.71 | 97.00, 96.00 | 12,500 |'


def test_save_merges_by_model_and_seed(tmp_path):
    path = str(tmp_path / 'results' / 't.json')
    first = Results(table='t', metric='AP', description='old')
    first.start_run(dict(PROVENANCE, date='day 1'))
    first.add('a', 0, 0.1)
    first.add('a', 1, 0.2)
    first.add('b', 0, 0.3)
    first.save(path)
    second = Results(table='t', metric='AP', description='new')
    second.start_run(dict(PROVENANCE, date='day 2'))
    second.add('a', 1, 0.25)  # replaces seed 1
    second.add('a', 2, 0.4, note='extra field')
    second.save(path)
    saved = load_results(path)
    assert saved.description == 'new'
    assert [(r.model, r.seed, r.value, r.run) for r in saved.records] == [
        ('a', 0, 0.1, 'day 1'), ('b', 0, 0.3, 'day 1'), ('a', 1, 0.25, 'day 2'),
        ('a', 2, 0.4, 'day 2')]
    assert saved.of('a')[2].extra == {'note': 'extra field'}
    assert set(saved.runs) == {'day 1', 'day 2'}
    # a run none of whose records is left is dropped
    third = Results(table='t', metric='AP')
    third.start_run(dict(PROVENANCE, date='day 3'))
    for model, seed in [('a', 0), ('b', 0)]:
        third.add(model, seed, 0.0)
    assert set(third.save(path).runs) == {'day 2', 'day 3'}


def test_runs_of_the_same_minute_keep_their_own_provenance(tmp_path):
    path = str(tmp_path / 't.json')
    for seed, command in enumerate(['python run.py --seeds 0', 'python run.py --seeds 1']):
        results = Results(table='t', metric='AP')
        results.start_run(dict(PROVENANCE, command=command))
        results.add('a', seed, 0.5)
        results.save(path)
        results.save(path)  # saving again (after each seed) changes nothing
    saved = load_results(path)
    assert [saved.runs[r.run]['command'] for r in saved.records] == [
        'python run.py --seeds 0', 'python run.py --seeds 1']
    assert len(saved.runs) == 2


def test_save_refuses_another_table(tmp_path):
    path = str(tmp_path / 't.json')
    Results(table='t', metric='AP').save(path)
    with pytest.raises(ValueError, match="cannot merge table 't' \\(mAP\\)"):
        Results(table='t', metric='mAP').save(path)
    with open(path, 'w') as f:
        json.dump({'table': 't'}, f)
    with pytest.raises(ValueError, match='format version None'):
        load_results(path)


def test_publish_writes_work_dir_and_record(tmp_path, capsys):
    results = pose_table()
    publish(results, str(tmp_path / 'work'), echo=False)
    assert osp.isfile(tmp_path / 'work' / 'results.json')
    assert not osp.exists(tmp_path / 'project')
    publish(results, str(tmp_path / 'work'), str(tmp_path / 'project'), record=True)
    recorded = load_results(str(tmp_path / 'project' / 'results' / 't.json'))
    assert recorded.to_dict() == load_results(str(tmp_path / 'work' / 'results.json')).to_dict()
    assert '| kd | 4 | 0.475 ± 0.362 |' in capsys.readouterr().out


def test_provenance(tmp_path):
    cpuinfo = tmp_path / 'cpuinfo'
    cpuinfo.write_text('processor\t: 0\nmodel name\t: Some CPU @ 2.0GHz\nflags\t: x\n')
    assert cpu_model(str(cpuinfo)) == 'Some CPU @ 2.0GHz'

    def git(*args):
        return subprocess.run(['git', '-C', str(tmp_path), *args], check=True,
                              capture_output=True, text=True).stdout.strip()

    assert git_state(str(tmp_path)) == dict(commit=None, dirty=None)
    git('init', '-q')
    (tmp_path / 'f.txt').write_text('a')
    git('add', 'f.txt')
    git('-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qm', 'c')
    assert git_state(str(tmp_path)) == dict(commit=git('rev-parse', 'HEAD'), dirty=False)
    (tmp_path / 'f.txt').write_text('b')
    assert git_state(str(tmp_path))['dirty'] is True
    # The commit is the one of the work tree holding the script, wherever mmdistill is
    # installed (site-packages is in none).
    script = tmp_path / 'projects' / 'run.py'
    script.parent.mkdir()
    script.write_text('')
    assert collect_provenance([str(script)])['commit'] == git('rev-parse', 'HEAD')

    provenance = collect_provenance(['run.py', '--seeds', '0 1'])
    assert provenance['command'] == "python run.py --seeds '0 1'"
    assert provenance['torch_threads'] == torch.get_num_threads()
    assert provenance['load_average'] >= 0
    assert provenance['versions']['torch'] == torch.__version__
    assert provenance['versions']['mmengine'] == mmengine.__version__


def test_recorded_commands_name_no_machine_path(tmp_path):
    repository = str(tmp_path / 'checkout')
    inside = osp.join(repository, 'benchmarks', 'digits', 'run.py')
    assert portable_argument(inside, repository) == 'benchmarks/digits/run.py'
    assert portable_argument('/scratch/ann/detlong', repository) == '.../detlong'
    assert portable_argument('/scratch/ann/detlong/', repository) == '.../detlong'
    assert portable_argument(f'--work-dir={repository}/work_dirs/a', repository) == \
        '--work-dir=work_dirs/a'
    assert portable_argument('--record', repository) == '--record'
    assert portable_argument('work_dirs/a', repository) == 'work_dirs/a'
    command = collect_provenance(['run.py', '--work-dir', '/scratch/ann/wd'])['command']
    assert command == 'python run.py --work-dir .../wd'


BLOCK = '<!-- evidence: results/t.json -->\n{}<!-- /evidence -->'


def test_update_blocks_replaces_only_the_body():
    text = 'before\n' + BLOCK.format('stale\n') + '\nafter\n'
    new, changed = update_blocks(text, lambda path, details: f'table of {path}')
    assert new == 'before\n' + BLOCK.format('table of results/t.json\n') + '\nafter\n'
    assert changed == ['results/t.json']
    assert update_blocks(new, lambda path, details: f'table of {path}') == (new, [])
    with pytest.raises(ValueError, match='has no `<!-- /evidence -->`'):
        update_blocks('<!-- evidence: results/t.json -->\nno end\n', str)


def test_details_blocks_render_a_per_seed_field():
    results = Results(table='t', metric='AP', baseline='alone', compared=['kd'])
    results.start_run(dict(PROVENANCE))
    results.add('alone', 0, 0.3, profile=dict(task=[1.954, 0.9851],
                                              grad_norm=dict(median=2.0, max=24.34)))
    results.add('kd', 1, 0.4, profile=dict(task=[2.0, 1.0], kd0=[150.0, 6.742],
                                           grad_norm=dict(median=372.0, clipped=1.0)))
    results.add('kd', 0, 0.5)  # no profile: no row
    assert render_details(results, 'profile').splitlines() == [
        '| model | seed | profile | grad_norm (median / max / clipped) |',
        '| --- | --- | --- | --- |',
        '| alone | 0 | task 1.95→0.985 | 2 / 24.3 / – |',
        '| kd | 1 | task 2→1 kd0 150→6.74 | 372 / – / 1 |']
    with pytest.raises(ValueError, match="no record of table 't' has 'losses'"):
        render_details(results, 'losses')
    results.add('kd', 2, 0.6, widths='heads 14, 10')  # text: the one column
    assert render_details(results, 'widths').splitlines()[1:] == [
        '| --- | --- | --- |', '| kd | 2 | heads 14, 10 |']
    # The block names the field; its body and the changed list say which block it was.
    text = '<!-- evidence: results/t.json details: profile -->\nold\n<!-- /evidence -->'
    new, changed = update_blocks(text, lambda path, details: f'{details} of {path}')
    assert new == ('<!-- evidence: results/t.json details: profile -->\n'
                   'profile of results/t.json\n<!-- /evidence -->')
    assert changed == ['results/t.json details: profile']


def test_render_evidence_tool(tmp_path):
    tool = script_module(osp.join('benchmarks', 'render.py'), 'render_evidence')
    pose_table().save(str(tmp_path / 'results' / 't.json'))
    readme = tmp_path / 'README.md'
    readme.write_text('# T\n\n' + BLOCK.format('typed by hand\n'))
    assert tool.render([str(readme)], str(tmp_path), check=True) == ['README.md: results/t.json']
    assert 'typed by hand' in readme.read_text()  # --check changes nothing
    tool.render([str(readme)], str(tmp_path))
    assert tool.render([str(readme)], str(tmp_path), check=True) == []
    text = readme.read_text()
    assert '| kd | 4 | 0.475 ± 0.362 |' in text
    assert ('`python run.py --seeds 0 1 2` at commit 0123456789, Test CPU (2 logical CPUs), '
            '1 torch thread (OMP_NUM_THREADS=1), 2026-12-01 18:00 UTC') in text
    # A run that recorded the machine's load says it; older records render as before.
    loaded = pose_table()
    loaded.start_run(dict(PROVENANCE, load_average=3.5, command='python run.py --seeds 3'))
    loaded.add('kd', 3, 0.4)
    assert ('`python run.py --seeds 3` at commit 0123456789, Test CPU (2 logical CPUs, load '
            'average 3.5 at the start), 1 torch thread') in render_markdown(loaded)
    # A benchmark that measured the machine's own spread says it after the date.
    timed = pose_table()
    timed.start_run(dict(PROVENANCE, identical_work_spread=[1.234, 1.1]))
    timed.add('kd', 5, 0.4)
    assert ('2026-12-01 18:00 UTC, identical work timed the same way spread 1.23 and 1.10 '
            '(rounds max/min, before and after)') in render_markdown(timed)
    readme.write_text(BLOCK.replace('t.json', 'missing.json').format(''))
    with pytest.raises(FileNotFoundError, match='results/missing.json, which does not exist'):
        tool.render([str(readme)], str(tmp_path), check=True)


def test_repository_readmes_are_rendered_from_their_results():
    tool = script_module(osp.join('benchmarks', 'render.py'), 'render_evidence')
    stale = tool.render(tool.markdown_files(ROOT), ROOT, check=True)
    assert stale == [], ('README blocks differ from their results files: run '
                         f'python benchmarks/render.py ({stale})')


def test_each_compared_model_may_have_its_own_baseline():
    results = Results(table='t', metric='top-1', precision=1,
                      compared={'ToMe, tuned': 'plain, tuned', 'ToMe': 'plain'})
    for seed, values in enumerate([(90.0, 80.0, 91.0, 83.0), (92.0, 70.0, 92.0, 74.0)]):
        for model, value in zip(['plain', 'ToMe', 'plain, tuned', 'ToMe, tuned'], values):
            results.add(model, seed, value)
    # ToMe: -10, -22 (mean -16, std 12/√2); tuned: -8, -18 (mean -13, std 10/√2)
    lines = render_table(results).splitlines()
    assert lines[0] == ('| model | seeds | top-1 | top-1 per seed | Δ vs its baseline (paired) '
                        '| Δ per seed | Δ > 0 | baseline |')
    assert lines[3] == '| ToMe | 2 | 75.0 ± 7.1 | 80.0, 70.0 | -16.0 ± 8.5 | -10.0, -22.0 | ' \
        '0/2 | plain |'
    assert lines[5] == '| ToMe, tuned | 2 | 78.5 ± 6.4 | 83.0, 74.0 | -13.0 ± 7.1 | -8.0, ' \
        '-18.0 | 0/2 | plain, tuned |'
    with pytest.raises(ValueError, match='names no baseline'):
        render_table(Results(table='t', metric='AP', compared=['kd']))


def test_a_seed_more_than_one_point_below_the_best_has_not_converged():
    from benchmarks.evidence import unconverged_seeds
    assert unconverged_seeds([98.78, 97.11, 97.55, 97.78]) == [1, 2]  # 1.67, 1.23 below
    assert unconverged_seeds([98.78, 97.78]) == []  # exactly 1 point below: converged
    assert unconverged_seeds([90., 46.7], within=50) == []
