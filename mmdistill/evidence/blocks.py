"""Evidence blocks in markdown: the text between

    <!-- evidence: projects/digits/results/methods.json -->
    ...
    <!-- /evidence -->

is the table rendered from that results file (path relative to the repository root)."""
import os.path as osp
import re
from typing import Callable, List, Tuple

from .results import load_results
from .table import render_markdown

BLOCK = re.compile(r'(<!-- evidence: *(?P<path>[^ ]+?) *-->\n)(?P<body>.*?)(<!-- /evidence -->)',
                   re.DOTALL)
OPENING = re.compile(r'<!-- evidence:')


def render_file_block(root: str) -> Callable[[str], str]:
    """A renderer that reads the results file at a block's path (under ``root``)."""

    def render(path: str) -> str:
        full = osp.join(root, path)
        if not osp.isfile(full):
            raise FileNotFoundError(f'evidence block names {path}, which does not exist under '
                                    f'{root}: run the script that records it, or fix the path')
        return render_markdown(load_results(full), source=path)

    return render


def update_blocks(text: str, render: Callable[[str], str]) -> Tuple[str, List[str]]:
    """``text`` with each block's body replaced by ``render(path)``; also the paths of the
    blocks whose body changed. An opening marker without its closing one is an error."""
    if len(OPENING.findall(text)) != len(BLOCK.findall(text)):
        raise ValueError('an `<!-- evidence: PATH -->` marker has no `<!-- /evidence -->` '
                         'after it (or the path is missing): close every block')
    changed = []

    def replace(match) -> str:
        body = render(match['path']) + '\n'
        if body != match['body']:
            changed.append(match['path'])
        return match.group(1) + body + match.group(4)

    return BLOCK.sub(replace, text), changed
