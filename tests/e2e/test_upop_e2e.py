"""UPop end to end through MMEngine's Runner with the project's configs (a tiny DeiT on a slice
of the digits): search → compress → retrain in one run, resume mid-search and after
compression, export and load with mmpretrain's API, the KD config, the magnitude baseline."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from benchmarks.digits.run import write_digits
from helpers.runner import train
from projects.upop.upop import export_pruned

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = osp.join(ROOT, 'projects', 'upop', 'configs')
TINY = dict(embed_dims=16, num_layers=2, num_heads=2, feedforward_channels=32)
BUDGET = 0.5


@pytest.fixture(scope='module')
def digits_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('digits'))
    write_digits(root, limit=40)  # 20 train, 20 val
    return root


def options(digits_root, prefix='model', **more):
    return {
        f'{prefix}.backbone.arch': TINY,
        f'{prefix}.backbone.patch_size': 8,
        f'{prefix}.head.in_channels': TINY['embed_dims'],
        'train_dataloader.dataset.data_root': digits_root,
        'val_dataloader.dataset.data_root': digits_root,
        'train_dataloader.batch_size': 5,  # 4 iterations per epoch
        # no random crops: a resumed run then sees exactly the uninterrupted run's batches
        'train_dataloader.dataset.pipeline': [dict(type='LoadImageFromFile'),
                                              dict(type='PackInputs')],
        'train_cfg.max_epochs': 3,
        'train_cfg.val_interval': 3,
        'default_hooks.checkpoint.interval': 1,
        'default_hooks.checkpoint.max_keep_ckpts': 3,
        'default_hooks.logger.interval': 1,
        'custom_hooks.0.search_epochs': 2,  # 8 search steps: masks updated at 2, 5 and 7
        'custom_hooks.0.interval': 3,
        'custom_hooks.0.budget': BUDGET,
        'load_from': None,
        **more,
    }


def state(path):
    return torch.load(path, map_location='cpu', weights_only=False)['state_dict']


def outputs(runner, model=None):
    batch = next(iter(runner.val_dataloader))
    model = (model or runner.model).eval()
    data = model.data_preprocessor(batch, False)
    with torch.no_grad():
        return model(data['inputs'], mode='tensor')


def test_search_compress_retrain_resume_export(digits_root, tmp_path):
    from mmpretrain.apis import get_model, init_model
    cfg = Config.fromfile(osp.join(CONFIGS, 'upop-deit-digits.py'))
    opts = options(digits_root)
    work_dir = str(tmp_path / 'run')
    runner = train(cfg, work_dir, **opts)
    hook = next(h for h in runner.hooks if type(h).__name__ == 'UPopHook')
    assert hook.compressed

    # the search's result: the pruned share of the cost is the budget, to one unit's cost
    dense_units = {'attn': TINY['embed_dims'] // TINY['num_heads'],
                   'mlp': TINY['feedforward_channels']}
    removed = sum((dense_units[s.kind] - s.num_units) * s.unit_cost for s in hook.structures)
    total = sum(dense_units[s.kind] * s.unit_cost for s in hook.structures)
    assert abs(removed - BUDGET * total) <= max(s.unit_cost for s in hook.structures) / 2
    assert runner.message_hub.get_scalar('train/upop_pruned_share').current() == \
        pytest.approx(removed / total)

    # epoch 1: mid-search (masks and accumulated gradients saved); epoch 2: compressed
    mid, after = state(f'{work_dir}/epoch_1.pth'), state(f'{work_dir}/epoch_2.pth')
    assert mid['backbone.layers.0.attn.upop_mask'].shape == (8, )
    assert mid['backbone.layers.0.attn.upop_score'].abs().sum() > 0
    assert not any('upop' in k for k in after)
    final = state(f'{work_dir}/epoch_3.pth')
    assert after['backbone.layers.1.ffn.layers.0.0.weight'].shape == \
        final['backbone.layers.1.ffn.layers.0.0.weight'].shape == \
        (hook.structures[3].num_units, TINY['embed_dims'])

    # resuming mid-search and after compression both end where the uninterrupted run ended
    for resume_from in ('epoch_1.pth', 'epoch_2.pth'):
        resumed = train(cfg, str(tmp_path / f'resume_{resume_from}'), resume=True,
                        **{**opts, 'load_from': f'{work_dir}/{resume_from}'})
        again = resumed.model.state_dict()
        assert again.keys() == final.keys()
        for key, value in final.items():
            torch.testing.assert_close(again[key], value, msg=f'{resume_from}: {key}')

    # export: mmpretrain's own API loads it and computes what the run's model computes
    run_config = osp.join(work_dir, 'upop-deit-digits.py')  # the Runner's dump of the config
    checkpoint, config = export_pruned(run_config, f'{work_dir}/epoch_3.pth',
                                       str(tmp_path / 'exported'))
    expected = outputs(runner)
    for loaded in (get_model(config, pretrained=checkpoint),
                   init_model(config, checkpoint, device='cpu')):
        torch.testing.assert_close(outputs(runner, loaded), expected)
    text = open(config).read()
    assert 'UPopHook' not in text and 'UPopPrunedBackbone' in text


def test_uniform_magnitude_baseline(digits_root, tmp_path):
    cfg = Config.fromfile(osp.join(CONFIGS, 'magnitude-deit-digits.py'))
    opts = options(digits_root, **{'train_cfg.max_epochs': 1})
    for key in [k for k in opts if k.startswith('custom_hooks.0.') and 'budget' not in k]:
        opts.pop(key)
    runner = train(cfg, str(tmp_path / 'run'), **opts)
    hook = runner.hooks[[type(h).__name__ for h in runner.hooks].index(
        'UniformMagnitudePruningHook')]
    assert hook.describe_widths() == 'attn head dims [4, 4]; mlp hidden units [16, 16]'
    assert runner.model.backbone.layers[1].attn.qkv.weight.shape == (3 * 2 * 4, 16)


def test_kd_from_the_unpruned_model(digits_root, tmp_path):
    """One config: the pruned student distils from the dense model (the teacher)."""
    from mmpretrain.registry import MODELS
    dense_cfg = Config.fromfile(osp.join(CONFIGS, 'deit-digits.py'))
    dense_cfg.merge_from_dict({'model.backbone.arch': TINY, 'model.backbone.patch_size': 8,
                               'model.head.in_channels': 16})
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        dense = MODELS.build(dense_cfg.model)
    dense_ckpt = str(tmp_path / 'dense.pth')
    torch.save({'state_dict': dense.state_dict()}, dense_ckpt)

    cfg = Config.fromfile(osp.join(CONFIGS, 'kd-upop-deit-digits.py'))
    opts = options(digits_root, prefix='model.student', **{
        'model.student.init_cfg.checkpoint': dense_ckpt,
        'model.teacher.checkpoint': dense_ckpt,
        'model.teacher.cfg_options': {'model.backbone.arch': TINY, 'model.backbone.patch_size': 8,
                                      'model.head.in_channels': 16},
        'train_cfg.max_epochs': 3})
    runner = train(cfg, str(tmp_path / 'run'), **opts)
    distiller = runner.model
    assert 'train/loss_kd' in runner.message_hub.log_scalars
    student_qkv = distiller.student.backbone.layers[0].attn.qkv.weight
    assert student_qkv.shape[0] < 3 * 16  # pruned
    for key, value in distiller.teacher.state_dict().items():  # dense, frozen, untouched
        torch.testing.assert_close(value, dense.state_dict()[key])
    checkpoint, config = export_pruned(osp.join(str(tmp_path / 'run'), 'kd-upop-deit-digits.py'),
                                       str(tmp_path / 'run' / 'epoch_3.pth'),
                                       str(tmp_path / 'exported'))
    from mmpretrain.apis import get_model
    torch.testing.assert_close(outputs(runner, get_model(config, pretrained=checkpoint)),
                               outputs(runner))


def test_dual_encoder_both_towers(digits_root, tmp_path):
    """configs/upop-dual-encoder-digits.py: one ranking over the image and the text tower,
    compression of both, and a resume after compression (the text tower's replaced attention
    is narrowed before the checkpoint loads) that ends where the run ended."""
    cfg = Config.fromfile(osp.join(CONFIGS, 'upop-dual-encoder-digits.py'))
    opts = options(digits_root, **{
        'model.vision.arch': TINY, 'model.vision.patch_size': 8,
        'model.text': dict(width=16, layers=2, heads=2), 'model.embed_dims': 8})
    for key in ('model.backbone.arch', 'model.backbone.patch_size', 'model.head.in_channels'):
        opts.pop(key)
    runner = train(cfg, str(tmp_path / 'run'), **opts)
    hook = next(h for h in runner.hooks if type(h).__name__ == 'UPopHook')
    assert hook.compressed
    dense_units = {('vision', 'attn'): 8, ('vision', 'mlp'): 32, ('text', 'attn'): 8,
                   ('text', 'mlp'): 64}
    removed, total = {'vision': 0, 'text': 0}, 0
    for s in hook.structures:
        tower = s.path.split('.')[0]
        removed[tower] += (dense_units[tower, s.kind] - s.num_units) * s.unit_cost
        total += dense_units[tower, s.kind] * s.unit_cost
    assert removed['vision'] > 0 and removed['text'] > 0
    assert abs(sum(removed.values()) - BUDGET * total) <= \
        max(s.unit_cost for s in hook.structures) / 2
    final = state(str(tmp_path / 'run' / 'epoch_3.pth'))
    resumed = train(cfg, str(tmp_path / 'resumed'), resume=True,
                    **{**opts, 'load_from': str(tmp_path / 'run' / 'epoch_2.pth')})
    again = resumed.model.state_dict()
    assert again.keys() == final.keys()
    for key, value in final.items():
        torch.testing.assert_close(again[key], value, msg=key)
