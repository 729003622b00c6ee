"""FGD: masks from boxes against a loop oracle and hand-drawn maps, each loss part against
numbers worked out by hand, gradients, errors, and FGD inside the Distiller on real RetinaNets."""
import math
import random

import pytest
import torch
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData
from torch import nn

from mmdistill.distillers import Distiller
from mmdistill.losses.box_masks import background_masks, boxes_and_shapes, foreground_masks
from mmdistill.losses.fgd_loss import FGDLoss
from mmdistill.utils import build_model_in_scope, load_config

PARTS = {'fg', 'bg', 'attention', 'global'}


def det_sample(boxes, img_shape, batch_input_shape=None, box_type=None):
    from mmdet.structures import DetDataSample
    sample = DetDataSample(metainfo=dict(img_shape=img_shape,
                                         batch_input_shape=batch_input_shape or img_shape))
    bboxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    sample.gt_instances = InstanceData(bboxes=box_type(bboxes) if box_type else bboxes,
                                       labels=torch.zeros(len(bboxes), dtype=torch.long))
    return sample


def masks_of(samples, feature_shape):
    boxes, image_shapes, batch_shapes = boxes_and_shapes(samples, torch.device('cpu'))
    foreground = foreground_masks(boxes, image_shapes, batch_shapes, feature_shape)
    return foreground, background_masks(foreground)


def oracle_foreground(boxes, img_shape, batch_shape, feature_shape):
    """FGD's foreground mask from first principles, one box and one cell at a time."""
    (img_h, img_w), (batch_h, batch_w), (height, width) = img_shape, batch_shape, feature_shape
    mask = [[0.0] * width for _ in range(height)]
    for x1, y1, x2, y2 in boxes:
        x1, x2 = min(max(x1, 0), img_w), min(max(x2, 0), img_w)
        y1, y2 = min(max(y1, 0), img_h), min(max(y2, 0), img_h)
        if x2 <= x1 or y2 <= y1:
            continue
        c0, c1 = math.floor(x1 * width / batch_w), min(math.ceil(x2 * width / batch_w), width - 1)
        r0, r1 = math.floor(y1 * height / batch_h), min(math.ceil(y2 * height / batch_h),
                                                        height - 1)
        weight = 1 / ((r1 - r0 + 1) * (c1 - c0 + 1))
        for r in range(r0, r1 + 1):
            for c in range(c0, c1 + 1):
                mask[r][c] = max(mask[r][c], weight)
    return torch.tensor(mask)


# ------------------------------------------------------------------------------------ masks
def test_boxes_scale_by_batch_input_shape_not_by_a_stride():
    # A 5×6 map of a 40×60 input: cells are 8 px tall and 10 px wide. The box spans
    # x 20..40 → 2..4 (cols 2..4) and y 8..16 → 1..2 (rows 1..2): 6 cells of 1/6.
    foreground, _ = masks_of([det_sample([[20, 8, 40, 16]], (40, 60))], (5, 6))
    expected = torch.zeros(5, 6)
    expected[1:3, 2:5] = 1 / 6
    torch.testing.assert_close(foreground[0], expected)
    # The image fills the left half of a batch padded to 40×60: a box over the whole image
    # (x 0..30 → 0..3, y 0..40 → 0..5, clamped to row 4) lights cols 0..3 only, not the padding.
    foreground, _ = masks_of([det_sample([[0, 0, 30, 40]], (40, 30), (40, 60))], (5, 6))
    expected = torch.zeros(5, 6)
    expected[:, 0:4] = 1 / 20
    torch.testing.assert_close(foreground[0], expected)


def test_box_partly_outside_the_image_is_clipped():
    # 4×6 maps of 32×48 batches (8 px cells), y 8..20 → 1..2.5 (rows 1..3) in both images.
    # Image 0 fills the batch: x −40..12 clips to 0..12 → 0..1.5 (cols 0..2): 9 cells of 1/9
    # (the reference counts the cells left of the map too: 1/(3·8)).
    # Image 1 is 32×24, padded: x 12..40 clips to 12..24 → 1.5..3 (cols 1..3), not the 15
    # cells up to x = 5 that the box would light in the padding.
    samples = [det_sample([[-40, 8, 12, 20]], (32, 48)),
               det_sample([[12, 8, 40, 20]], (32, 24), (32, 48))]
    foreground, background = masks_of(samples, (4, 6))
    expected = torch.zeros(2, 4, 6)
    expected[0, 1:4, 0:3] = 1 / 9
    expected[1, 1:4, 1:4] = 1 / 9
    torch.testing.assert_close(foreground, expected)
    torch.testing.assert_close(background, (expected == 0).float() / 15)


