# The dense model: a small DeiT (mmpretrain's VisionTransformer + VisionTransformerClsHead) with
# 4×4 patches on the 32×32 digits that benchmarks/digits/run.py writes (8×8 patches + class token),
# trained from scratch. Data, pipeline and metric are the digits project's, untouched.
_base_ = ['../../../benchmarks/digits/configs/_base_digits.py']

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='VisionTransformer',
        arch=dict(embed_dims=64, num_layers=4, num_heads=4, feedforward_channels=256),
        img_size=32,
        patch_size=4,
        drop_rate=0.0,
        drop_path_rate=0.0),
    neck=None,
    head=dict(type='VisionTransformerClsHead', num_classes=10, in_channels=64,
              loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')),
    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=.02),
        dict(type='Constant', layer='LayerNorm', val=1., bias=0.),
    ])

# Trained until every seed has converged (issue 27): 40 epochs at a cosine from lr 2e-3 with no
# warm-up left seed 2 stuck at 66 % and seed 0 five points under seed 1 (the 20 more epochs of
# the retrained control still gained 5–13 points). A linear warm-up over the first 5 epochs
# (AdamW on a from-scratch ViT takes its largest, least informed steps first without one)
# and twice the epochs; projects/upop/run.py checks that each seed ends within 1 point of
# the best.
max_epochs = 80
warmup_epochs = 5
optim_wrapper = dict(
    _delete_=True,
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                       custom_keys={'.cls_token': dict(decay_mult=0.0),
                                    '.pos_embed': dict(decay_mult=0.0)}),
    clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs, by_epoch=True,
         begin=warmup_epochs, end=max_epochs),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(checkpoint=dict(interval=max_epochs))
