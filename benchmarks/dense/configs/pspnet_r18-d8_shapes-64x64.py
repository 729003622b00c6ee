# The student: mmseg's PSPNet-R18-d8 recipe, retargeted at the generated shapes that
# benchmarks/dense/run.py writes (mmseg's img_dir/ann_dir layout, 64×64 images, background + 3
# shape classes, outlines labelled 255). Only sizes, data and the schedule change; the
# segmentor, its losses, the pipeline's transforms and IoUMetric are mmseg's own.
_base_ = 'mmseg::pspnet/pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py'
runner_type = 'mmdistill.SafeRunner'  # crash-safe checkpoints, exact resume

data_root = 'work_dirs/dense_seg/data/'  # run.py sets its own
crop_size = (64, 64)
metainfo = dict(classes=('background', 'red_rectangle', 'green_ellipse', 'blue_rectangle'),
                palette=[(0, 0, 0), (220, 40, 40), (40, 200, 60), (50, 90, 230)])
max_iters = 300

data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,  # no ImageNet weights (no download): trained from scratch
    decode_head=dict(num_classes=len(metainfo['classes'])),
    auxiliary_head=dict(num_classes=len(metainfo['classes'])))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=crop_size, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=crop_size, keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]

train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, type='BaseSegDataset', data_root=data_root, metainfo=metainfo,
                 img_suffix='.png', seg_map_suffix='.png',
                 data_prefix=dict(img_path='img_dir/train', seg_map_path='ann_dir/train'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, type='BaseSegDataset', data_root=data_root, metainfo=metainfo,
                 img_suffix='.png', seg_map_suffix='.png',
                 data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader

# The recipe's SGD (lr 0.01, 8 crops a batch; here 4) and PolyLR, over max_iters (run.py
# rescales it with --iters).
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=max_iters, by_epoch=False)
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(logger=dict(interval=20),
                     checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
