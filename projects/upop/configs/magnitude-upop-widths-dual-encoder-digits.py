# Baseline that separates "which widths" from "which units" on the dual encoder: each attention
# layer and MLP of both towers keeps as many units as UPop's run at the same seed and budget
# kept (read from that run's checkpoint, widths_from; projects/upop/run.py passes it), those of
# largest weight L1 norm, before the first step; then it trains as the uniform magnitude
# baseline does (10 epochs, UPop's schedule).
_base_ = ['./magnitude-dual-encoder-digits.py']

custom_hooks = [
    dict(type='mmdistill.MagnitudePruningToWidthsHook',
         widths_from='work_dirs/upop_dual/upop_p0.5_seed0/epoch_10.pth',
         scope=['vision', 'text']),
]
