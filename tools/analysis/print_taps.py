"""Show every module a distillation config can tap, with its output shape, and check the taps.

    python tools/analysis/print_taps.py CONFIG [--input-size H W] [--batch-size 2]
        [--cfg-options k=v ...]

Builds the config's distiller with random teacher weights (no checkpoint is read), runs the
student and each teacher once on a random batch of H×W (each teacher on its own inputs:
``inputs='own'`` with ``input_size`` resizes it) and prints, model by model, every module path
with its output shape and stride, the taps the config uses marked ``<==`` with the losses that
read them. Then, for each loss, whether its inputs fit (channels, spatial size, the loss's own
checks; each problem with advice by what the loss reads: class count and output stride for
logits, channels and stride for features, the teacher's ``input_size`` where it sees its own
size), notes such as a student tap that runs only in training (mmseg's ``auxiliary_head``),
and, for each student tap, the teacher modules that fit it. Exits with status 1 when a loss's
inputs do not fit (a train-only tap is no problem). ``Distiller(check_taps=True)`` runs the
same check at build time.
"""
import argparse
import sys

from mmengine.config import DictAction

import mmdistill  # noqa: F401  (registers the Distiller)
from mmdistill.apis import build_distiller
from mmdistill.distillers import Distiller
from mmdistill.distillers.tap_check import dry_run, format_report


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='a distillation config (model.type=mmdistill.Distiller)')
    parser.add_argument('--input-size', type=int, nargs=2, default=(224, 224),
                        metavar=('H', 'W'), help='size of the random batch (default 224 224)')
    parser.add_argument('--batch-size', type=int, default=2)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, as in tools/train.py')
    return parser.parse_args(argv)


def build_untrained(config: str, cfg_options=None) -> Distiller:
    """The config's distiller with every teacher's checkpoint left out (random weights), built
    without its own tap check: this tool is the check, it reports rather than raises."""
    return build_distiller(config, {**(cfg_options or {}), 'model.check_taps': False})[0]


def main(argv=None) -> int:
    args = parse_args(argv)
    distiller = build_untrained(args.config, args.cfg_options)
    report = dry_run(distiller, args.input_size, args.batch_size)
    print(format_report(report))
    return 1 if report.problems else 0


if __name__ == '__main__':
    sys.exit(main())
