# The MGD segmentation recipe with its masked generative feature term only (the logit term
# removed): one half of the recipe's ablation in benchmarks/dense/README.md.
_base_ = './mgd_pspnet_r18_from_r34-d8_shapes-64x64.py'

model = dict(distill_losses=dict(_delete_=True, mgd=_base_.model.distill_losses.mgd))
