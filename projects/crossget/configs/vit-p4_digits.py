# The no-merging baseline: a small ViT (patch 4, 65 tokens) on the digits at 32×32, from scratch.
# The model is mmpretrain's ViT config with a small arch; data and schedule are the digits'.
_base_ = ['mmpretrain::_base_/models/vit-base-p16.py',
          '../../../benchmarks/digits/configs/_base_digits.py']

model = dict(
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=96, num_layers=6, num_heads=3,
                  feedforward_channels=384),
        img_size=32,
        patch_size=4,
        drop_rate=0.0),
    head=dict(in_channels=96, num_classes=10, loss=dict(_delete_=True, type='CrossEntropyLoss')),
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
    clip_grad=dict(max_norm=5.0))
