"""UPop in two processes (CPU, gloo) through MMEngine's Runner, prepared as ``tools/train.py
--launcher pytorch`` prepares it (``dist_utils``), against one process at the same total batch.

The project's DeiT config on 20 digits: 2 steps an epoch (two processes × 5 images, or one
process × 10), a search of 2 epochs (T = 4 steps, masks updated after steps 2 and 3), then
retraining, then a resume in two processes from the checkpoint the hook saved after
compression. It asserts that:

- both ranks accumulate the same scores (the processes' mean mask gradient), select the same
  units, and end with bit-identical weights; the retraining steps after compression run (the
  wrapper was rebuilt: the old one fails at the first backward with "invalid gradient");
- one process at batch 10 sees the same samples per step, sets the same masks at every update
  and ends with the same architecture (the same kept units of every layer) and the same weights
  to float precision: only the order of the float reductions differs (a mean over 10 samples
  against the mean of two means over 5). Measured: scores 7e-7 apart relative to their largest
  value, weights at most 4.5e-8 apart after 6 steps; asserted to 1e-5 relative and 1e-6
  absolute. The test trains with SGD: with the config's AdamW, weights whose gradient is about
  0 take steps of ±lr whose sign follows the reduction noise (measured 2.7e-4 apart at lr 5e-4
  after 6 steps, same architecture);
- the checkpoint saved right after compression resumes in two processes with the compressed
  architecture, and both ranks again end identical.
"""
import os.path as osp

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner

from benchmarks.digits.run import write_digits
from e2e.dist_utils import run_in_processes, sample_ids

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(ROOT, 'projects', 'upop', 'configs', 'upop-deit-digits.py')
TINY = dict(embed_dims=16, num_layers=2, num_heads=2, feedforward_channels=32)
TOTAL_BATCH = 10


def upop_options(digits_root: str, batch_size: int) -> dict:
    return {
        'model.backbone.arch': TINY,
        'model.backbone.patch_size': 8,
        'model.head.in_channels': TINY['embed_dims'],
        'train_dataloader.dataset.data_root': digits_root,
        'val_dataloader.dataset.data_root': digits_root,
        'train_dataloader.batch_size': batch_size,
        # no random crops: the processes' augmentation draws would differ from one process's
        'train_dataloader.dataset.pipeline': [dict(type='LoadImageFromFile'),
                                              dict(type='PackInputs')],
        'train_cfg.max_epochs': 3,
        'train_cfg.val_interval': 10,
        'default_hooks.checkpoint': dict(interval=3, max_keep_ckpts=-1),
        'custom_hooks.0.search_epochs': 2,
        'custom_hooks.0.interval': 2,
        # SGD, not the config's AdamW: see the module's docstring
        'optim_wrapper.optimizer': dict(type='SGD', lr=0.05, momentum=0.9),
        'load_from': None,
        'randomness': dict(seed=0),
    }


class UPopProbe(Hook):
    """What one process saw and holds: the samples of each step, the scores and masks after
    each search step, the wrapper and widths after training, the final weights."""

    priority = 'LOWEST'

    def __init__(self):
        self.record = dict(ids=[], scores=[], masks=[])

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        upop = next(h for h in runner.hooks if type(h).__name__ == 'UPopHook')
        self.record['ids'].append(sample_ids(data_batch['data_samples']))
        if not upop.compressed:
            self.record['scores'].append([s.score.clone() for s in upop.structures])
            self.record['masks'].append([s.mask.detach().clone() for s in upop.structures])

    def after_train(self, runner) -> None:
        upop = next(h for h in runner.hooks if type(h).__name__ == 'UPopHook')
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        self.record.update(
            iter=runner.iter, wrapper=type(runner.model).__name__,
            wraps_the_model=is_model_wrapper(runner.model) and runner.model.module is model,
            widths=[s.num_units for s in upop.structures],
            state={k: v.detach().clone() for k, v in model.state_dict().items()})


def train_upop(rank: int, cfg_path: str, work_dir: str, options: dict, out: str) -> None:
    """One process of the run (``rank`` < 0: a single process without a launcher)."""
    from mmdistill.engine import safe_checkpoint_loading, setup_distributed
    cfg = Config.fromfile(cfg_path)
    cfg.work_dir = work_dir
    cfg.merge_from_dict(options)
    if rank >= 0:
        cfg.launcher = 'pytorch'
        setup_distributed(cfg)
    runner = Runner.from_cfg(cfg)
    probe = UPopProbe()
    runner.register_hook(probe)
    with safe_checkpoint_loading('resume' if cfg.get('resume') else 'load_from'):
        runner.train()  # MMEngine's Runner: checkpoints loaded weights-only, as tools/train.py
    torch.save(probe.record, out)
    if rank >= 0:
        torch_dist.barrier()


