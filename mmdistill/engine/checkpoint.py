"""Loading checkpoints without running code: weights-only loading with what OpenMMLab writes.

A checkpoint is a pickle, and a pickle can name any function to call while it is read (a
``__reduce__`` that calls ``os.system``). Teacher checkpoints are exactly the files people
download from model zoos, so mmdistill reads checkpoint files weights-only: tensors, plain
Python values and the few types an MMEngine/OpenMMLab checkpoint holds besides them
(:data:`ALLOWED_GLOBALS`: the message hub's ``HistoryBuffer`` with its statistics methods,
numpy arrays, scalars and dtypes under their numpy 1.x and 2.x names). Anything else the file
names is refused before it is called, with an error that names the file, what it was loaded as
(its *role*: ``teacher``, ``load_from``, ``resume``) and the refused ``module.name``.

- :func:`load_checkpoint_file` reads one local file so. Where torch's weights-only unpickler
  takes named allow-list entries for one load (``torch.serialization.safe_globals`` with
  ``(object, 'module.name')`` entries; torch 2.13 does) it is ``torch.load(weights_only=True)``
  inside it (scoped: nothing global changes); on older torch, whose weights-only unpickler
  cannot be extended so, an unpickler that resolves only the allowed names and torch's own
  tensor-rebuilding ones.
- :func:`safe_checkpoint_loading` routes MMEngine's loaders for local files and for
  ``http(s)://`` URLs (``CheckpointLoader``; what ``Runner.load_checkpoint``, ``Runner.resume``
  and ``init_cfg=dict(type='Pretrained')`` reach) through :func:`load_checkpoint_file` while it
  is open (a URL is downloaded to torch's hub cache first, as MMEngine does), and puts the
  previous loaders back afterwards. Importing mmdistill changes nothing.

**Trusted legacy checkpoints.** A checkpoint you trust that holds other Python objects (written
by old code, or with custom classes) loads with full unpickling only when the environment
variable ``MMDISTILL_TRUST_CHECKPOINTS`` names it: a list of paths separated by ``os.pathsep``
(``:`` on Linux), or ``1`` for every file. Each such load logs a warning.
"""
import collections
import contextlib
import functools
import logging
import os
import os.path as osp
import pickle
import re
import sys
import types
from typing import Any, Callable, Dict, Iterator, List
from urllib.parse import urlparse

import numpy as np
import torch
from mmengine.dist import get_dist_info
from mmengine.logging import HistoryBuffer, print_log
from mmengine.runner.checkpoint import CheckpointLoader

TRUST_ENV = 'MMDISTILL_TRUST_CHECKPOINTS'
_LOCAL_PREFIX = ''  # MMEngine's CheckpointLoader scheme for local files
_HTTP_PREFIXES = ('http://', 'https://')  # ... and its schemes for URLs


def _numpy_multiarray_globals() -> Dict[str, Any]:
    """numpy's array and scalar reconstructors under the names numpy 1.x (``numpy.core``) and
    numpy 2.x (``numpy._core``) write; both resolve to the installed numpy's functions."""
    try:
        from numpy._core import multiarray  # numpy >= 2 (and 1.26's forward alias)
    except ImportError:
        from numpy.core import multiarray
    return {f'{package}.multiarray.{name}': getattr(multiarray, name)
            for package in ('numpy.core', 'numpy._core') for name in ('_reconstruct', 'scalar')}


def _pickled_method(owner: Any, name: str) -> Callable:
    """``getattr`` as a checkpoint may call it: pickle protocol 2 writes a function defined in a
    class (``HistoryBuffer.min``, which the message hub's buffers keep) as
    ``getattr(HistoryBuffer, 'min')``. Only a public function defined in an allowed class is
    returned; anything else is refused."""
    function = vars(owner).get(name) if isinstance(owner, type) else None
    if (owner not in ALLOWED_GLOBALS.values() or name.startswith('_')
            or not isinstance(function, types.FunctionType)):
        owner_name = f'{getattr(owner, "__module__", "?")}.{getattr(owner, "__qualname__", owner)}'
        raise pickle.UnpicklingError(
            f'Unsupported global: GLOBAL {owner_name}.{name} (reached through builtins.getattr) '
            'is refused: only public functions of the allowed classes are')
    return function


# The types an MMEngine/OpenMMLab checkpoint holds besides tensors and plain Python values
# (found with torch.serialization.get_unsafe_globals_in_checkpoint on checkpoints of this
# project's runs), by the name a pickle writes them under.
ALLOWED_GLOBALS: Dict[str, Any] = {
    'mmengine.logging.history_buffer.HistoryBuffer': HistoryBuffer,
    'builtins.getattr': _pickled_method,  # HistoryBuffer's statistics methods, see above
    'numpy.ndarray': np.ndarray,
    'numpy.dtype': np.dtype,
    '_codecs.encode': __import__('_codecs').encode,  # numpy writes array bytes through it
    # mmengine on torch 2.0 writes a Counter (a dict of counts) into detection checkpoints;
    # newer torch allows it by default, torch 2.0's weights-only list does not.
    'collections.Counter': collections.Counter,
    **_numpy_multiarray_globals(),
}
# numpy dtypes are instances of one class per type (numpy.dtypes.Float64DType, ...): torch's
# weights-only unpickler sets their state only where their class is allowed.
_NUMPY_DTYPE_CLASSES = {type(np.dtype(code)) for code in '?bBhHiIlLqQefd'}


