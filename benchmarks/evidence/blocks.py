"""Evidence blocks in markdown: the text between

    <!-- evidence: benchmarks/digits/results/methods.json -->
    ...
    <!-- /evidence -->

is the table rendered from that results file (path relative to the repository root), and

    <!-- evidence: benchmarks/dense/results/det.json details: profile -->
    ...
    <!-- /evidence -->

the per-seed table of the records' ``profile`` field (:func:`render_details`)."""
import os.path as osp
import re
from typing import Callable, List, Optional, Tuple

from .results import load_results
from .table import render_details, render_markdown

BLOCK = re.compile(r'(<!-- evidence: *(?P<path>[^ ]+?)(?: +details: *(?P<details>\w+))? *-->\n)'
                   r'(?P<body>.*?)(?P<closing><!-- /evidence -->)', re.DOTALL)
OPENING = re.compile(r'<!-- evidence:')


def render_file_block(root: str) -> Callable[[str, Optional[str]], str]:
    """A renderer that reads the results file at a block's path (under ``root``): its table,
    or the per-seed table of the field the block's ``details:`` names."""

    def render(path: str, details: Optional[str] = None) -> str:
        full = osp.join(root, path)
        if not osp.isfile(full):
            raise FileNotFoundError(f'evidence block names {path}, which does not exist under '
                                    f'{root}: run the script that records it, or fix the path')
        results = load_results(full)
        if details is not None:
            return (f'Per seed, `{details}` of `{path}` (the runs listed under its table):\n\n'
                    + render_details(results, details))
        return render_markdown(results, source=path)

    return render


def update_blocks(text: str,
                  render: Callable[[str, Optional[str]], str]) -> Tuple[str, List[str]]:
    """``text`` with each block's body replaced by ``render(path, details)`` (``details``
    ``None`` unless the block names one); also the blocks whose body changed (their paths, with
    ``details: FIELD`` where given). An opening marker without its closing one is an error."""
    if len(OPENING.findall(text)) != len(BLOCK.findall(text)):
        raise ValueError('an `<!-- evidence: PATH -->` marker has no `<!-- /evidence -->` '
                         'after it (or the path is missing): close every block')
    changed = []

    def replace(match) -> str:
        body = render(match['path'], match['details']) + '\n'
        if body != match['body']:
            changed.append(match['path'] + (f' details: {match["details"]}'
                                            if match['details'] else ''))
        return match.group(1) + body + match['closing']

    return BLOCK.sub(replace, text), changed
