"""docs/losses.md is what tools/write_loss_docs.py writes from the registry: every loss, with
its inputs and arguments, and nothing stale."""
import os.path as osp

from conftest import script_module
from mmdistill.registry import MODELS

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def load_tool():
    return script_module(osp.join('tools', 'write_loss_docs.py'), 'write_loss_docs')


def test_committed_loss_list_is_up_to_date():
    tool = load_tool()
    with open(osp.join(ROOT, 'docs', 'losses.md')) as f:
        committed = f.read()
    assert committed == tool.render(), \
        'docs/losses.md is out of date: run PYTHONPATH=. python tools/write_loss_docs.py'


def test_every_registered_loss_is_listed_with_its_inputs_and_arguments():
    text = load_tool().render()
    losses = [name for name, cls in MODELS.module_dict.items()
              if cls.__module__.startswith('mmdistill.losses.')]
    assert {'FeatureMSELoss', 'HintonKDLoss', 'FGDLoss', 'MGDLoss'} <= set(losses)
    for name in losses:
        assert f'\n## {name}\n' in text and f'- [{name}](#{name.lower()})' in text
    hinton = text.split('\n## HintonKDLoss\n')[1].split('\n## ')[0]
    assert '**Inputs** (taps): `student_logits`, `teacher_logits`\n' in hinton
    assert '- `tau` (default `1.0`): the temperature τ.' in hinton
    assert '```math' in hinton and '\\tau^2' in hinton and '``' not in hinton.replace('```', '')
    fgd = text.split('\n## FGDLoss\n')[1].split('\n## ')[0]
    assert '*reads data samples*' in fgd
