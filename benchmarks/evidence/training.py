"""Training one evidence run: the one place the harnesses train, time, validate and cache.

Train time has one definition here: the wall-clock time of ``runner.train()`` with validation
switched off inside it (every iteration with its data loading, hooks and checkpoint saves),
and ``ms_per_iter`` is that time over the iterations run. The metric comes from one validation
after training.

A finished run leaves ``result.json`` in its work dir, stamped with a fingerprint of what its
result depends on (:func:`run_fingerprint`: the merged config with the places it reads and
writes left out, plus the fingerprints of what it was trained from); a later command with the
same fingerprint reads it instead of training again, from any checkout and any spelling of
the work dir.
"""
import hashlib
import json
import os.path as osp
import time
from typing import Callable, Dict, Optional, Sequence

from mmengine.config import Config
from mmengine.runner import Runner

from mmdistill.engine import build_runner, train_with_safe_loading

from .provenance import collect_provenance

RESULT_FILE = 'result.json'
DATA_ROOT_KEYS = tuple(f'{split}_dataloader.dataset.data_root'
                       for split in ('train', 'val', 'test'))


def run_fingerprint(cfg: Config, places: Dict[str, str], depends_on: Sequence[str] = ()) -> str:
    """A 16-digit hash of ``cfg`` (as text, each path of ``places`` replaced by its placeholder,
    the longest first, so that a path inside another is not half replaced) followed by
    ``depends_on`` (data arguments, the fingerprints of the teachers the run distils from)."""
    text = json.dumps(cfg.to_dict(), sort_keys=True, default=repr)  # no line wrapping
    for path in sorted(places, key=len, reverse=True):
        text = text.replace(path, places[path])
    text += ''.join(depends_on)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_fingerprint(path: str) -> str:
    """A 16-digit hash of a file's bytes: the fingerprint of a checkpoint no run of this
    module wrote (given on the command line, or exported from one)."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()[:16]


def _without_validation_inside_training(cfg: Config) -> None:
    train_cfg = cfg.train_cfg
    length = train_cfg.get('max_epochs', train_cfg.get('max_iters'))
    train_cfg.val_begin = length + 1  # validation is run once, after training, and not timed


def read_cached(work_dir: str, fingerprint: str) -> Optional[dict]:
    """The result a run with ``fingerprint`` left in ``work_dir``, with its checkpoint as this
    command spells the work dir; ``None`` when there is none or it was another run's."""
    result_file = osp.join(work_dir, RESULT_FILE)
    if not osp.exists(result_file):
        return None
    with open(result_file) as f:
        result = json.load(f)
    if result.get('fingerprint') != fingerprint:
        return None
    print(f'(read from {result_file})', flush=True)
    return dict(result, checkpoint=osp.join(work_dir, osp.basename(result['checkpoint'])),
                cached=True)


def train_and_validate(cfg: Config, metric: str, fingerprint: str,
                       summarise: Optional[Callable[[Runner], dict]] = None,
                       missing_metric: Optional[float] = None, retrain: bool = False) -> dict:
    """Train ``cfg`` (its ``work_dir`` set) with its runner (``mmdistill.SafeRunner`` unless
    it names another), validate once and return
    ``dict(metric, seconds, ms_per_iter, checkpoint, fingerprint, provenance, cached=False)``
    plus what ``summarise(runner)`` adds; the same dict is saved as ``result.json``. A run of
    the same ``fingerprint`` already in the work dir is read instead (``cached=True``) unless
    ``retrain``. ``missing_metric`` stands for a metric the evaluator leaves out (mmdet's
    ``CocoMetric`` returns nothing when no box passes its score threshold)."""
    if not retrain:
        cached = read_cached(cfg.work_dir, fingerprint)
        if cached is not None:
            return cached
    cfg = cfg.copy()
    _without_validation_inside_training(cfg)
    provenance = collect_provenance()
    runner = build_runner(cfg, 'the evidence harness')
    start = time.perf_counter()
    train_with_safe_loading(runner)
    seconds = time.perf_counter() - start
    metrics = runner.val_loop.run()
    if metric not in metrics and missing_metric is not None:
        metrics = dict(metrics, **{metric: missing_metric})
    with open(osp.join(cfg.work_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    result = dict(metric=float(metrics[metric]), seconds=seconds,
                  ms_per_iter=1000 * seconds / runner.iter, checkpoint=checkpoint,
                  fingerprint=fingerprint, provenance=provenance,
                  **(summarise(runner) if summarise else {}))
    with open(osp.join(cfg.work_dir, RESULT_FILE), 'w') as f:
        json.dump(result, f, indent=1)
    return dict(result, cached=False)


def train_run(cfg: Config, metric: str, data_root: str, configs: str,
              starts_from: Sequence[dict] = (), **options) -> dict:
    """Train a harness's run with :func:`train_and_validate`: ``cfg`` (its ``work_dir`` and the
    run's options merged) reads its data under ``data_root`` (set here for its three
    dataloaders) and starts from the runs ``starts_from`` (each a ``checkpoint`` the options
    name and its ``fingerprint``: a teacher, the model it prunes). Its fingerprint leaves out
    the work dir, the data root, the ``configs`` folder and those checkpoints, and includes the
    fingerprints of the runs it starts from."""
    cfg.merge_from_dict({key: data_root for key in DATA_ROOT_KEYS})
    places = {cfg.work_dir: '<work dir>', data_root: '<data root>', configs: '<configs>',
              **{run['checkpoint']: f'<start {i}>' for i, run in enumerate(starts_from)}}
    fingerprint = run_fingerprint(cfg, places, [run['fingerprint'] for run in starts_from])
    return train_and_validate(cfg, metric, fingerprint, **options)
