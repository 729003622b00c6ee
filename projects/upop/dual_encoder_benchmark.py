"""Parameters, FLOPs, speed and per-tower widths of a dense and a UPop-pruned dual encoder.

    PYTHONPATH=. python projects/upop/dual_encoder_benchmark.py CONFIG DENSE_CKPT \
        [NAME=CHECKPOINT ...] [--batch 32] [--rounds 15]

Each checkpoint of a pruning run is loaded into the model of ``CONFIG`` after narrowing every
structure to the checkpoint's widths (what ``mmdistill.UPopPrunedModel`` in an exported config
does too).
A forward pass scores a batch of images against all class prompts, so both towers run (the
FLOPs are those of one image and all prompts). The dense model runs with the same
``HeadPrunableSelfAttention`` in the text tower as the pruned one (at full width), so the
comparison measures pruning only. Timing, FLOPs and the table as in ``benchmark.py``.
"""
import argparse
from typing import List

import torch
from mmengine.config import Config
from mmengine.runner.checkpoint import _load_checkpoint

from mmdistill.engine.checkpoint import safe_checkpoint_loading
from mmdistill.utils import build_model_in_scope, model_cfg_of
from projects.upop.benchmark import measure, print_table
from projects.upop.upop import find_structures
from mmdistill.pruning.structures import PrunableStructure


def load_narrowed(cfg: Config, checkpoint: str):
    """The model of ``cfg`` with the widths and weights of ``checkpoint``, and its structures."""
    model = build_model_in_scope(model_cfg_of(cfg), cfg.get('default_scope'))
    structures = find_structures(model)
    with safe_checkpoint_loading('checkpoint to benchmark'):
        loaded = _load_checkpoint(checkpoint, map_location='cpu')
    state = {k: v for k, v in loaded['state_dict'].items() if 'upop_' not in k}
    for structure in structures:
        structure.prune(torch.arange(structure.width_in(state)))
    model.load_state_dict(state)
    return model.eval(), structures


def describe(structures: List[PrunableStructure]) -> str:
    """Widths per tower and kind, e.g. ``vision attn [32, 30, ...]``."""
    parts = []
    for tower in dict.fromkeys(s.path.split('.')[0] for s in structures):
        for kind in ('attn', 'mlp'):
            widths = [s.num_units for s in structures
                      if s.kind == kind and s.path.split('.')[0] == tower]
            parts.append(f'{tower} {kind} {widths}')
    return '; '.join(parts)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('dense_checkpoint')
    parser.add_argument('pruned', nargs='*', help='NAME=CHECKPOINT of pruning runs')
    parser.add_argument('--batch', type=int, default=32)
    parser.add_argument('--rounds', type=int, default=15)
    parser.add_argument('--repeats', type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = Config.fromfile(args.config)
    specs = [('dense', args.dense_checkpoint)] + [spec.split('=', 1) for spec in args.pruned]
    models = {}
    for name, checkpoint in specs:
        model, structures = load_narrowed(cfg, checkpoint)
        models[name] = model
        print(f'{name}: {describe(structures)}')
    image_size = cfg.model.vision.img_size
    print_table(measure(models, image_size, args.batch, args.rounds, args.repeats))


if __name__ == '__main__':
    main()
