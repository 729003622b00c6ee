# ToMe's bipartite soft matching on the same DeiT-S recipe (the baseline matcher).
_base_ = ['./crossget_deit-small_4xb256_in1k.py']

model = dict(matcher='tome')
