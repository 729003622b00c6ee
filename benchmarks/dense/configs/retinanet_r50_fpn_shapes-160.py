# The teacher: the student's recipe with mmdet's ResNet-50 backbone (what
# retinanet_r50_fpn_1x_coco.py has where retinanet_r18_fpn_1x_coco.py differs) at half its
# width (32 stem and base channels: 7.1 M parameters against the student's 1.3 M), same data,
# same 64-channel FPN and head.
_base_ = './retinanet_r18_fpn_shapes-160.py'

model = dict(backbone=dict(depth=50, stem_channels=32, base_channels=32),
             neck=dict(in_channels=[128, 256, 512, 1024]))
