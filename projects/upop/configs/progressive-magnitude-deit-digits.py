# Baseline on UPop's schedule: every attention layer and MLP of the dense digits DeiT has the
# same share of its units (smallest weight L1 norm) masked to 0 progressively, at UPop's mask
# updates (every 10 steps of the 5 search epochs, the share rising on UPop's sine to the
# budget), then compressed and retrained for 15 epochs: UPop's run with magnitude instead of
# accumulated gradients choosing the units, and uniform widths.
_base_ = ['./upop-deit-digits.py']

custom_hooks = [
    dict(type='mmdistill.ProgressiveMagnitudePruningHook', budget=0.5,
         search_epochs={{_base_.search_epochs}}, interval=10, scope='backbone'),
]
