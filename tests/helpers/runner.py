"""Running configs through MMEngine's Runner on small data: train, resume, inspect checkpoints
and logs, shrink pipelines, write untrained teacher checkpoints (for the end-to-end tests)."""
import copy
import glob
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope
from mmengine.runner import Runner

from mmdistill.engine import safe_checkpoint_loading
from mmdistill.utils import resolve_config_path


def train(cfg: Config, work_dir: str, **options) -> Runner:
    """Train ``cfg`` (with ``options`` merged) in ``work_dir`` and return the runner."""
    cfg = cfg.copy()
    cfg.work_dir = work_dir
    cfg.merge_from_dict(options)
    runner = Runner.from_cfg(cfg)
    with safe_checkpoint_loading('resume' if cfg.get('resume') else 'load_from'):
        runner.train()
    return runner


def latest_checkpoint(work_dir: str) -> str:
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return f.read().strip()


def checkpoint_keys(path: str):
    return torch.load(path, map_location='cpu', weights_only=False)['state_dict'].keys()


def work_dir_files(work_dir: str, pattern: str):
    return sorted(glob.glob(osp.join(work_dir, pattern)))


def set_in_pipeline(pipeline, transform_type: str, **fields) -> list:
    """A copy of ``pipeline`` with ``fields`` set in each transform of ``transform_type``
    (``set_in_pipeline(pipeline, 'Resize', scale=(128, 128))``)."""
    pipeline = copy.deepcopy(list(pipeline))
    matching = [t for t in pipeline if t['type'] == transform_type]
    if not matching:
        raise ValueError(f"no '{transform_type}' in the pipeline "
                         f'{[t["type"] for t in pipeline]}')
    for transform in matching:
        transform.update(fields)
    return pipeline


def write_teacher_checkpoint(config: str, cfg_options: dict, path: str) -> str:
    """Build the model of ``config`` (a file or ``'mmdet::...'``) with ``cfg_options`` in its
    codebase's scope, and save its untrained weights at ``path`` as a teacher checkpoint."""
    cfg = Config.fromfile(resolve_config_path(config))
    cfg.merge_from_dict(cfg_options)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model)
    torch.save({'state_dict': model.state_dict()}, path)
    return path


def logged_history(runner: Runner, key: str) -> list:
    """Every value the runner's message hub logged for ``key`` (``'train/lr'``), in order."""
    return runner.message_hub.get_scalar(key).data[0].tolist()


def logged_loss_terms(runner: Runner) -> dict:
    """The last logged value of every term of the total (each ``train/*loss*`` but the total),
    after checking that the logged total ``train/loss`` is their sum, as mmengine's
    ``parse_losses`` makes it for backward."""
    scalars = runner.message_hub.log_scalars
    terms = {key[len('train/'):]: buffer.current() for key, buffer in scalars.items()
             if key.startswith('train/') and 'loss' in key and key != 'train/loss'}
    total = scalars['train/loss'].current()
    assert terms and abs(total - sum(terms.values())) <= 1e-5 * abs(total), (total, terms)
    return terms


def predict_per_image(model, batch: dict) -> list:
    """``model.test_step`` on each image of ``batch`` alone, as single-image inference APIs
    (``inference_topdown``, ``inference_detector``) run: batches of other sizes may take other
    kernels, and an untrained head's near-tied maxima can then flip on the last bit."""
    predictions = []
    with torch.no_grad():
        for i in range(len(batch['inputs'])):
            predictions += model.test_step({key: value[i:i + 1] for key, value in batch.items()})
    return predictions


def validate_before_and_after_training(cfg: Config, work_dir: str) -> tuple:
    """Validate the model of ``cfg`` as initialised (the weights training starts from), train
    it, validate again; return both metric dicts."""
    cfg = cfg.copy()
    cfg.work_dir = work_dir
    runner = Runner.from_cfg(cfg)
    runner.model.init_weights()  # marks the modules initialised: train() starts from these
    before = runner.val()
    runner.train()
    return before, runner.val_loop.run()
