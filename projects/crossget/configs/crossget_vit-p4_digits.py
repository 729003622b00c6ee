# CrossGET token merging on the digits ViT: complete-graph soft matching guided by the class
# token, cross-guided ensemble, proportional attention. 65 -> 41 tokens with r=4 per layer.
_base_ = ['./vit-p4_digits.py']
custom_imports = dict(imports=['projects.crossget.crossget'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='mmdistill.token_merging_model',
    model=_base_.model,
    r=4,
    matcher='crossget',
    # what the matcher compares: None = the matcher's authors' choice (CrossGET: the full-width
    # q and k, all heads side by side; ToMe: keys averaged over the heads); or 'full' /
    # 'head_mean' to set it
    metric=None,
    # the weight w of CrossGET's importance I in its source score w*I - best similarity and
    # ensemble weights exp(w*I): 1 is CrossGET's; 0 takes the guidance out (crossget only)
    importance_weight=1.)
