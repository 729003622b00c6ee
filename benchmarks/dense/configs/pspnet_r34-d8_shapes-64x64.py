# The teacher: the student's recipe with a ResNet-34-d8 backbone (mmseg's ResNetV1c at depth
# 34), same data, same heads. Deeper, not wider: its last stage has the student's 512
# channels, so MGD's generator (two 3×3 convs on the teacher's channels) stays affordable on
# two cores; on pspnet_r50-d8's 2048 channels it alone costs more than the whole student step.
_base_ = './pspnet_r18-d8_shapes-64x64.py'

model = dict(backbone=dict(depth=34))
