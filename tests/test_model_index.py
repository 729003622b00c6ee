"""The model zoo's metadata, in OpenMMLab's model-index form.

Every config under ``configs/`` (``_base_`` files aside) is a model of exactly one
``configs/<method>/metafile.yml``; the root ``model-index.yml`` imports every metafile; each
method directory has a README with the model-zoo sections that links each of its configs; and
``mim search mmdistill`` (openmim 0.3.9) lists every config. mim reads
``<installed mmdistill>/.mim/model-index.yml``, which ``setup.py`` copies there when the package
is built: that test needs mmdistill installed from this checkout (``tools/setup.sh`` does it).
"""
import filecmp
import glob
import os
import os.path as osp
import re
import subprocess
import sys
from collections import Counter

import pytest
import yaml

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = osp.join(ROOT, 'configs')
METHOD_DIRS = sorted(name for name in os.listdir(CONFIGS)
                     if osp.isdir(osp.join(CONFIGS, name)) and not name.startswith(('_', '.')))
SECTIONS = ('## Abstract', '## Results and models', '## Citation')


def config_files(directory=CONFIGS):
    """Non-base config files under ``directory``, as paths relative to the repository root."""
    found = glob.glob(osp.join(directory, '**', '*.py'), recursive=True)
    return sorted(osp.relpath(path, ROOT).replace(os.sep, '/') for path in found
                  if '_base_' not in osp.relpath(path, CONFIGS).split(os.sep))


def metafiles():
    return sorted(f'configs/{name}/metafile.yml' for name in METHOD_DIRS)


def load_yaml(path):
    with open(osp.join(ROOT, path), encoding='utf-8') as f:
        return yaml.safe_load(f)


def read_text(path):
    with open(path, encoding='utf-8') as f:
        return f.read()


def all_models():
    return [(metafile, model) for metafile in metafiles()
            for model in load_yaml(metafile)['Models']]


@pytest.mark.parametrize('method', METHOD_DIRS)
def test_each_metafile_is_in_the_model_index_form(method):
    metafile = f'configs/{method}/metafile.yml'
    assert osp.isfile(osp.join(ROOT, metafile)), f'{metafile} is missing'
    data = load_yaml(metafile)
    assert set(data) == {'Collections', 'Models'}
    collections = {}
    for collection in data['Collections']:
        assert {'Name', 'Metadata', 'Paper', 'README'} <= set(collection), collection
        assert collection['Metadata'].get('Training Data'), collection['Name']
        assert set(collection['Paper']) == {'URL', 'Title'}, collection['Name']
        assert collection['Paper']['URL'].startswith('https://arxiv.org/abs/')
        assert collection['README'] == f'configs/{method}/README.md'
        collections[collection['Name']] = collection
    for model in data['Models']:
        name = model['Name']
        assert model['In Collection'] in collections, name
        assert model['Config'].startswith(f'configs/{method}/'), name
        assert osp.basename(model['Config']) == f'{name}.py', 'Name is the config stem'
        assert model['Metadata'].get('Training Data'), name
        for result in model.get('Results', []):  # omitted where no paper gives a number
            assert set(result) == {'Task', 'Dataset', 'Metrics'}, name
            assert result['Metrics'] and all(
                isinstance(value, float) and 0 < value < 100
                for value in result['Metrics'].values()), name


def test_every_config_is_listed_in_exactly_one_metafile():
    listed = Counter(model['Config'] for _, model in all_models())
    twice = sorted(path for path, count in listed.items() if count > 1)
    assert not twice, f'listed more than once: {twice}'
    missing_files = sorted(path for path in listed if not osp.isfile(osp.join(ROOT, path)))
    assert not missing_files, f'listed, but no such file: {missing_files}'
    unlisted = sorted(set(config_files()) - set(listed))
    assert not unlisted, f'configs in no metafile: {unlisted}'
    assert not set(listed) - set(config_files()), 'a metafile lists a _base_ file'
    names = Counter(model['Name'] for _, model in all_models())
    assert all(count == 1 for count in names.values()), 'model names (config ids) must be unique'


def test_model_index_imports_every_metafile():
    index = load_yaml('model-index.yml')
    assert set(index) == {'Import'}
    imports = index['Import']
    assert len(imports) == len(set(imports))
    assert sorted(imports) == metafiles()


def readme_link_targets(readme_path):
    """Targets of the README's inline links and reference-style link definitions, resolved
    against its directory and relative to the repository root."""
    text = read_text(readme_path)
    targets = re.findall(r'\]\(([^)\s]+)\)', text)
    targets += re.findall(r'^\[[^\]]+\]:\s*(\S+)', text, flags=re.MULTILINE)
    directory = osp.dirname(readme_path)
    return {osp.relpath(osp.normpath(osp.join(directory, target.split('#')[0])),
                        ROOT).replace(os.sep, '/')
            for target in targets if '://' not in target}


@pytest.mark.parametrize('method', METHOD_DIRS)
def test_each_method_readme_has_the_sections_and_links_its_configs(method):
    readme = osp.join(CONFIGS, method, 'README.md')
    assert osp.isfile(readme), f'configs/{method}/README.md is missing'
    lines = read_text(readme).splitlines()
    assert lines[0].startswith('# '), 'first line: # <Method>'
    assert any(line.startswith('> [') for line in lines[1:4]), 'then > [Paper title](link)'
    positions = [lines.index(section) if section in lines else -1 for section in SECTIONS]
    assert -1 not in positions, f'sections needed: {SECTIONS}'
    assert positions == sorted(positions), f'sections in this order: {SECTIONS}'
    citation = '\n'.join(lines[positions[-1]:])
    assert '```bibtex' in citation and re.search(r'@\w+\{', citation)
    unlinked = sorted(set(config_files(osp.join(CONFIGS, method))) -
                      readme_link_targets(readme))
    assert not unlinked, f'configs/{method}/README.md does not link: {unlinked}'


def run_in(tmp_path, *args):
    """Run this interpreter outside the checkout, so that it sees the installed mmdistill."""
    return subprocess.run([sys.executable, *args], cwd=str(tmp_path), capture_output=True,
                          text=True, timeout=300, check=False)


def test_mim_search_lists_every_config(tmp_path):
    done = run_in(tmp_path, '-c', 'from mim.utils import get_installed_path; '
                  "print(get_installed_path('mmdistill'))")
    assert done.returncode == 0, done.stderr[-3000:]
    mim_dir = osp.join(done.stdout.strip().splitlines()[-1], '.mim')
    reinstall = ('reinstall mmdistill from this checkout (bash tools/setup.sh, or python -m pip '
                 'install --no-deps --no-build-isolation --force-reinstall .)')
    for path in ['model-index.yml', *metafiles()]:
        installed = osp.join(mim_dir, path)
        assert osp.isfile(installed), f'{installed} is missing: {reinstall}'
        assert filecmp.cmp(installed, osp.join(ROOT, path), shallow=False), \
            f'{installed} is not the checkout\'s {path}: {reinstall}'

    done = run_in(tmp_path, '-m', 'mim', 'search', 'mmdistill')
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    listed = re.findall(r'^config id: (\S+)$', done.stdout, flags=re.MULTILINE)
    expected = sorted(osp.splitext(osp.basename(path))[0] for path in config_files())
    assert sorted(listed) == expected, done.stdout[-3000:]
