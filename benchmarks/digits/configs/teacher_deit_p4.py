_base_ = ['./_base_deit_p4.py']

# The ViT teacher: width 64, 4 layers, 2 heads (0.2 M parameters).
model = dict(
    backbone=dict(arch=dict(_delete_=True, embed_dims=64, num_layers=4, num_heads=2,
                            feedforward_channels=256)),
    head=dict(in_channels=64))
