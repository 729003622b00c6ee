# UPop on both towers of crossget's image–text dual encoder (its digits config: an mmpretrain
# ViT, 6 layers × 3 heads of 32 dims, MLP 384; mmpretrain's CLIP text transformer, 6 layers ×
# 2 heads of 32 dims, MLP 256). One run searches (3 epochs), compresses and retrains (7 epochs)
# from the dense model's checkpoint (load_from). The attention head dims and MLP units of both
# towers are ranked together: the budget is a share of both towers' attention + MLP parameters.
_base_ = ['../../crossget/configs/clip_vit-p4_digits.py']
custom_imports = dict(imports=['projects.crossget.crossget', 'projects.upop.upop'],
                      allow_failed_imports=False)

search_epochs = 3
retrain_epochs = 7
max_epochs = search_epochs + retrain_epochs

custom_hooks = [
    dict(type='mmdistill.UPopHook', budget=0.5, search_epochs=search_epochs, interval=10,
         sparsity_weights=dict(attn=4.8e-3, mlp=2e-4), scope=['vision', 'text']),
]
load_from = 'work_dirs/upop_dual/dense_seed0/epoch_140.pth'  # projects/upop/run.py passes it

# The dual encoder's lr (1e-4: higher collapses both towers), constant during the search, then
# a cosine decay over the retraining.
param_scheduler = dict(_delete_=True, type='CosineAnnealingLR', by_epoch=True,
                       begin=search_epochs, end=max_epochs, T_max=retrain_epochs)
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(checkpoint=dict(interval=max_epochs))
