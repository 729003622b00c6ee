"""Evidence tables with their provenance: training a run once (timed, validated, cached by
fingerprint), results files that scripts write, summaries (mean ± std, paired per-seed
differences) and markdown rendered from them into the READMEs
(``benchmarks/render.py``; the conventions are in ``docs/evidence.md``)."""
from .blocks import render_file_block, update_blocks
from .provenance import collect_provenance, describe_provenance
from .recording import add_recording_arguments, publish
from .results import Record, Results, load_results
from .summary import (ModelSummary, PairedDifference, mean_std, paired_difference,
                      paired_differences, summarise, unconverged_seeds)
from .table import render_details, render_markdown, render_paired_table, render_table
from .training import file_fingerprint, run_fingerprint, train_and_validate, train_run

__all__ = [
    'Record', 'Results', 'load_results', 'collect_provenance', 'describe_provenance',
    'ModelSummary', 'PairedDifference', 'mean_std', 'paired_difference', 'paired_differences',
    'summarise', 'unconverged_seeds', 'render_table', 'render_paired_table', 'render_details',
    'render_markdown', 'render_file_block', 'update_blocks',
    'add_recording_arguments', 'publish', 'file_fingerprint', 'run_fingerprint',
    'train_and_validate', 'train_run'
]
