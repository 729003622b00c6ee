"""Render the evidence tables in the READMEs from the results files the runs recorded.

    python benchmarks/render.py           # rewrite the blocks
    python benchmarks/render.py --check   # exit 1 naming stale blocks

A block is the text between ``<!-- evidence: <folder>/results/<table>.json -->`` and
``<!-- /evidence -->`` in the READMEs of the repository, ``benchmarks/`` and its folders, and
``projects/*`` (or the files given); it becomes the table rendered from that results file by
:mod:`benchmarks.evidence`, with the provenance of each run that produced it.
``tests/test_evidence.py`` runs the check, so a number in a README is always one a run
recorded. How a ``run.py`` records: docs/evidence.md.
"""
import argparse
import glob
import os.path as osp
import sys

if __package__ in (None, ''):  # run as a file: the repository's packages are importable
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from benchmarks.evidence import render_file_block, update_blocks

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def markdown_files(root: str = ROOT) -> list:
    """README.md, benchmarks/README.md and the READMEs of benchmarks/* and projects/* under
    ``root``."""
    folders = [osp.join(root, 'benchmarks', '*'), osp.join(root, 'projects', '*')]
    readmes = sorted(path for folder in folders
                     for path in glob.glob(osp.join(folder, 'README.md')))
    return [osp.join(root, 'README.md'), osp.join(root, 'benchmarks', 'README.md')] + readmes


def render(files: list, root: str = ROOT, check: bool = False) -> list:
    """Update (or, with ``check``, only compare) the evidence blocks of ``files``; return
    ``'<file>: <results path>'`` for every block that was (or would be) changed."""
    stale = []
    for path in files:
        with open(path, encoding='utf-8') as f:
            text = f.read()
        new_text, changed = update_blocks(text, render_file_block(root))
        stale += [f'{osp.relpath(path, root)}: {block}' for block in changed]
        if changed and not check:
            with open(path, 'w', encoding='utf-8') as f:
                f.write(new_text)
    return stale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('files', nargs='*', help='markdown files (default: README.md, '
                        'benchmarks/README.md, benchmarks/*/README.md, projects/*/README.md)')
    parser.add_argument('--check', action='store_true',
                        help='change nothing; exit 1 if a block differs from its results file')
    args = parser.parse_args()
    stale = render(args.files or markdown_files(), check=args.check)
    for block in stale:
        print(f'{"out of date" if args.check else "rendered"}: {block}')
    if args.check and stale:
        print('run: python benchmarks/render.py', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
