"""Packaging for mmdistill.

Like the OpenMMLab packages, the wheel ships ``tools/``, ``configs/`` and ``model-index.yml`` as
package data under ``mmdistill/.mim/`` so that ``mim train mmdistill CONFIG`` finds
``tools/train.py``, ``mmdistill::kd/...`` config paths resolve and ``mim search mmdistill``
lists the configs.
"""
import os
import os.path as osp
import shutil

from setuptools import find_packages, setup

ROOT = osp.dirname(osp.abspath(__file__))
MIM_ITEMS = ('tools', 'configs', 'model-index.yml')


def read_requirements(name):
    """Requirement lines of ``requirements/<name>.txt`` without comments."""
    with open(osp.join(ROOT, 'requirements', name)) as f:
        lines = (line.split('#')[0].strip() for line in f)
        return [line for line in lines if line]


def copy_mim_extension():
    """Copy tools/, configs/ and model-index.yml into mmdistill/.mim/ (package data)."""
    mim_root = osp.join(ROOT, 'mmdistill', '.mim')
    for name in MIM_ITEMS:
        target = osp.join(mim_root, name)
        if osp.islink(target) or osp.isfile(target):
            os.remove(target)
        elif osp.isdir(target):
            shutil.rmtree(target)
        source = osp.join(ROOT, name)
        if osp.isdir(source):
            shutil.copytree(source, target,
                            ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
        else:
            shutil.copyfile(source, target)


def get_version():
    scope = {}
    with open(osp.join(ROOT, 'mmdistill', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


# What mmdistill needs, as ranges: it installs into an existing OpenMMLab 2.x environment. The
# exact versions it is tested with (the newest and the oldest stack) are pinned in
# requirements/*.txt and requirements/oldest/*.txt, which tools/setup.sh installs.
INSTALL_REQUIRES = [
    'torch>=2.0',
    'mmengine>=0.10.0,<1.0.0',
    'mmcv>=2.0.0rc4,<2.2.0',  # mmdet 3.3 and mmseg 1.2 assert mmcv<2.2.0
]
EXTRAS_REQUIRE = {
    'det': ['mmdet>=3.0.0,<4.0.0'],
    'seg': ['mmsegmentation>=1.0.0,<2.0.0'],
    'cls': ['mmpretrain>=1.0.0,<2.0.0'],
    # albumentations 2.x renamed the CoarseDropout arguments of mmpose's RTMPose recipes
    'pose': ['mmpose>=1.0.0,<2.0.0', 'albumentations<2.0.0'],
    'mim': ['openmim>=0.3.0'],
    'tests': read_requirements('tests.txt'),
}

if __name__ == '__main__':
    copy_mim_extension()
    setup(
        name='mmdistill',
        version=get_version(),
        description='Knowledge distillation for any OpenMMLab 2.x config, by inheritance',
        long_description=open(osp.join(ROOT, 'README.md')).read(),
        long_description_content_type='text/markdown',
        license='Apache License 2.0',
        python_requires='>=3.8',
        packages=find_packages(
            exclude=('tests', 'tests.*', 'benchmarks', 'benchmarks.*', 'configs', 'tools')),
        include_package_data=True,
        package_data={'mmdistill': ['.mim/**/*']},
        install_requires=INSTALL_REQUIRES,
        extras_require=EXTRAS_REQUIRE,
        zip_safe=False,
    )
