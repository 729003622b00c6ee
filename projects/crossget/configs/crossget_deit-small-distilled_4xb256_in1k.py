# CrossGET on the distilled DeiT-S: the class and the distillation token are both protected.
_base_ = ['mmpretrain::deit/deit-small-distilled_4xb256_in1k.py']
runner_type = 'mmdistill.SafeRunner'  # crash-safe checkpoints, exact resume
custom_imports = dict(imports=['projects.crossget.crossget'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='mmdistill.token_merging_model',
    model=_base_.model,
    r=13,
    matcher='crossget')
