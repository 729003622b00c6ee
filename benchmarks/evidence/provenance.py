"""Where and how a result was produced: commit, machine, threads, versions, command."""
import datetime
import os
import os.path as osp
import platform
import shlex
import subprocess
import sys
from importlib import metadata
from typing import Dict, Optional, Sequence

FOUNDATION_PACKAGES = ('mmengine', 'mmcv')
REPOSITORY = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def git_state(repository: str = REPOSITORY) -> dict:
    """The checked-out commit and whether tracked files differ from it (``dirty``); ``None``
    for both outside a git work tree."""

    def git(*args) -> Optional[str]:
        try:
            return subprocess.run(['git', '-C', repository, *args], capture_output=True,
                                  text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    commit = git('rev-parse', 'HEAD')
    changes = git('status', '--porcelain', '--untracked-files=no') if commit else None
    return dict(commit=commit, dirty=None if changes is None else bool(changes))


def script_git_state(script: str) -> dict:
    """:func:`git_state` of the work tree that holds ``script`` (the ``run.py`` that produced
    the numbers), else of the one that holds this package: an installed mmdistill (in
    site-packages) is in no work tree, the script that imports it usually is."""
    if script:
        state = git_state(osp.dirname(osp.abspath(script)))
        if state['commit'] is not None:
            return state
    return git_state()


def cpu_model(cpuinfo: str = '/proc/cpuinfo') -> str:
    """The processor's name as ``/proc/cpuinfo`` gives it (``platform.processor()`` where there
    is none)."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown'


def package_versions(packages: Optional[Dict[str, str]] = None) -> dict:
    """Python's, torch's (with its build, ``2.4.1+cpu``) and this mmdistill's versions, and
    the installed versions of ``packages`` (name -> distribution) read from their metadata
    (nothing is imported); by default mmengine's, mmcv's and each codebase's of
    :mod:`mmdistill.codebases`, by its scope (``mmseg``: the ``mmsegmentation`` package)."""
    import torch

    from mmdistill import __version__
    from mmdistill.codebases import CODEBASES
    if packages is None:
        packages = {name: name for name in FOUNDATION_PACKAGES}
        packages.update({scope: codebase.package for scope, codebase in CODEBASES.items()})
    versions = dict(python=platform.python_version(), torch=torch.__version__,
                    mmdistill=__version__)
    for name, distribution in packages.items():
        try:
            versions[name] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def load_average() -> Optional[float]:
    """The machine's load average over the last minute (``None`` where the OS has none): on
    shared cores it says how far the timings of a run are from an idle machine's."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def portable_argument(argument: str, repository: str = REPOSITORY) -> str:
    """``argument`` as a committed file may show it: an absolute path (alone or after
    ``--option=``) inside ``repository`` relative to it, anywhere else ``.../<its last
    part>``; a results file never names the machine that wrote it."""
    option, sep, value = ('', '', argument)
    if argument.startswith('--'):
        option, sep, value = argument.partition('=')
    if not osp.isabs(value):
        return argument
    relative = osp.relpath(value, repository)
    if relative.startswith(os.pardir):
        relative = osp.join('...', osp.basename(value.rstrip(os.sep)))
    return option + sep + relative


def collect_provenance(argv: Optional[Sequence[str]] = None) -> dict:
    """Everything needed to say where a number came from and to re-run it: git commit (and
    whether the tree was dirty), CPU model and count, the load average when the run started,
    torch's thread count and ``OMP_NUM_THREADS``, the UTC date and time, package versions and
    the command line (``sys.argv`` unless ``argv`` is given; paths made portable with
    :func:`portable_argument`). Call it after
    ``torch.set_num_threads``."""
    import torch
    argv = sys.argv if argv is None else argv
    return dict(
        **script_git_state(argv[0] if argv else ''),
        cpu=cpu_model(),
        cpu_count=os.cpu_count(),
        load_average=load_average(),
        torch_threads=torch.get_num_threads(),
        omp_num_threads=os.environ.get('OMP_NUM_THREADS'),
        date=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
        versions=package_versions(),
        command=shlex.join(['python', *map(portable_argument, argv)]),
    )


def describe_provenance(provenance: dict) -> str:
    """One line for a table's reader: command, commit, CPU, load when it started (records
    made before it was collected have none), threads, date, and the machine's own spread
    (``identical_work_spread``, where a benchmark measured it)."""
    commit = (provenance.get('commit') or 'no git commit')[:10]
    if provenance.get('dirty'):
        commit += ' (uncommitted changes)'
    threads = provenance.get('torch_threads')
    omp = provenance.get('omp_num_threads')
    load = provenance.get('load_average')
    load = '' if load is None else f', load average {load:g} at the start'
    spreads = provenance.get('identical_work_spread')
    spreads = '' if not spreads else (
        ', identical work timed the same way spread ' + ' and '.join(
            f'{spread:.2f}' for spread in spreads) + ' (rounds max/min, before and after)')
    return (f"`{provenance.get('command', '?')}` at commit {commit}, "
            f"{provenance.get('cpu', 'unknown CPU')} ({provenance.get('cpu_count', '?')} "
            f"logical CPUs{load}), {threads} torch thread{'' if threads == 1 else 's'} "
            f"(OMP_NUM_THREADS={omp if omp is not None else 'unset'}), "
            f"{provenance.get('date', 'undated')}{spreads}")