def two_process_phases(rank: int, phases: list) -> None:
    """``run_in_processes`` target: each phase ``(config, work_dir, options, out)`` in turn,
    ``out`` formatted with the rank."""
    for cfg_path, work_dir, options, out in phases:
        train_upop(rank, cfg_path, work_dir, options, out.format(rank=rank))


def load(path: str) -> dict:
    return torch.load(path, weights_only=False)


def test_upop_in_two_processes_equals_one_process_at_the_same_total_batch(tmp_path):
    root = str(tmp_path / 'digits')
    write_digits(root, limit=40)  # 20 train, 20 val
    work_dir = str(tmp_path / 'ddp')
    per_rank = upop_options(root, TOTAL_BATCH // 2)
    resume = dict(per_rank, resume=True, load_from=osp.join(work_dir, 'epoch_2.pth'),
                  **{'train_cfg.max_epochs': 4})
    run_in_processes(two_process_phases, [
        (CONFIG, work_dir, per_rank, str(tmp_path / 'ddp_rank{rank}.pth')),
        (CONFIG, str(tmp_path / 'ddp_resumed'), resume, str(tmp_path / 'resumed_rank{rank}.pth')),
    ])
    train_upop(-1, CONFIG, str(tmp_path / 'single'), upop_options(root, TOTAL_BATCH),
               str(tmp_path / 'single.pth'))
    ranks = [load(str(tmp_path / f'ddp_rank{r}.pth')) for r in range(2)]
    single = load(str(tmp_path / 'single.pth'))

    # the two ranks: the same scores and masks at every search step, identical weights
    assert [r['iter'] for r in ranks] == [6, 6] and single['iter'] == 6
    for rank in ranks:
        assert rank['wrapper'] == 'AnyDeviceDistributedDataParallel' and rank['wraps_the_model']
        assert len(rank['scores']) == 3  # the search steps before the last (compression)
    for key in ('scores', 'masks'):
        for step0, step1 in zip(ranks[0][key], ranks[1][key]):
            for a, b in zip(step0, step1):
                torch.testing.assert_close(b, a, rtol=0, atol=0)
    assert ranks[0]['widths'] == ranks[1]['widths']
    dense = [8, 32, 8, 32]
    assert ranks[0]['widths'] != dense  # pruned
    for key, value in ranks[0]['state'].items():
        torch.testing.assert_close(ranks[1]['state'][key], value, rtol=0, atol=0, msg=key)

    # one process at batch 10: the same samples per step, architecture and (nearly) weights
    for step, ids in enumerate(single['ids']):
        assert sorted(ids) == sorted(ranks[0]['ids'][step] + ranks[1]['ids'][step])
    assert single['widths'] == ranks[0]['widths']
    for step0, step1 in zip(single['masks'], ranks[0]['masks']):
        for a, b in zip(step0, step1):
            torch.testing.assert_close(b, a, rtol=0, atol=0)  # the same selection every time
    for step0, step1 in zip(single['scores'], ranks[0]['scores']):
        for a, b in zip(step0, step1):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-8)
    assert single['state'].keys() == ranks[0]['state'].keys()
    for key, value in single['state'].items():
        torch.testing.assert_close(ranks[0]['state'][key], value, rtol=1e-5, atol=1e-6, msg=key)

    # the checkpoint saved after compression resumes in two processes, compressed
    compressed = load(osp.join(work_dir, 'epoch_2.pth'))
    assert compressed['meta']['iter'] == 4 and compressed['meta']['epoch'] == 2
    assert not any('upop' in k for k in compressed['state_dict'])
    resumed = [load(str(tmp_path / f'resumed_rank{r}.pth')) for r in range(2)]
    for rank in resumed:
        assert rank['iter'] == 8 and rank['widths'] == ranks[0]['widths']
        assert rank['wraps_the_model'] and rank['scores'] == []  # no search left to run
    for key, value in resumed[0]['state'].items():
        torch.testing.assert_close(resumed[1]['state'][key], value, rtol=0, atol=0, msg=key)
        assert value.shape == ranks[0]['state'][key].shape