class CheckpointReadError(RuntimeError):
    """A checkpoint file that cannot be read: empty, truncated or not a checkpoint."""


class UnsafeCheckpointError(CheckpointReadError):
    """A checkpoint whose pickle names a global outside :data:`ALLOWED_GLOBALS`."""


def _fix_for(role: str) -> str:
    """What to do about an unreadable checkpoint loaded as ``role``."""
    if role.startswith('teacher'):
        return ('download or export the teacher checkpoint again and point the teacher\'s '
                'checkpoint at the complete file')
    if role.startswith('resume'):
        return ('resume from an earlier checkpoint of the work dir (--resume PATH), or move this '
                'file away so that resume takes the newest complete one')
    if role.startswith('load_from'):
        return 'point load_from at a complete checkpoint (download or copy it again)'
    return 'use a complete checkpoint (download or copy it again)'


def _trusted(filename: str) -> bool:
    """Whether ``MMDISTILL_TRUST_CHECKPOINTS`` names ``filename`` (or is ``1``)."""
    value = os.environ.get(TRUST_ENV, '').strip()
    if value == '1':
        return True
    real = osp.realpath(filename)
    return any(osp.realpath(osp.expanduser(path)) == real
               for path in value.split(os.pathsep) if path)


# What torch's weights-only unpickler (and the restricted one) say when a pickle names
# something outside the allow-list, as opposed to a pickle that is broken.
_REFUSALS = ('GLOBAL', 'Trying to call reduce for unrecognized function',
             'Can only create new object', 'Can only build')


