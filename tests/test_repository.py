"""What the repository commits: no absolute path of the machine that wrote a file (recorded
commands keep paths relative to the checkout, see ``benchmarks.evidence.portable_argument``)."""
import os.path as osp
import re
import subprocess

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# Home, temporary and work directories of the machines that ran things.
MACHINE_PATH = re.compile(r'(/work/|/root/|/home/[a-z]|/tmp/[A-Za-z0-9_]+/|/Users/[A-Za-z])')
TEXT_SUFFIXES = ('.md', '.json', '.yml', '.yaml', '.py', '.sh', '.txt', '.cfg', '.ini')


def committed_text_files() -> list:
    try:
        listed = subprocess.run(['git', '-C', ROOT, 'ls-files'], capture_output=True, text=True,
                                check=True).stdout.split('\n')
    except (OSError, subprocess.CalledProcessError):
        pytest.skip('not a git checkout: nothing is committed here')
    return [path for path in listed if path.endswith(TEXT_SUFFIXES)
            and osp.isfile(osp.join(ROOT, path))]


def machine_paths(text: str) -> list:
    return [line.strip()[:120] for line in text.splitlines() if MACHINE_PATH.search(line)]


def test_the_pattern_finds_machine_paths():
    assert machine_paths('`python run.py --work-dir /work/wt/detlong`\nok\n') == [
        '`python run.py --work-dir /work/wt/detlong`']
    assert machine_paths('"command": "python /home/ann/mmdistill/run.py"') != []
    assert machine_paths('--work-dir /tmp/clsb/wd') != []
    assert machine_paths('work_dirs/detlong, /tmp alone, .../detlong') == []


def test_no_committed_file_names_a_machine_path():
    found = {}
    for path in committed_text_files():
        with open(osp.join(ROOT, path), encoding='utf-8', errors='replace') as f:
            lines = machine_paths(f.read())
        if lines and path != 'tests/test_repository.py':
            found[path] = lines
    assert not found, ('committed files name absolute paths of a machine (keep recorded '
                       f'commands relative to the checkout): {found}')


def test_the_tests_refuse_an_mmdistill_from_outside_the_checkout(tmp_path):
    """conftest's guard: the mmdistill the tests import must be this checkout's."""
    import mmdistill
    from conftest import check_mmdistill_is_this_tree
    assert osp.dirname(osp.realpath(mmdistill.__file__)) == osp.join(osp.realpath(ROOT),
                                                                      'mmdistill')
    check_mmdistill_is_this_tree(mmdistill.__file__, ROOT)  # this run's: accepted
    installed = tmp_path / 'site-packages' / 'mmdistill' / '__init__.py'
    with pytest.raises(pytest.UsageError) as refused:
        check_mmdistill_is_this_tree(str(installed), ROOT)
    message = str(refused.value)
    assert str(installed.parent) in message
    assert osp.join(osp.realpath(ROOT), 'mmdistill') in message
    assert f'`python -m pytest` from the checkout: cd {ROOT} && python -m pytest' in message
