"""Write docs/losses.md, the list of mmdistill's distillation losses, from the registry.

    PYTHONPATH=. python tools/write_loss_docs.py           # (re)write docs/losses.md
    PYTHONPATH=. python tools/write_loss_docs.py --check   # exit 1 if it is out of date

Each loss's section comes from its class: the docstring (what it computes and the paper),
its arguments with their defaults, and the inputs its forward takes (what ``inputs=`` maps to
taps). ``tests/test_loss_docs.py`` fails when the committed file differs from what this
writes, so the list cannot go stale.
"""
import argparse
import inspect
import os.path as osp
import re
import sys

import mmdistill  # noqa: F401  (registers the losses)
from mmdistill.registry import MODELS

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
OUT = osp.join(ROOT, 'docs', 'losses.md')
HEADER = '''# Distillation losses

Generated from mmdistill's registry by `tools/write_loss_docs.py`; do not edit by hand.

A loss goes into a distillation config as

```python
distill_losses=dict(
    <name>=dict(type='<Loss>', <arguments>,
                inputs=dict(<input>='<tap>', ...)))  # logged as loss_<name>[_<part>]
```

where each input of the loss's forward is mapped to a tap, `'student.<module path>'` or
`'teacher.<module path>'`, optionally `:input` (the module's first argument instead of its
output) and `[i]` (element i of a tuple or list it gives), as explained in
[configs/README.md](../configs/README.md). Losses marked *reads data samples* also receive the
batch's data samples (ground-truth boxes, labels) without a tap.
'''


def loss_classes() -> list:
    """The losses registered in mmdistill's scope, by name."""
    return sorted((name, cls) for name, cls in MODELS.module_dict.items()
                  if cls.__module__.startswith('mmdistill.losses.'))


def _inline(line: str) -> str:
    """Inline reStructuredText as Markdown: ``x``, :math:`x`, :class:`~a.B`."""
    line = re.sub(r':math:`([^`]+)`', r'$\1$', line)
    line = re.sub(r':(?:class|func|meth|mod):`~?(?:[\w.]+\.)?(\w+)`', r'`\1`', line)
    return line.replace('``', '`')


def markdown(text: str) -> str:
    """reStructuredText of our docstrings as Markdown: each group of lines of a ``.. math::``
    block (groups are separated by blank lines) becomes a fenced math block."""
    out, math = [], None  # math: the lines of the equation being read, if in a math block
    for line in text.splitlines() + ['']:
        if line.strip() == '.. math::':
            math = []
            continue
        if math is not None and (line.startswith(' ') or not line.strip()):
            if line.strip():
                math.append(line.strip())
            elif math:
                out += ['```math', *math, '```', '']
                math = []
            continue
        math = None
        out.append(_inline(line))
    return '\n'.join(out).strip()


def split_docstring(doc: str):
    """(description, {argument: text}) of a Google-style docstring."""
    description, _, args_block = doc.partition('\nArgs:\n')
    arguments, name = {}, None
    for line in args_block.splitlines():
        match = re.match(r'    (\w+)(?: \([^)]*\))?: ?(.*)', line)
        if match:
            name = match.group(1)
            arguments[name] = match.group(2)
        elif name and line.startswith('        '):
            arguments[name] += ' ' + line.strip()
        elif line.strip():
            break
    return description.strip(), arguments


def summary(cls) -> str:
    """The first paragraph of a class's docstring, on one line."""
    return markdown(' '.join(inspect.getdoc(cls).split('\n\n')[0].split()))


def render_loss(name: str, cls) -> str:
    description, documented = split_docstring(inspect.getdoc(cls))
    init = inspect.signature(cls.__init__).parameters
    forward = inspect.signature(cls.forward).parameters
    inputs = [p for p in forward if p not in ('self', 'data_samples')]
    lines = [f'## {name}', '', markdown(description), '',
             '**Inputs** (taps): ' + ', '.join(f'`{p}`' for p in inputs) +
             ('; *reads data samples*' if 'data_samples' in forward else ''), '',
             '**Arguments**:', '']
    for arg, param in init.items():
        if arg == 'self' or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = '' if param.default is param.empty else f' (default `{param.default!r}`)'
        text = markdown(documented.get(arg, ''))
        lines.append(f'- `{arg}`{default}' + (f': {text}' if text else ''))
    return '\n'.join(lines) + '\n'


def render() -> str:
    classes = loss_classes()
    index = '\n'.join(f'- [{name}](#{name.lower()}): {summary(cls)}' for name, cls in classes)
    return '\n'.join([HEADER, index, ''] + [render_loss(name, cls) for name, cls in classes])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--check', action='store_true',
                        help='do not write; exit 1 if the file is out of date')
    args = parser.parse_args()
    text = render()
    if args.check:
        current = open(OUT).read() if osp.isfile(OUT) else ''
        if current != text:
            print(f'{OUT} is out of date: run PYTHONPATH=. python tools/write_loss_docs.py')
            sys.exit(1)
        print(f'{OUT} is up to date')
        return
    with open(OUT, 'w') as f:
        f.write(text)
    print(f'wrote {OUT}')


if __name__ == '__main__':
    main()
