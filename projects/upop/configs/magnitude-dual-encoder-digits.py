# The baseline for configs/upop-dual-encoder-digits.py: uniform magnitude pruning of both
# towers before the first step, then the same 10 epochs of training.
_base_ = ['./upop-dual-encoder-digits.py']

custom_hooks = [
    dict(type='mmdistill.UniformMagnitudePruningHook', budget=0.5, scope=['vision', 'text']),
]
