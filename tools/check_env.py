"""Check that the current Python has a tested OpenMMLab stack for mmdistill.

``python tools/check_env.py [--stack newest|oldest]``: exit code 0 when Python and every package
have the stack's tested version and import, with mmcv's compiled ops and a working torchvision;
otherwise print what is wrong and exit 1. Without ``--stack`` the environment may hold either
stack (the one whose Python version it runs). ``tools/setup.sh`` uses this to reuse a correct
environment instead of rebuilding it.
"""
import argparse
import importlib
import importlib.metadata as metadata
import os
import sys

os.environ.setdefault('NO_ALBUMENTATIONS_UPDATE', '1')  # no version check over the network

# What both stacks share (requirements/mminstall.txt, mim.txt).
SHARED = {
    'mmengine': '0.10.7',
    'mmcv': '2.1.0',
    'mmdet': '3.3.0',
    'mmsegmentation': '1.2.2',
    'mmpretrain': '1.2.0',
    'mmpose': '1.3.2',
    'openmim': '0.3.9',
}
# Per stack: Python (major.minor) and the pins of requirements/[oldest/]torch.txt and
# requirements/codebases.txt (albumentations) that differ.
STACKS = {
    'newest': dict(python='3.11', torch='2.13.0', torchvision='0.28.0', albumentations='1.4.24'),
    'oldest': dict(python='3.8', torch='2.0.1', torchvision='0.15.2', albumentations='1.4.18'),
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


def stack_of_this_python():
    """The stack whose Python version this interpreter is, or None."""
    running = '%d.%d' % sys.version_info[:2]
    return next((name for name, pins in STACKS.items() if pins['python'] == running), None)


def problems(stack):
    """What differs from ``stack`` (a key of STACKS) in this environment: a list of sentences."""
    wanted = dict(SHARED, **STACKS[stack])
    running = '%d.%d' % sys.version_info[:2]
    if wanted.pop('python') != running:
        return [f'Python {running} runs this, the {stack} stack is tested on '
                f'Python {STACKS[stack]["python"]}']
    found = []
    for name, version in wanted.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            found.append(f'{name} is not installed (want {version})')
            continue
        if installed.split('+')[0] != version:
            found.append(f'{name} {installed} is installed, want {version}')
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--stack', choices=sorted(STACKS),
                        help='the stack to check for (default: the one of this Python version)')
    stack = parser.parse_args().stack or stack_of_this_python()
    if stack is None:
        issues = ['Python %d.%d runs this; the tested stacks run on Python %s' % (
            sys.version_info[:2] + (' or '.join(p['python'] for p in STACKS.values()),))]
    else:
        issues = problems(stack)
    for line in issues:
        print(f'[check_env] {line}')
    if not issues:
        print(f'[check_env] environment OK ({stack} stack)')
    return 1 if issues else 0


if __name__ == '__main__':
    sys.exit(main())
