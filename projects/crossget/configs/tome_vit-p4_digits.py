# ToMe's bipartite soft matching on the same ViT (the baseline matcher), r=4 per layer.
_base_ = ['./crossget_vit-p4_digits.py']

model = dict(matcher='tome')
