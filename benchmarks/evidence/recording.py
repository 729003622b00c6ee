"""The convention every evidence ``run.py`` (``benchmarks/*``, ``projects/*``) follows to
save its results.

Results always go to ``<work-dir>/results.json``; with ``--record`` they also go to the
committed ``<folder>/results/<table>.json`` that the README renders. Both are merged
with what is there already, record by (model, seed), so a script re-run for more seeds adds
to its table."""
import argparse
import os.path as osp
from typing import Optional

from .results import Results
from .table import render_markdown


def add_recording_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--record``."""
    parser.add_argument(
        '--record', action='store_true',
        help='also write the results to <folder>/results/<table>.json, the committed '
        'file the README renders (benchmarks/render.py); records of other (model, seed) '
        'pairs already there are kept')


def record_path(project_dir: str, table: str) -> str:
    """Where a project's committed results for ``table`` live."""
    return osp.join(project_dir, 'results', f'{table}.json')


def publish(results: Results, work_dir: str, project_dir: Optional[str] = None,
            record: bool = False, echo: bool = True) -> Results:
    """Save ``results`` to ``<work_dir>/results.json`` and, when ``record``, to
    ``<project_dir>/results/<table>.json``; print the work dir's table rendered as markdown
    (``echo``); return what the work dir now holds."""
    saved = results.save(osp.join(work_dir, 'results.json'))
    if record:
        if project_dir is None:
            raise ValueError('record=True needs the project directory (benchmarks/<name>) to '
                             'write results/<table>.json into')
        path = record_path(project_dir, results.table)
        results.save(path)
    if echo:
        print('\n' + render_markdown(saved, source=osp.join(work_dir, 'results.json')))
        if record:
            print(f'\nrecorded in {path}: run python benchmarks/render.py to update the READMEs')
    return saved