def _refused_names(filename: str, message: str) -> List[str]:
    """The ``module.name`` globals of ``filename`` that loading refused (from the file where
    torch can list them, else from the error message)."""
    names = re.findall(r'GLOBAL (\S+)', message)
    lister = getattr(torch.serialization, 'get_unsafe_globals_in_checkpoint', None)
    if lister is not None:
        try:
            names += [name for name in lister(filename) if name not in ALLOWED_GLOBALS]
        except Exception:  # noqa: BLE001 - the message then names what it can
            pass
    if not names:  # a refusal of another kind ("Can only build ..."): its own words
        names = [message.strip().splitlines()[-1] if message.strip() else 'unknown']
    return list(dict.fromkeys(names))


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS` and the names torch's own
    weights-only unpickler allows (tensor and storage rebuilding), for torch < 2.5. torch's
    ``torch.load`` subclasses it and calls this ``find_class`` for every global it does not
    map to a storage type itself."""

    def find_class(self, module: str, name: str) -> Any:
        import _compat_pickle  # pickle's own mapping of Python 2 names (``__builtin__``)
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        full_name = f'{module}.{name}'
        allowed = ALLOWED_GLOBALS.get(full_name, _torch_allowed_globals().get(full_name))
        if allowed is None:
            raise pickle.UnpicklingError(f'Unsupported global: GLOBAL {full_name} is not allowed')
        return allowed


@functools.lru_cache(maxsize=None)
def _torch_allowed_globals() -> Dict[str, Any]:
    from torch import _weights_only_unpickler
    return dict(_weights_only_unpickler._get_allowed_globals())


_RESTRICTED_PICKLE = types.SimpleNamespace(
    Unpickler=_RestrictedUnpickler, __name__=__name__ + '.restricted_pickle',
    load=lambda file, **kwargs: _RestrictedUnpickler(file, **kwargs).load())


@functools.lru_cache(maxsize=None)
def _torch_weights_only_extensible() -> bool:
    """Whether torch's weights-only unpickler can take this allow-list for one load:
    ``torch.serialization.safe_globals`` (torch >= 2.5) with entries named by the caller,
    ``(object, 'module.name')`` (needed for numpy's two names of one function), which came
    after it. Checked by feature, not by version."""
    if not hasattr(torch.serialization, 'safe_globals'):
        return False
    from torch import _weights_only_unpickler
    try:
        with torch.serialization.safe_globals([(dict, 'mmdistill.probe')]):
            return _weights_only_unpickler._get_user_allowed_globals().get(
                'mmdistill.probe') is dict
    except (AttributeError, TypeError, ValueError):
        return False


def _weights_only_load(filename: str, map_location) -> Any:
    """``torch.load`` of ``filename`` that resolves only the allowed globals."""
    if _torch_weights_only_extensible():
        allowed = [(value, name) for name, value in ALLOWED_GLOBALS.items()]
        allowed += list(_NUMPY_DTYPE_CLASSES)
        with torch.serialization.safe_globals(allowed):
            return torch.load(filename, map_location=map_location, weights_only=True)
    return torch.load(filename, map_location=map_location, weights_only=False,
                      pickle_module=_RESTRICTED_PICKLE)


def load_checkpoint_file(filename: str, map_location=None, role: str = 'checkpoint') -> Any:
    """Load the local checkpoint ``filename`` without running code from it.

    Args:
        filename: a local file (``~`` is expanded).
        map_location: as for ``torch.load``.
        role: what the file is loaded as, for messages: ``'teacher'``, ``"teacher 'a'"``,
            ``'load_from'``, ``'resume'``.

    Returns:
        What the file holds.

    Raises:
        FileNotFoundError: no such file.
        UnsafeCheckpointError: the pickle names a global outside :data:`ALLOWED_GLOBALS` (a
            file ``MMDISTILL_TRUST_CHECKPOINTS`` names loads with full unpickling instead).
        CheckpointReadError: the file is empty, truncated or not a checkpoint.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{role} checkpoint {filename} can not be found')
    if os.path.getsize(filename) == 0:
        raise CheckpointReadError(
            f'{role} checkpoint {filename} is empty (0 bytes: an interrupted save or download?); '
            f'{_fix_for(role)}')
    if _trusted(filename):
        print_log(f'{role} checkpoint {filename}: full unpickling because {TRUST_ENV} names it; '
                  'this runs any code the file holds. Trust only files you or a source you trust '
                  'wrote.', logger='current', level=logging.WARNING)
        loader = functools.partial(torch.load, weights_only=False)
    else:
        loader = _weights_only_load
    try:
        return loader(filename, map_location=map_location)
    except pickle.UnpicklingError as error:
        message = str(error)
        if any(refusal in message for refusal in _REFUSALS):
            names = _refused_names(filename, message)
            raise UnsafeCheckpointError(
                f'{role} checkpoint {filename} was refused: its pickle names '
                f'{", ".join(names)}, which a checkpoint of weights does not hold (loading it '
                'could run code). If you trust the file, allow full unpickling for it with the '
                f'environment variable {TRUST_ENV}={filename}') from None
        raise _read_error(filename, role, error) from error
    except Exception as error:  # noqa: BLE001 - torch's errors for broken files vary by damage
        raise _read_error(filename, role, error) from error


def _read_error(filename: str, role: str, error: Exception) -> CheckpointReadError:
    # torch wraps its weights-only unpickler's errors in advice to load with weights_only=False
    cause = str(error).split('WeightsUnpickler error:')[-1].strip().split('\n')[0]
    return CheckpointReadError(
        f'{role} checkpoint {filename} cannot be read: it is truncated or not a checkpoint '
        f'({type(error).__name__}: {cause[:200]}); {_fix_for(role)}')


def download_checkpoint(url: str) -> str:
    """The local copy of ``url`` in torch's hub cache (``<hub dir>/checkpoints/<file name>``,
    where MMEngine's and torch's URL loaders keep it), downloaded if absent: by rank 0 first,
    then by any other rank that does not see it (another machine), as MMEngine does."""
    cached = osp.join(torch.hub.get_dir(), 'checkpoints', osp.basename(urlparse(url).path))

    def fetch() -> None:
        if not osp.isfile(cached):
            os.makedirs(osp.dirname(cached), exist_ok=True)
            sys.stderr.write(f'Downloading: "{url}" to {cached}\n')
            torch.hub.download_url_to_file(url, cached, progress=os.isatty(0))

    rank, world_size = get_dist_info()
    if rank == 0:
        fetch()
    if world_size > 1:
        torch.distributed.barrier()
        fetch()
    return cached


@contextlib.contextmanager
def safe_checkpoint_loading(role: str = 'checkpoint') -> Iterator[None]:
    """While open, MMEngine loads checkpoint files and ``http(s)://`` URLs with
    :func:`load_checkpoint_file` (messages naming ``role``): ``Runner.load_checkpoint``,
    ``Runner.resume``, ``Pretrained`` initialisation and
    ``mmengine.runner.checkpoint._load_checkpoint``. The loaders that were registered before are
    put back on leaving, also on an error."""
    def load_from_local_weights_only(filename: str, map_location=None) -> Any:
        return load_checkpoint_file(filename, map_location, role=role)

    def load_from_url_weights_only(url: str, map_location=None) -> Any:
        return load_checkpoint_file(download_checkpoint(url), map_location,
                                    role=f'{role} ({url})')

    previous: Dict[str, Callable] = {
        prefix: CheckpointLoader._schemes[prefix] for prefix in (_LOCAL_PREFIX, *_HTTP_PREFIXES)}
    CheckpointLoader.register_scheme(_LOCAL_PREFIX, load_from_local_weights_only, force=True)
    CheckpointLoader.register_scheme(_HTTP_PREFIXES, load_from_url_weights_only, force=True)
    try:
        yield
    finally:
        for prefix, loader in previous.items():
            CheckpointLoader.register_scheme(prefix, loader, force=True)
