# UPop on the dense digits DeiT: one run searches (5 epochs), compresses, and retrains
# (15 epochs) from the dense model's checkpoint (load_from; projects/upop/run.py passes it).
_base_ = ['./deit-digits.py']
custom_imports = dict(imports=['projects.upop.upop'], allow_failed_imports=False)

search_epochs = 5
retrain_epochs = 15
max_epochs = search_epochs + retrain_epochs

custom_hooks = [
    dict(type='mmdistill.UPopHook', budget=0.5, search_epochs=search_epochs, interval=10,
         sparsity_weights=dict(attn=4.8e-3, mlp=2e-4), scope='backbone'),
]
load_from = 'work_dirs/upop/dense_seed0/epoch_80.pth'

# Search at a constant rate, then a cosine decay over the retraining (as the reference's two
# phases); lower than the dense run's because training starts from a trained model.
optim_wrapper = dict(optimizer=dict(lr=5e-4))
param_scheduler = dict(_delete_=True, type='CosineAnnealingLR', by_epoch=True,
                       begin=search_epochs, end=max_epochs, T_max=retrain_epochs)
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(checkpoint=dict(interval=max_epochs))
