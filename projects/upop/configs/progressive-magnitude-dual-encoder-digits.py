# Baseline on UPop's schedule for configs/upop-dual-encoder-digits.py: every attention layer and
# MLP of both towers has the same share of its units (smallest weight L1 norm) masked to 0
# progressively at UPop's mask updates (every 10 steps of the 3 search epochs, the share rising
# on UPop's sine to the budget), then compressed and retrained for 7 epochs.
_base_ = ['./upop-dual-encoder-digits.py']

custom_hooks = [
    dict(type='mmdistill.ProgressiveMagnitudePruningHook', budget=0.5,
         search_epochs={{_base_.search_epochs}}, interval=10, scope=['vision', 'text']),
]
