# A small CLIP-style dual encoder on the digits: the image tower is mmpretrain's ViT (the
# digits ViT's arch), the text tower mmpretrain's CLIP text transformer; it is trained
# contrastively against one prompt per class and predicts by image->text retrieval.
_base_ = ['../../../benchmarks/digits/configs/_base_digits.py']
custom_imports = dict(imports=['projects.crossget.crossget'], allow_failed_imports=False)

NAMES = ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine']
model = dict(
    type='mmdistill.ImageTextDualEncoder',
    vision=dict(
        type='VisionTransformer',
        arch=dict(embed_dims=96, num_layers=6, num_heads=3, feedforward_channels=384),
        img_size=32,
        patch_size=4,
        out_type='cls_token',
        init_cfg=[dict(type='TruncNormal', layer='Linear', std=.02)]),
    text=dict(width=64, layers=6, heads=2),
    class_prompts=[f'a photo of the digit {name}' for name in NAMES],
    embed_dims=64)

# From scratch at lr 1e-3 (the digits ViT's) both towers collapse to constant features within
# the first 20 iterations (loss stuck at ln 32); 1e-4 trains steadily.
optim_wrapper = dict(
    _delete_=True,
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
    clip_grad=dict(max_norm=5.0))
