# The handwritten digits that scikit-learn ships (1797 8×8 images, 10 classes), written by
# benchmarks/digits/run.py as PNG files in mmpretrain's CustomDataset folder layout and upscaled
# to 32×32. Everything below is plain mmpretrain: dataset, pipeline, metric, schedule.
runner_type = 'mmdistill.SafeRunner'  # crash-safe checkpoints, exact resume
default_scope = 'mmpretrain'
data_root = 'data/digits'
max_epochs = 30

data_preprocessor = dict(
    num_classes=10, mean=[32.0, 32.0, 32.0], std=[72.0, 72.0, 72.0], to_rgb=False)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomCrop', crop_size=32, padding=2),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]

train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    dataset=dict(type='CustomDataset', data_root=data_root, data_prefix='train',
                 pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=128,
    num_workers=0,
    dataset=dict(type='CustomDataset', data_root=data_root, data_prefix='val',
                 pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True))
param_scheduler = dict(type='CosineAnnealingLR', T_max=max_epochs, by_epoch=True)
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict()
test_cfg = dict()

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=20),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=max_epochs, max_keep_ckpts=1),
    sampler_seed=dict(type='DistSamplerSeedHook'))
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)
