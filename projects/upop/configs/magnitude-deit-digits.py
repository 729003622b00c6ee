# Baseline at the same budget: every attention layer and MLP of the dense digits DeiT loses the
# same share of its units (smallest weight L1 norm) before the first step; the compressed model
# then trains as long as UPop's search + retraining, on the same schedule.
_base_ = ['./upop-deit-digits.py']

custom_hooks = [
    dict(type='mmdistill.UniformMagnitudePruningHook', budget=0.5,
         scope='backbone'),
]
