"""Check that the current Python has the OpenMMLab stack mmdistill is tested with.

Exit code 0 when every package has the pinned version and imports, with mmcv's
compiled ops and a working torchvision; otherwise print what is wrong and exit 1.
``tools/setup.sh`` uses this to reuse a correct environment instead of
rebuilding it.
"""
import importlib
import importlib.metadata as metadata
import os
import sys

os.environ.setdefault('NO_ALBUMENTATIONS_UPDATE', '1')  # no version check over the network

PINNED = {
    'torch': '2.13.0',
    'torchvision': '0.28.0',
    'mmengine': '0.10.7',
    'mmcv': '2.1.0',
    'mmdet': '3.3.0',
    'mmsegmentation': '1.2.2',
    'mmpretrain': '1.2.0',
    'mmpose': '1.3.2',
    'openmim': '0.3.9',
    'albumentations': '1.4.24',
}

IMPORTS = [
    'mmcv.ops',  # compiled ops: missing when mmcv was built with build isolation
    'mmdet.models',
    'mmseg.models',
    'mmpretrain.models',
    'mmpretrain.evaluation',  # imports torchvision
    'mmpose.models',
    'mmpose.apis',
    'albumentations',
    'xtcocotools.coco',  # fails on numpy 2 when the PyPI wheel is used
    'mim',
    'sklearn.datasets',
    'pytest',
]


def problems():
    found = []
    for name, wanted in PINNED.items():
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            found.append(f'{name} is not installed (want {wanted})')
            continue
        if version.split('+')[0] != wanted:
            found.append(f'{name} {version} is installed, want {wanted}')
    for module in IMPORTS:
        try:
            importlib.import_module(module)
        except Exception as exc:  # report every failure, whatever its kind
            found.append(f'import {module} failed: {type(exc).__name__}: {exc}')
    if not found:
        import torch
        import torchvision
        boxes = torch.tensor([[0., 0., 2., 2.], [0., 0., 2., 2.1]])
        kept = torchvision.ops.nms(boxes, torch.tensor([1., .9]), 0.5)
        if kept.tolist() != [0]:
            found.append('torchvision.ops.nms gives a wrong answer')
    return found


if __name__ == '__main__':
    issues = problems()
    for line in issues:
        print(f'[check_env] {line}')
    if not issues:
        print('[check_env] environment OK')
    sys.exit(1 if issues else 0)
