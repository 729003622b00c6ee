# UPop on DeiT-S / ImageNet-1k with the reference's settings: budget 0.5, 60 search epochs
# (masks updated every 800 steps) then 300 retraining epochs, from the pretrained DeiT-S.
_base_ = 'mmpretrain::deit/deit-small_4xb256_in1k.py'
runner_type = 'mmdistill.SafeRunner'  # crash-safe checkpoints, exact resume
custom_imports = dict(imports=['projects.upop.upop'], allow_failed_imports=False)

search_epochs = 60
retrain_epochs = 300
custom_hooks = [
    dict(type='mmdistill.UPopHook', budget=0.5, search_epochs=search_epochs, interval=800,
         sparsity_weights=dict(attn=4.8e-3, mlp=2e-4), scope='backbone'),
]
load_from = ('https://download.openmmlab.com/mmclassification/v0/deit/'
             'deit-small_pt-4xb256_in1k_20220218-9425b9bb.pth')

# The reference searches and retrains at lr 1e-4 (batch 512), without warm-up.
optim_wrapper = dict(optimizer=dict(lr=1e-4))
param_scheduler = [
    dict(type='CosineAnnealingLR', by_epoch=True, begin=search_epochs,
         end=search_epochs + retrain_epochs, T_max=retrain_epochs, convert_to_iter_based=True)
]
train_cfg = dict(by_epoch=True, max_epochs=search_epochs + retrain_epochs)
