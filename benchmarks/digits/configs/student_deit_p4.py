_base_ = ['./_base_deit_p4.py']

# The ViT student: width 32, 4 layers, 2 heads (55 k parameters).
model = dict(
    backbone=dict(arch=dict(_delete_=True, embed_dims=32, num_layers=4, num_heads=2,
                            feedforward_channels=128)),
    head=dict(in_channels=32))
