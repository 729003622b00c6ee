"""UPop end to end through MMEngine's Runner with the project's configs (a tiny DeiT on a slice
of the digits): search → compress → retrain in one run, resume mid-search and after
compression, export and load with mmpretrain's API, run.py's cost step on a dense run and an
export, the KD config, the magnitude baselines, the dual encoder."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from benchmarks.digits.run import write_digits
from helpers.runner import train
from projects.upop.benchmark import count_params
from projects.upop.upop import export_pruned
from projects.upop.upop.hooks import (MagnitudePruningToWidthsHook,
                                      ProgressiveMagnitudePruningHook, StructuredPruningHook,
                                      UniformMagnitudePruningHook, UPopHook)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = osp.join(ROOT, 'projects', 'upop', 'configs')
TINY = dict(embed_dims=16, num_layers=2, num_heads=2, feedforward_channels=32)
BUDGET = 0.5


@pytest.fixture(scope='module')
def digits_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('digits'))
    write_digits(root, limit=40)  # 20 train, 20 val
    return root


def pruning_hook(runner, kind):
    """The run's one pruning hook, which must be a ``kind`` (not a subclass of it)."""
    hooks = [h for h in runner.hooks if isinstance(h, StructuredPruningHook)]
    assert len(hooks) == 1 and type(hooks[0]) is kind, hooks
    return hooks[0]


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


def assert_near_budget(removed: float, total: float, hook) -> None:
    """The reference's boundary keeps the unit at the threshold (the nearest cumulative cost
    counts it) and each layer's lowest unit even when it ranks above: the pruned cost is at
    most half a unit above the budget's and, in these runs, less than two units below."""
    unit = max(s.unit_cost for s in hook.structures)
    assert BUDGET * total - 2 * unit < removed <= BUDGET * total + unit / 2


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
    hook = pruning_hook(runner, UPopHook)
    assert hook.compressed

    # the search's result: the pruned share of the cost is the budget's, to the reference's
    # boundary (exact rule: tests/test_upop.py)
    dense_units = {'attn': TINY['embed_dims'] // TINY['num_heads'],
                   'mlp': TINY['feedforward_channels']}
    removed = sum((dense_units[s.kind] - s.num_units) * s.unit_cost for s in hook.structures)
    total = sum(dense_units[s.kind] * s.unit_cost for s in hook.structures)
    assert_near_budget(removed, total, hook)
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
    assert "imports=['mmdistill.pruning'" in text.replace('\n', '').replace(' ', '')

    # ... and so does a process that has only the mmdistill package, not this checkout
    batch = runner.model.data_preprocessor(next(iter(runner.val_dataloader)), False)
    plain = load_in_plain_process(tmp_path, config, checkpoint, batch['inputs'])
    assert plain['projects'] == []
    for loaded in plain['outputs']:
        torch.testing.assert_close(torch.tensor(loaded), expected)


def test_run_cost_step_loads_the_dense_training_checkpoint_and_the_export(digits_root, tmp_path):
    """upop run.py's cost step on real runs: the dense model read back from its training
    checkpoint (message hub, optimiser state) and UPop's export, both with mmpretrain's API;
    the counts are those of the models the runs trained."""
    from conftest import project_script
    dense_dir, upop_dir = str(tmp_path / 'dense'), str(tmp_path / 'upop')
    dense_opts = {key: value for key, value in options(digits_root).items()
                  if not key.startswith('custom_hooks')}
    dense = train(Config.fromfile(osp.join(CONFIGS, 'deit-digits.py')), dense_dir,
                  **{**dense_opts, 'train_cfg.max_epochs': 1, 'train_cfg.val_interval': 1})
    upop = train(Config.fromfile(osp.join(CONFIGS, 'upop-deit-digits.py')), upop_dir,
                 **options(digits_root, load_from=f'{dense_dir}/epoch_1.pth'))
    exported = export_pruned(osp.join(upop_dir, 'upop-deit-digits.py'),
                             f'{upop_dir}/epoch_3.pth', str(tmp_path / 'exported'))
    runs = {'dense': [dict(config=osp.join(dense_dir, 'deit-digits.py'),
                           checkpoint=f'{dense_dir}/epoch_1.pth')],
            'dense, retrained': [dict()],  # costs what the dense model does: not measured
            f'upop p={BUDGET}': [dict(exported=exported)]}

    cost = project_script('upop').seed0_cost(runs, rounds=2)

    assert list(cost) == ['dense', f'upop p={BUDGET}']
    params = {name: count_params(runner.model)
              for name, runner in (('dense', dense), (f'upop p={BUDGET}', upop))}
    assert {name: c['params'] for name, c in cost.items()} == params
    assert params[f'upop p={BUDGET}'] < params['dense']
    assert cost['dense']['flops_reduction'] == 1
    assert cost[f'upop p={BUDGET}']['flops_reduction'] > 1
    for c in cost.values():
        assert set(c['forward_ms']) == {'attention', 'matmul', 'other'}
        assert c['images_per_s'] > 0 and all(ms >= 0 for ms in c['forward_ms'].values())