def test_zero_area_and_outside_boxes_light_nothing():
    # a zero-width box, a zero-height box, and a box in the padding right of a 32×24 image
    boxes = [[8, 8, 8, 16], [8, 8, 16, 8], [30, 0, 40, 8]]
    foreground, background = masks_of([det_sample(boxes, (32, 24), (32, 48))], (4, 6))
    assert foreground.abs().sum() == 0
    torch.testing.assert_close(background[0], torch.full((4, 6), 1 / 24))


def test_image_without_boxes_is_all_background_and_full_boxes_leave_no_background():
    samples = [det_sample([], (16, 24)), det_sample([[0, 0, 24, 16]], (16, 24)),
               det_sample([[4, 4, 8, 8]], (16, 24))]
    foreground, background = masks_of(samples, (2, 3))
    assert foreground[0].abs().sum() == 0
    torch.testing.assert_close(background[0], torch.full((2, 3), 1 / 6))
    torch.testing.assert_close(foreground[1], torch.full((2, 3), 1 / 6))
    assert background[1].abs().sum() == 0  # no division by zero
    assert background[2].sum().item() == pytest.approx(1.0)


def test_overlapping_boxes_keep_the_largest_weight():
    # 4×6 map, 8 px cells: a big box (x 0..32 → cols 0..4, y 0..16 → rows 0..2: 1/15) and a
    # small one inside it (x 20..28 → 2.5..3.5 → cols 2..4, y 8..12 → 1..1.5 → rows 1..2: 1/6):
    # where both lie, max(1/15, 1/6) = 1/6.
    foreground, _ = masks_of([det_sample([[0, 0, 32, 16], [20, 8, 28, 12]], (32, 48))], (4, 6))
    expected = torch.zeros(4, 6)
    expected[0:3, 0:5] = 1 / 15
    expected[1:3, 2:5] = 1 / 6
    torch.testing.assert_close(foreground[0], expected)


def test_rows_are_y_and_columns_are_x_on_non_square_maps():
    # A wide box lights a wide band, a tall box a tall band (the reference's [x, y] indexing
    # would swap them, and fail outright where x-cells exceed H).
    wide, _ = masks_of([det_sample([[0, 0, 32, 4]], (32, 48))], (4, 6))
    tall, _ = masks_of([det_sample([[0, 0, 4, 24]], (32, 48))], (4, 6))
    expected_wide = torch.zeros(4, 6)
    expected_wide[0:2, 0:5] = 1 / 10  # x 0..4 cells → cols 0..4, y 0..0.5 → rows 0..1
    expected_tall = torch.zeros(4, 6)
    expected_tall[0:4, 0:2] = 1 / 8  # x 0..0.5 → cols 0..1, y 0..3 → rows 0..3
    torch.testing.assert_close(wide[0], expected_wide)
    torch.testing.assert_close(tall[0], expected_tall)


@pytest.mark.parametrize('feature_shape', [(4, 6), (7, 11), (13, 21), (6, 4), (1, 1)])
def test_batched_masks_match_the_box_by_box_loop(feature_shape):
    rng = random.Random(sum(feature_shape))
    batch_shape = (52, 84)
    samples, oracle = [], []
    for count in (0, 1, 7, 30):
        img_shape = (rng.choice([40, 52]), rng.choice([60, 84]))
        boxes = []
        for _ in range(count):  # quarter-pixel corners, some outside the image or degenerate
            x1, y1 = rng.randint(-40, 90) / 4, rng.randint(-40, 60) / 4
            boxes.append([x1, y1, x1 + rng.randint(0, 200) / 4, y1 + rng.randint(0, 120) / 4])
        samples.append(det_sample(boxes, img_shape, batch_shape))
        oracle.append(oracle_foreground(boxes, img_shape, batch_shape, feature_shape))
    foreground, _ = masks_of(samples, feature_shape)
    torch.testing.assert_close(foreground, torch.stack(oracle), rtol=1e-6, atol=0)


