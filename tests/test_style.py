"""The repository passes its lint (ruff.toml: pycodestyle and pyflakes, lines of 100
columns), the check pre-commit runs before a commit."""
import os.path as osp
import subprocess
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_ruff_finds_nothing():
    result = subprocess.run([sys.executable, '-m', 'ruff', 'check', '--no-cache',
                             '--output-format', 'concise', ROOT], capture_output=True, text=True,
                            cwd=ROOT)
    assert 'No module named ruff' not in result.stderr, \
        'ruff is missing: pip install -r requirements/tests.txt'
    assert result.returncode == 0, f'ruff check . found problems:\n{result.stdout}'


def test_ruff_would_catch_a_problem(tmp_path):
    bad = tmp_path / 'bad.py'
    bad.write_text('import os\n' + 'x = 1' + ' ' * 200 + '\n')
    result = subprocess.run([sys.executable, '-m', 'ruff', 'check', '--no-cache',
                             '--output-format', 'concise', '--config',
                             osp.join(ROOT, 'ruff.toml'), str(bad)],
                            capture_output=True, text=True)
    assert 'F401' in result.stdout and ('E501' in result.stdout or 'W291' in result.stdout)
