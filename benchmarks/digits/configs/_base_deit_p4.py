# A small DeiT-style ViT on the digits: mmpretrain's VisionTransformer at 32×32 with 4×4
# patches (64 patch tokens and the class token), from scratch, with DeiT's optimiser (AdamW,
# no weight decay on norms, biases, class token and position embedding, gradient clipping)
# and a linear warm-up before the cosine decay. Width and depth are set by the teacher and
# student configs that inherit this one.
_base_ = ['mmpretrain::_base_/models/vit-base-p16.py', './_base_digits.py']

model = dict(
    backbone=dict(img_size=32, patch_size=4, drop_rate=0.0),
    head=dict(num_classes=10, loss=dict(_delete_=True, type='CrossEntropyLoss')),
    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=.02),
        dict(type='Constant', layer='LayerNorm', val=1., bias=0.),
    ])

optim_wrapper = dict(
    _delete_=True,
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                       custom_keys={'.cls_token': dict(decay_mult=0.0),
                                    '.pos_embed': dict(decay_mult=0.0)}),
    clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=5, T_max=25, end=30),
]