def test_boxes_from_mmdet_box_objects_and_clear_errors():
    from mmdet.structures.bbox import HorizontalBoxes
    sample = det_sample([[0, 0, 8, 8]], (16, 24), box_type=HorizontalBoxes)
    boxes, image_shapes, batch_shapes = boxes_and_shapes([sample], torch.device('cpu'))
    torch.testing.assert_close(boxes[0], torch.tensor([[0.0, 0, 8, 8]]))
    assert image_shapes.tolist() == [[16, 24]] and batch_shapes.tolist() == [[16, 24]]
    with pytest.raises(ValueError, match='needs the batch\'s data samples'):
        boxes_and_shapes(None, torch.device('cpu'))
    del sample.batch_input_shape
    with pytest.raises(ValueError, match="no 'batch_input_shape'.*DetDataPreprocessor"):
        boxes_and_shapes([sample], torch.device('cpu'))
    from mmdet.structures import DetDataSample
    with pytest.raises(ValueError, match='data sample 0 has no gt_instances.bboxes'):
        boxes_and_shapes([DetDataSample()], torch.device('cpu'))


# ------------------------------------------------------------------------- the loss, by hand
A = 0.5 * math.log(3.0)  # T·ln 3 with T = 0.5: softmax(a/T) over [0, a] weighs them 1 : 3


def hand_case():
    """1 image, C=2, a 2×3 map of a 16×24 input (8 px cells), one box.

    Teacher (all ≥ 0): channel 0 = [[0,0,0],[0,0,a]], channel 1 = channel 0 + a. The channel
    mean over both is [[0,0,0],[0,0,a]] + a/2, so A_S^t = 6 · [1,1,1,1,1,3] / 8 =
    [[.75,.75,.75],[.75,.75,2.25]]; the spatial means are a/6 and a/6 + a, so A_C^t =
    2 · [1, 3] / 4 = [.5, 1.5]. The student is all ones: A_S^s = 1, A_C^s = 1.
    The box x 12..20 → 1.5..2.5 (cols 1..2), y 10..14 → 1.25..1.75 (rows 1..2 → row 1) lights
    cells (1,1) and (1,2) with M = 1/2; the other 4 cells have B = 1/4.
    """
    channel0 = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, A]])
    teacher = torch.stack([channel0, channel0 + A])[None]
    student = torch.ones(1, 2, 2, 3)
    return student, teacher, [det_sample([[12, 10, 20, 14]], (16, 24))]


def test_each_part_against_hand_computed_values():
    student, teacher, samples = hand_case()
    loss = FGDLoss(2, 2, temp=0.5, alpha_fgd=1.0, beta_fgd=2.0, gamma_fgd=3.0, lambda_fgd=4.0)
    parts = loss(student, teacher, samples)
    assert set(parts) == PARTS
    # Σ_c A_C^t (F^s − F^t)²: off cell (1,2) the errors are 1 and 1−a, at (1,2) 1−a and 1−2a
    err = 0.5 * 1 + 1.5 * (1 - A)**2
    err_12 = 0.5 * (1 - A)**2 + 1.5 * (1 - 2 * A)**2
    fg = 0.5 * 0.75 * err + 0.5 * 2.25 * err_12
    bg = 4 * 0.25 * 0.75 * err
    attention = (0.5 + 0.5) + (5 * 0.25 + 1.25)
    global_ = 5 * 1 + 6 * (1 - A)**2 + (1 - 2 * A)**2  # both context blocks start as identity
    assert parts['fg'].item() == pytest.approx(1.0 * fg, rel=1e-5)
    assert parts['bg'].item() == pytest.approx(2.0 * bg, rel=1e-5)
    assert parts['attention'].item() == pytest.approx(3.0 * attention, rel=1e-5)
    assert parts['global'].item() == pytest.approx(4.0 * global_, rel=1e-5)


def oracle_attention(feature, temp, magnitude=abs):
    """FGD's spatial and channel attention of one C×H×W feature (nested lists), element by
    element: A_S = HW·softmax_hw(mean_c |F| / T), A_C = C·softmax_c(mean_hw |F| / T)."""
    c, h, w = len(feature), len(feature[0]), len(feature[0][0])
    cell = [[sum(magnitude(feature[k][i][j]) for k in range(c)) / c for j in range(w)]
            for i in range(h)]
    per_channel = [sum(magnitude(v) for row in feature[k] for v in row) / (h * w)
                   for k in range(c)]
    cell_total = sum(math.exp(v / temp) for row in cell for v in row)
    channel_total = sum(math.exp(v / temp) for v in per_channel)
    spatial = [[h * w * math.exp(v / temp) / cell_total for v in row] for row in cell]
    channel = [c * math.exp(v / temp) / channel_total for v in per_channel]
    return spatial, channel


