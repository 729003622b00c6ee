# CrossGET on mmpretrain's DeiT-S recipe, unchanged but for token merging: r=13 in each of the
# 12 layers takes 197 tokens down to 41 (ToMe's DeiT-S setting).
_base_ = ['mmpretrain::deit/deit-small_4xb256_in1k.py']
runner_type = 'mmdistill.SafeRunner'  # crash-safe checkpoints, exact resume
custom_imports = dict(imports=['projects.crossget.crossget'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='mmdistill.token_merging_model',
    model=_base_.model,
    r=13,
    matcher='crossget',
    # what the matcher compares: None = the matcher's authors' choice (CrossGET: the full-width
    # q and k, all heads side by side; ToMe: keys averaged over the heads); or 'full' /
    # 'head_mean' to set it
    metric=None,
    # the weight w of CrossGET's importance I in its source score w*I - best similarity and
    # ensemble weights exp(w*I): 1 is CrossGET's; 0 takes the guidance out (crossget only)
    importance_weight=1.)
