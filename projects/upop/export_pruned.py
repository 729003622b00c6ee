"""Export a pruned model as a checkpoint + config that mmpretrain's API loads.

    PYTHONPATH=. python projects/upop/export_pruned.py CONFIG CHECKPOINT OUT_DIR

writes OUT_DIR/pruned.pth and OUT_DIR/pruned_config.py (see ``upop/export.py``); then
``mmpretrain.get_model('OUT_DIR/pruned_config.py', pretrained='OUT_DIR/pruned.pth')``.
"""
import argparse

from projects.upop.upop import export_pruned


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='the config of the pruning run')
    parser.add_argument('checkpoint', help='a checkpoint written after compression')
    parser.add_argument('out_dir', help='folder for pruned.pth and pruned_config.py')
    args = parser.parse_args()
    checkpoint, config = export_pruned(args.config, args.checkpoint, args.out_dir)
    print(f'pruned checkpoint: {checkpoint}\npruned config:     {config}')


if __name__ == '__main__':
    main()