def oracle_fgd_parts(student, teacher, foreground, temp, magnitude=abs):
    """L_fg, L_bg and L_at of one image from first principles (no context blocks)."""
    c, h, w = len(teacher), len(teacher[0]), len(teacher[0][0])
    spatial_t, channel_t = oracle_attention(teacher, temp, magnitude)
    spatial_s, channel_s = oracle_attention(student, temp, magnitude)
    background_cells = sum(1 for row in foreground for v in row if v == 0)
    fg = bg = 0.0
    for i in range(h):
        for j in range(w):
            focal = spatial_t[i][j] * sum(
                channel_t[k] * (student[k][i][j] - teacher[k][i][j])**2 for k in range(c))
            fg += foreground[i][j] * focal
            bg += (foreground[i][j] == 0) / background_cells * focal
    attention = (sum(abs(a - b) for a, b in zip(channel_s, channel_t)) +
                 sum(abs(spatial_s[i][j] - spatial_t[i][j]) for i in range(h) for j in range(w)))
    return {'fg': fg, 'bg': bg, 'attention': attention}


def test_signed_features_against_an_element_by_element_oracle():
    """Real FPN features are signed: the attention reads their magnitude |F|."""
    torch.manual_seed(3)
    student, teacher = torch.randn(1, 3, 4, 5), torch.randn(1, 3, 4, 5) - 0.5
    samples = [det_sample([[3, 2, 11, 9]], (16, 20))]
    loss = FGDLoss(3, 3, temp=0.5, alpha_fgd=1.0, beta_fgd=1.0, gamma_fgd=1.0, lambda_fgd=0.0)
    parts = loss(student, teacher, samples)
    foreground = oracle_foreground([[3, 2, 11, 9]], (16, 20), (16, 20), (4, 5)).tolist()
    expected = oracle_fgd_parts(student[0].tolist(), teacher[0].tolist(), foreground, 0.5)
    for part, value in expected.items():
        assert parts[part].item() == pytest.approx(value, rel=1e-5), part
    # The case tells |F| from F: without the magnitude every part would differ.
    signed = oracle_fgd_parts(student[0].tolist(), teacher[0].tolist(), foreground, 0.5,
                              magnitude=lambda v: v)
    assert all(abs(signed[p] - expected[p]) > 0.01 * expected[p] for p in expected)


def test_parts_are_sums_over_the_batch_divided_by_its_size():
    student, teacher, samples = hand_case()
    loss = FGDLoss(2, 2)
    single = loss(student, teacher, samples)
    double = loss(student.repeat(2, 1, 1, 1), teacher.repeat(2, 1, 1, 1), samples * 2)
    for part in PARTS:
        assert double[part].item() == pytest.approx(single[part].item(), rel=1e-6)


def test_global_context_block_by_hand():
    # C=4, a 1×2 map. W_k reads channel 0 ([ln3, 0]) → position weights [3/4, 1/4]; the context
    # is [3/4·ln3, 3/4·2 + 1/4·6 = 3, 0, 0]; W_1 gives [3, −3]; LayerNorm → ±3/√(9+ε); ReLU
    # keeps s = 3/√(9+1e−5); W_2 adds s·[0.5, 0, 2, 0] + [0, 0, 0, 1] at each position.
    loss = FGDLoss(4, 4, alpha_fgd=0, beta_fgd=0, gamma_fgd=0, lambda_fgd=1.0)
    block = loss.student_context
    with torch.no_grad():
        block.context_attention.weight.copy_(torch.tensor([1.0, 0, 0, 0]).view(1, 4, 1, 1))
        block.transform[0].weight.copy_(
            torch.tensor([[0.0, 1, 0, 0], [0, -1, 0, 0]]).view(2, 4, 1, 1))
        block.transform[0].bias.zero_()
        block.transform[3].weight.copy_(
            torch.tensor([[0.5, 0], [0, 0], [2, 0], [0, 0]]).view(4, 2, 1, 1))
        block.transform[3].bias.copy_(torch.tensor([0.0, 0, 0, 1]))
    student = torch.tensor([[math.log(3.0), 0], [2, 6], [0, 0], [0, 0]]).view(1, 4, 1, 2)
    teacher = torch.zeros(1, 4, 1, 2)  # the teacher block is still the identity: G_t = 0
    s = 3 / math.sqrt(9 + 1e-5)
    expected = ((math.log(3.0) + 0.5 * s)**2 + (0.5 * s)**2 + 2**2 + 6**2 + 2 * (2 * s)**2 +
                2 * 1**2)
    parts = loss(student, teacher, [det_sample([], (8, 16))])
    assert parts['global'].item() == pytest.approx(expected, rel=1e-5)
    assert parts['fg'].item() == 0 and parts['bg'].item() == 0