# Run in a fresh interpreter whose only mmdistill is the package (no checkout, so no projects/
# on sys.path): load with mmpretrain's API, report the outputs on the given images.
LOADER = r'''
import json, sys
import torch
from mmpretrain.apis import get_model, init_model
config, checkpoint, images = sys.argv[1:]
inputs = torch.load(images)
outputs = []
for model in (get_model(config, pretrained=checkpoint, device='cpu'),
              init_model(config, checkpoint, device='cpu')):
    with torch.no_grad():
        outputs.append(model.eval()(inputs, mode='tensor').tolist())
print(json.dumps(dict(outputs=outputs, projects=[m for m in sys.modules
                                                  if m.split('.')[0] == 'projects'])))
'''


def load_in_plain_process(tmp_path, config: str, checkpoint: str, inputs: torch.Tensor) -> dict:
    """Run :data:`LOADER` with only this repository's ``mmdistill`` package importable (a link
    to it in an otherwise empty folder on ``PYTHONPATH``), from an empty working directory."""
    package_dir, cwd = tmp_path / 'site', tmp_path / 'cwd'
    package_dir.mkdir()
    cwd.mkdir()
    os.symlink(osp.join(ROOT, 'mmdistill'), str(package_dir / 'mmdistill'))
    images = str(tmp_path / 'inputs.pth')
    torch.save(inputs, images)
    env = dict(os.environ, PYTHONPATH=str(package_dir))
    done = subprocess.run([sys.executable, '-c', LOADER, config, checkpoint, images],
                          cwd=str(cwd), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_checkpoint_saved_after_compression_resumes_compressed(digits_root, tmp_path):
    """With checkpoints only at the end of the run, the hook still saves one right after
    compression (epoch 2's end) through the runner's CheckpointHook; a resume from it narrows
    the model and ends with the uninterrupted run's weights."""
    cfg = Config.fromfile(osp.join(CONFIGS, 'upop-deit-digits.py'))
    opts = options(digits_root, **{'default_hooks.checkpoint.interval': 3})
    work_dir = str(tmp_path / 'run')
    runner = train(cfg, work_dir, **opts)
    hook = pruning_hook(runner, UPopHook)
    assert sorted(f for f in os.listdir(work_dir) if f.endswith('.pth')) == \
        ['epoch_2.pth', 'epoch_3.pth']
    saved = torch.load(f'{work_dir}/epoch_2.pth', map_location='cpu', weights_only=False)
    assert (saved['meta']['epoch'], saved['meta']['iter']) == (2, 8)
    assert saved['state_dict']['backbone.layers.0.attn.qkv.weight'].shape[0] == \
        3 * TINY['num_heads'] * hook.structures[0].num_units
    assert 'optimizer' in saved and 'param_schedulers' in saved
    final = state(f'{work_dir}/epoch_3.pth')
    resumed = train(cfg, str(tmp_path / 'resumed'), resume=True,
                    **{**opts, 'load_from': f'{work_dir}/epoch_2.pth'})
    resumed_hook = pruning_hook(resumed, UPopHook)
    assert resumed_hook.describe_widths() == hook.describe_widths()
    again = resumed.model.state_dict()
    assert again.keys() == final.keys()
    for key, value in final.items():
        torch.testing.assert_close(again[key], value, rtol=0, atol=0, msg=key)


def test_uniform_magnitude_baseline(digits_root, tmp_path):
    cfg = Config.fromfile(osp.join(CONFIGS, 'magnitude-deit-digits.py'))
    opts = options(digits_root, **{'train_cfg.max_epochs': 1})
    for key in [k for k in opts if k.startswith('custom_hooks.0.') and 'budget' not in k]:
        opts.pop(key)
    runner = train(cfg, str(tmp_path / 'run'), **opts)
    hook = pruning_hook(runner, UniformMagnitudePruningHook)
    assert hook.describe_widths() == 'attn head dims [4, 4]; mlp hidden units [16, 16]'
    assert runner.model.backbone.layers[1].attn.qkv.weight.shape == (3 * 2 * 4, 16)


def test_kd_from_the_unpruned_model(digits_root, tmp_path):
    """One config: the pruned student distils from the dense model (the teacher); the exported
    student loads in a process with only the mmdistill package."""
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
    expected = outputs(runner)
    torch.testing.assert_close(outputs(runner, get_model(config, pretrained=checkpoint)),
                               expected)
    batch = runner.model.data_preprocessor(next(iter(runner.val_dataloader)), False)
    plain = load_in_plain_process(tmp_path, config, checkpoint, batch['inputs'])
    assert plain['projects'] == []
    for loaded in plain['outputs']:
        torch.testing.assert_close(torch.tensor(loaded), expected)


DUAL_ENCODER_UNITS = {('vision', 'attn'): 8, ('vision', 'mlp'): 32, ('text', 'attn'): 8,
                      ('text', 'mlp'): 64}  # of dual_encoder_options' towers, per layer


def unit_counts(hook) -> dict:
    """Structure path -> units it keeps, for a pruning hook's structures."""
    return {s.path: s.num_units for s in hook.structures}


def dual_encoder_options(digits_root, **more):
    """``options`` for crossget's dual encoder, tiny: two towers of 2 layers."""
    opts = options(digits_root, **{
        'model.vision.arch': TINY, 'model.vision.patch_size': 8,
        'model.text': dict(width=16, layers=2, heads=2), 'model.embed_dims': 8}, **more)
    for key in ('model.backbone.arch', 'model.backbone.patch_size', 'model.head.in_channels'):
        opts.pop(key)
    return opts


def test_dual_encoder_baselines_prune_both_towers(digits_root, tmp_path):
    """The dual encoder's baselines for projects/upop/run.py --model dual-encoder: progressive
    magnitude (configs/progressive-magnitude-dual-encoder-digits.py) compresses every attention
    layer and MLP of both towers to half its units; magnitude at UPop's widths
    (configs/magnitude-upop-widths-dual-encoder-digits.py) gives every structure of both towers
    the width a UPop run's checkpoint has."""
    def run(config, name, kind, **hook_options):
        opts = {key: value for key, value in dual_encoder_options(digits_root).items()
                if not (hook_options and key.startswith('custom_hooks.0.'))}
        opts.update({f'custom_hooks.0.{key}': value for key, value in hook_options.items()})
        return pruning_hook(train(Config.fromfile(osp.join(CONFIGS, config)),
                                  str(tmp_path / name), **opts), kind)

    progressive = run('progressive-magnitude-dual-encoder-digits.py', 'progressive',
                      ProgressiveMagnitudePruningHook)
    assert progressive.compressed
    assert unit_counts(progressive) == {
        s.path: DUAL_ENCODER_UNITS[s.path.split('.')[0], s.kind] // 2
        for s in progressive.structures}
    assert {s.path.split('.')[0] for s in progressive.structures} == {'vision', 'text'}

    upop = run('upop-dual-encoder-digits.py', 'upop', UPopHook)
    widths = run('magnitude-upop-widths-dual-encoder-digits.py', 'widths',
                 MagnitudePruningToWidthsHook, widths_from=str(tmp_path / 'upop' / 'epoch_3.pth'))
    assert unit_counts(widths) == unit_counts(upop)


def test_dual_encoder_both_towers(digits_root, tmp_path):
    """configs/upop-dual-encoder-digits.py: one ranking over the image and the text tower,
    compression of both, an export that mmpretrain's get_model loads with the same outputs, and
    a resume after compression (the text tower's replaced attention is narrowed before the
    checkpoint loads) that ends where the run ended."""
    cfg = Config.fromfile(osp.join(CONFIGS, 'upop-dual-encoder-digits.py'))
    opts = dual_encoder_options(digits_root)
    runner = train(cfg, str(tmp_path / 'run'), **opts)
    hook = pruning_hook(runner, UPopHook)
    assert hook.compressed
    removed, total = {'vision': 0, 'text': 0}, 0
    for s in hook.structures:
        tower = s.path.split('.')[0]
        removed[tower] += (DUAL_ENCODER_UNITS[tower, s.kind] - s.num_units) * s.unit_cost
        total += DUAL_ENCODER_UNITS[tower, s.kind] * s.unit_cost
    assert removed['vision'] > 0 and removed['text'] > 0
    assert_near_budget(sum(removed.values()), total, hook)
    final = state(str(tmp_path / 'run' / 'epoch_3.pth'))

    # export: mmdistill.UPopPrunedModel with the towers' widths; mmpretrain's API loads it
    from mmpretrain.apis import get_model
    checkpoint, config = export_pruned(str(tmp_path / 'run' / 'upop-dual-encoder-digits.py'),
                                       str(tmp_path / 'run' / 'epoch_3.pth'),
                                       str(tmp_path / 'exported'))
    exported = Config.fromfile(config)
    assert exported.custom_imports['imports'] == ['projects.crossget.crossget',
                                                  'mmdistill.pruning']
    assert exported.model['type'] == 'mmdistill.UPopPrunedModel'
    assert exported.model['widths'] == {s.path: s.num_units for s in hook.structures
                                        if s.num_units < DUAL_ENCODER_UNITS[
                                            s.path.split('.')[0], s.kind]}
    torch.testing.assert_close(outputs(runner, get_model(config, pretrained=checkpoint)),
                               outputs(runner))

    resumed = train(cfg, str(tmp_path / 'resumed'), resume=True,
                    **{**opts, 'load_from': str(tmp_path / 'run' / 'epoch_2.pth')})
    again = resumed.model.state_dict()
    assert again.keys() == final.keys()
    for key, value in final.items():
        torch.testing.assert_close(again[key], value, msg=key)
