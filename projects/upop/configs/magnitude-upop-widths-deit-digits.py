# Baseline that separates "which widths" from "which units": each attention layer and MLP of
# the dense digits DeiT keeps as many units as UPop's run at the same seed and budget kept
# (read from that run's checkpoint, widths_from; projects/upop/run.py passes it), those of
# largest weight L1 norm, before the first step; then it trains as the uniform magnitude
# baseline does (20 epochs, UPop's schedule).
_base_ = ['./magnitude-deit-digits.py']

custom_hooks = [
    dict(type='mmdistill.MagnitudePruningToWidthsHook',
         widths_from='work_dirs/upop/upop_p0.5_seed0/epoch_20.pth', scope='backbone'),
]