def test_align_conv_maps_student_channels_to_the_teacher():
    _, teacher, samples = hand_case()
    aligned = FGDLoss(1, 2)
    same = FGDLoss(2, 2)
    assert isinstance(aligned.align, nn.Conv2d) and isinstance(same.align, nn.Identity)
    with torch.no_grad():
        aligned.align.weight.copy_(torch.tensor([2.0, 3.0]).view(2, 1, 1, 1))
        aligned.align.bias.zero_()
    same.student_context.load_state_dict(aligned.student_context.state_dict())
    same.teacher_context.load_state_dict(aligned.teacher_context.state_dict())
    student = torch.rand(1, 1, 2, 3)
    got = aligned(student, teacher, samples)
    want = same(torch.cat([2 * student, 3 * student], dim=1), teacher, samples)
    for part in PARTS:
        assert got[part].item() == pytest.approx(want[part].item(), rel=1e-5)


def test_gradients_reach_the_student_and_the_loss_layers_never_the_teacher():
    torch.manual_seed(0)
    loss = FGDLoss(3, 4)
    with torch.no_grad():  # leave the zero init, so that every layer passes gradients on
        for parameter in loss.parameters():
            parameter.normal_()
    student = torch.randn(2, 3, 4, 6, requires_grad=True)
    teacher = torch.randn(2, 4, 4, 6, requires_grad=True)
    samples = [det_sample([[0, 0, 20, 12]], (32, 48)), det_sample([], (32, 48))]
    sum(loss(student, teacher, samples).values()).backward()
    assert student.grad.abs().sum() > 0
    assert teacher.grad is None
    for name, parameter in loss.named_parameters():
        if name.endswith('context_attention.bias'):  # a shift before a softmax: no gradient
            continue
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_init_weights_restores_the_reference_initialisation():
    torch.manual_seed(0)
    loss = FGDLoss(256, 256)
    with torch.no_grad():
        for parameter in loss.parameters():
            parameter.normal_()
    loss.init_weights()
    for block in (loss.student_context, loss.teacher_context):
        weight = block.context_attention.weight
        assert weight.std().item() == pytest.approx(math.sqrt(2 / 256), rel=0.15)  # Kaiming
        assert block.context_attention.bias.abs().sum() == 0
        assert block.transform[3].weight.abs().sum() == 0
        assert block.transform[3].bias.abs().sum() == 0
    # zero last convs: both blocks are the identity, the global loss a plain squared error
    student, teacher = torch.randn(1, 256, 2, 3), torch.randn(1, 256, 2, 3)
    parts = loss(student, teacher, [det_sample([], (16, 24))])
    expected = 5e-6 * ((student - teacher)**2).sum().item()
    assert parts['global'].item() == pytest.approx(expected, rel=1e-5)


def test_errors_name_the_problem():
    samples = [det_sample([], (16, 24))]
    with pytest.raises(ValueError, match='student \\(1, 4, 4, 6\\) and teacher \\(1, 4, 4, 5\\)'):
        FGDLoss(4, 4)(torch.zeros(1, 4, 4, 6), torch.zeros(1, 4, 4, 5), samples)
    with pytest.raises(ValueError, match='N×4×H×W student features, got \\(1, 8, 4, 6\\)'):
        FGDLoss(4, 4)(torch.zeros(1, 8, 4, 6), torch.zeros(1, 4, 4, 6), samples)
    with pytest.raises(ValueError, match='2 data samples for a batch of 1'):
        FGDLoss(4, 4)(torch.zeros(1, 4, 2, 3), torch.zeros(1, 4, 2, 3), samples * 2)
    with pytest.raises(ValueError, match='temp must be positive'):
        FGDLoss(4, 4, temp=0)
    with pytest.raises(ValueError, match='teacher_channels >= 2'):
        FGDLoss(1, 1)


# ------------------------------------------------------------------- inside the Distiller
RETINANET = 'mmdet::retinanet/retinanet_r18_fpn_1x_coco.py'


