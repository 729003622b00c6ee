"""tools/analysis/visualize_fgd.py on a tiny RetinaNet FGD config: the PNG grid's layout and
what its panels show (masks where the box is, no difference between identical models)."""
import contextlib
import io
import json
import os.path as osp
from typing import Tuple

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from conftest import script_module
from mmdistill.utils import build_model_in_scope, model_cfg_of
from mmdistill.visualization import HEADER_HEIGHT, PANEL_TITLES

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
FGD_CONFIG = osp.join(ROOT, 'configs', 'fgd', 'fgd_retinanet_r50_from_x101-64x4d_fpn_2x_coco.py')
HEIGHT, WIDTH = 64, 96  # divisible by 32: the preprocessor adds no padding
BOX = (8, 8, 40, 32)  # x1, y1, x2, y2
LEVELS = 5
FOREGROUND, BACKGROUND, DIFFERENCE = 1, 2, 4  # panel columns
# Where FGD's rule (floor of the min corner, ceil of the max corner, in cells) lights BOX:
# stride 8 cells 1..5 x 1..4, stride 16 cells 0..3 x 0..2, i.e. pixels up to x 63 and y 47.
INSIDE = (slice(12, 29), slice(12, 37))  # rows, columns: well inside the box
OUTSIDE = (slice(50, 64), slice(66, 96))  # beyond every cell the box lights at strides 8, 16

TINY_FPN = dict(out_channels=16)
TINY_HEAD = dict(in_channels=16, feat_channels=16, stacked_convs=1)
TEST_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(WIDTH, HEIGHT), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),  # the tool drops it: it brings its own boxes
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]


def load_tool():
    return script_module(osp.join('tools', 'analysis', 'visualize_fgd.py'), 'visualize_fgd')


def write(path, text: str) -> str:
    with open(path, 'w') as f:
        f.write(text)
    return str(path)


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """A tiny FGD config (ResNet-18 RetinaNets, 16-channel FPN) inheriting the real one, a
    checkpoint of its teacher, an image with one bright box and a COCO json of it."""
    tmp = tmp_path_factory.mktemp('visualize_fgd')
    teacher_config = write(tmp / 'teacher.py', (
        "_base_ = 'mmdet::retinanet/retinanet_r18_fpn_1x_coco.py'\n"
        f'model = dict(backbone=dict(init_cfg=None), neck={TINY_FPN!r}, '
        f'bbox_head={TINY_HEAD!r})\n'))
    channels = dict(student_channels=16, teacher_channels=16)
    config = write(tmp / 'fgd_tiny.py', (
        f'_base_ = {FGD_CONFIG!r}\n'
        'model = dict(\n'
        '    student=dict(backbone=dict(depth=18, init_cfg=None),\n'
        f'                 neck=dict(in_channels=[64, 128, 256, 512], **{TINY_FPN!r}),\n'
        f'                 bbox_head={TINY_HEAD!r}),\n'
        f'    teacher=dict(config={teacher_config!r}),\n'
        f'    distill_losses={{f"fgd_fpn{{i}}": {channels!r} for i in range({LEVELS})}})\n'
        f'test_dataloader = dict(dataset=dict(pipeline={TEST_PIPELINE!r}))\n'))

    cfg = Config.fromfile(teacher_config)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmdet'):
        teacher = build_model_in_scope(model_cfg_of(cfg), 'mmdet')
    checkpoint = str(tmp / 'teacher.pth')
    torch.save({'state_dict': teacher.state_dict()}, checkpoint)

    rng = np.random.default_rng(0)
    image = rng.integers(0, 60, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    x1, y1, x2, y2 = BOX
    image[y1:y2, x1:x2] = 220
    image_file = str(tmp / 'shapes.png')
    cv2.imwrite(image_file, image)
    ann_file = write(tmp / 'ann.json', json.dumps(dict(
        images=[dict(id=7, file_name='shapes.png', height=HEIGHT, width=WIDTH)],
        annotations=[dict(id=1, image_id=7, category_id=1, iscrowd=0, area=768,
                          bbox=[x1, y1, x2 - x1, y2 - y1]),
                     dict(id=2, image_id=7, category_id=1, iscrowd=1, area=100,
                          bbox=[60, 40, 30, 20])],  # a crowd region: not a box for FGD
        categories=[dict(id=1, name='shape')])))
    return dict(config=config, checkpoint=checkpoint, image=image_file, ann_file=ann_file,
                tmp=tmp)


def panel(grid: np.ndarray, level: int, column: int) -> np.ndarray:
    """The grey values of one panel of the grid."""
    top = HEADER_HEIGHT + level * HEIGHT
    cells = grid[top:top + HEIGHT, column * WIDTH:(column + 1) * WIDTH]
    return cv2.cvtColor(cells, cv2.COLOR_BGR2GRAY).astype(float)


def run_tool(files, out_name: str, *args) -> Tuple[str, str]:
    """Run the tool's main(); return the PNG's path and what the tool printed."""
    out = str(files['tmp'] / out_name)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        load_tool().main([files['config'], files['image'], *args,
                          '--teacher-checkpoint', files['checkpoint'], '--out', out])
    return out, printed.getvalue()


@pytest.fixture(scope='module')
def same_weights(files):
    """The grid from --boxes, with the student given the teacher's weights (an exported
    student checkpoint: keys without the 'student.' prefix)."""
    return run_tool(files, 'same.png', '--boxes', ','.join(map(str, BOX)),
                    '--student-checkpoint', files['checkpoint'])


def test_grid_shows_masks_on_the_box_and_no_difference_between_identical_models(
        same_weights):
    out, printed = same_weights
    assert osp.abspath(out) in printed
    grid = cv2.imread(out)
    assert grid.shape == (HEADER_HEIGHT + LEVELS * HEIGHT, len(PANEL_TITLES) * WIDTH, 3)

    for level in range(LEVELS):
        assert panel(grid, level, FOREGROUND)[INSIDE].min() > 200, level
        assert panel(grid, level, DIFFERENCE).max() < 10, level  # same weights: F^s = F^t
    for level in (0, 1):  # strides 8 and 16: the box lights part of the map
        foreground = panel(grid, level, FOREGROUND)
        background = panel(grid, level, BACKGROUND)
        assert foreground[OUTSIDE].max() < 10, level
        assert background[INSIDE].max() < 10 and background[OUTSIDE].min() > 200, level
    # Stride 32: the box's cells (floor/ceil) cover the whole 2x3 map, no background left.
    assert panel(grid, 2, FOREGROUND).min() > 200
    assert panel(grid, 2, BACKGROUND).max() < 10


def test_coco_annotations_give_the_same_masks_and_a_random_student_differs(
        files, same_weights):
    grid = cv2.imread(run_tool(files, 'coco.png', '--ann-file', files['ann_file'])[0])
    reference = cv2.imread(same_weights[0])
    for level in range(LEVELS):
        for column in (FOREGROUND, BACKGROUND):
            np.testing.assert_array_equal(panel(grid, level, column),
                                          panel(reference, level, column))
        assert panel(grid, level, DIFFERENCE).max() > 200, level  # F^s != F^t somewhere


def test_malformed_boxes_are_refused_with_the_expected_form():
    tool = load_tool()
    for spec in ('1,2,3', '10,10,5,20', 'a,b,c,d'):
        with pytest.raises(ValueError, match='x1,y1,x2,y2'):
            tool.parse_boxes([spec])
    np.testing.assert_array_equal(tool.parse_boxes(['1,2,30,40.5']), [[1, 2, 30, 40.5]])