def tiny_retinanet_options(channels: int) -> dict:
    """mmdet's RetinaNet-R18 config with a narrow FPN and head and no pretrained backbone."""
    return {'model.backbone.init_cfg': None, 'model.neck.out_channels': channels,
            'model.bbox_head.in_channels': channels, 'model.bbox_head.feat_channels': channels,
            'model.bbox_head.stacked_convs': 1}


def retinanet_distiller(tmp_path):
    """RetinaNet-R18 student (FPN 16 channels) and teacher (FPN 32), FGD on all five levels."""
    teacher_config = str(tmp_path / 'teacher.py')
    with open(teacher_config, 'w') as f:
        f.write(f"_base_ = '{RETINANET}'\n"
                'model = dict(backbone=dict(init_cfg=None), neck=dict(out_channels=32), '
                'bbox_head=dict(in_channels=32, feat_channels=32, stacked_convs=1))\n')
    torch.manual_seed(0)
    teacher = build_model_in_scope(load_config(teacher_config).model, 'mmdet')
    checkpoint = str(tmp_path / 'teacher.pth')
    torch.save({'state_dict': teacher.state_dict()}, checkpoint)
    student = load_config(RETINANET, tiny_retinanet_options(16)).model
    losses = {
        f'fgd{i}': dict(type='FGDLoss', student_channels=16, teacher_channels=32,
                        inputs=dict(student_feature=f'student.neck.fpn_convs.{i}.conv',
                                    teacher_feature=f'teacher.neck.fpn_convs.{i}.conv'))
        for i in range(5)}
    with DefaultScope.overwrite_default_scope('mmdet'):
        return Distiller(student=student, teacher=dict(config=teacher_config,
                                                       checkpoint=checkpoint),
                         distill_losses=losses)


def detection_batch(distiller):
    """Two 64×96 images through the student's DetDataPreprocessor: two boxes (one reaching
    outside the image) on the first, none on the second."""
    from mmdet.structures import DetDataSample
    from mmdet.structures.bbox import HorizontalBoxes
    torch.manual_seed(1)
    samples = []
    for boxes in ([[10, 8, 50, 40], [60, 30, 120, 70]], []):
        sample = DetDataSample(metainfo=dict(img_shape=(64, 96), ori_shape=(64, 96),
                                             scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(
            bboxes=HorizontalBoxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)),
            labels=torch.ones(len(boxes), dtype=torch.long))
        samples.append(sample)
    inputs = [torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8) for _ in samples]
    return distiller.data_preprocessor(dict(inputs=inputs, data_samples=samples), True)


def test_fgd_on_every_fpn_level_of_a_real_retinanet(tmp_path):
    distiller = retinanet_distiller(tmp_path).train()
    data = detection_batch(distiller)
    assert data['data_samples'][0].batch_input_shape == (64, 96)
    losses = distiller(data['inputs'], data['data_samples'], mode='loss')
    fgd_keys = {f'loss_fgd{i}_{part}' for i in range(5) for part in PARTS}
    assert fgd_keys <= set(losses) and 'loss_cls' in losses
    assert all(torch.isfinite(losses[k]) for k in fgd_keys)
    assert all(losses[f'loss_fgd{i}_fg'] > 0 and losses[f'loss_fgd{i}_bg'] > 0 for i in range(5))

    # The taps give the FPN outputs: the same losses straight from both models' necks.
    with torch.no_grad():
        student_levels = distiller.student.extract_feat(data['inputs'])
        teacher_levels = distiller.teacher.extract_feat(data['inputs'])
        assert [tuple(f.shape[2:]) for f in teacher_levels] == [
            (8, 12), (4, 6), (2, 3), (1, 2), (1, 1)]
        for i in range(5):
            direct = distiller.distill_losses[f'fgd{i}'](student_levels[i], teacher_levels[i],
                                                         data['data_samples'])
            for part in PARTS:
                torch.testing.assert_close(losses[f'loss_fgd{i}_{part}'], direct[part])

    sum(losses[k] for k in fgd_keys).backward()
    assert all(p.grad is None for p in distiller.teacher.parameters())
    assert distiller.student.backbone.layer4[0].conv1.weight.grad.abs().sum() > 0  # (stem frozen)
    for i in range(5):
        fgd = distiller.distill_losses[f'fgd{i}']
        assert fgd.align.weight.grad.abs().sum() > 0
        assert fgd.student_context.transform[3].weight.grad.abs().sum() > 0
        assert fgd.teacher_context.transform[3].weight.grad.abs().sum() > 0
