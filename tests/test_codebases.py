"""What mmdistill knows of each codebase (mmdistill.codebases): the data samples it draws for a
tiny real model, the smoke-test data its datasets read, its preprocessor's colour switch, its
package and the names its hooks look the model up by."""
import importlib
from importlib import metadata
from unittest.mock import MagicMock

import pytest
import torch
from mmengine.registry import DefaultScope

from conftest import tiny_classifier
from mmdistill.codebases import CODEBASES, get_codebase
from mmdistill.distillers import Distiller
from mmdistill.distillers.input_preparation import COLOUR_FLAGS, preparation_of
from mmdistill.utils import build_model_in_scope

SCOPES = ('mmdet', 'mmpose', 'mmpretrain', 'mmseg')
HEIGHT, WIDTH = 64, 48
NUM_CLASSES = 3

TINY_YOLOX = dict(
    type='YOLOX',
    data_preprocessor=dict(type='DetDataPreprocessor', pad_size_divisor=32),
    backbone=dict(type='CSPDarknet', deepen_factor=0.33, widen_factor=0.125),
    neck=dict(type='YOLOXPAFPN', in_channels=[32, 64, 128], out_channels=16,
              num_csp_blocks=1),
    bbox_head=dict(type='YOLOXHead', num_classes=NUM_CLASSES, in_channels=16,
                   feat_channels=16),
    train_cfg=dict(assigner=dict(type='SimOTAAssigner', center_radius=2.5)),
    test_cfg=dict(score_thr=0.01, nms=dict(type='nms', iou_threshold=0.65)))
# A stride-8 ResNet feature map upsampled twice: 16x12 heatmaps for 64x48 inputs.
TINY_POSE = dict(
    type='TopdownPoseEstimator',
    data_preprocessor=dict(type='PoseDataPreprocessor'),
    backbone=dict(type='ResNet', depth=18, stem_channels=8, base_channels=4, out_indices=(1, )),
    head=dict(type='HeatmapHead', in_channels=8, out_channels=17, deconv_out_channels=(8, ),
              deconv_kernel_sizes=(4, ), loss=dict(type='KeypointMSELoss', use_target_weight=True),
              decoder=dict(type='MSRAHeatmap', input_size=(WIDTH, HEIGHT),
                           heatmap_size=(WIDTH // 4, HEIGHT // 4), sigma=2)))
TINY_SEGMENTOR = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(type='SegDataPreProcessor', size=(HEIGHT, WIDTH)),
    backbone=dict(type='ResNetV1c', depth=18, stem_channels=8, base_channels=4,
                  out_indices=(3, )),
    decode_head=dict(type='FCNHead', in_channels=32, channels=8, num_convs=1, in_index=0,
                     num_classes=NUM_CLASSES, loss_decode=dict(type='CrossEntropyLoss')))
TINY_MODELS = dict(mmpretrain=tiny_classifier(4, num_classes=NUM_CLASSES), mmdet=TINY_YOLOX,
                   mmseg=TINY_SEGMENTOR, mmpose=TINY_POSE)
# Each codebase's image preprocessor, and the argument that switches its colour order.
PREPROCESSORS = dict(mmpretrain=('ClsDataPreprocessor', 'to_rgb'),
                     mmdet=('DetDataPreprocessor', 'bgr_to_rgb'),
                     mmseg=('SegDataPreProcessor', 'bgr_to_rgb'),
                     mmpose=('PoseDataPreprocessor', 'bgr_to_rgb'))


def tiny_model(scope: str):
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope(scope):
        return build_model_in_scope(TINY_MODELS[scope], scope)


def samples_of(scope: str, model, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    images = [torch.randint(0, 256, (3, HEIGHT, WIDTH), generator=gen, dtype=torch.uint8)
              for _ in range(2)]
    return images, [get_codebase(scope).data_sample(model, image, gen) for image in images]


def student_losses(model, images, samples) -> dict:
    model.train()
    prepared = model.data_preprocessor(dict(inputs=images, data_samples=samples), True)
    return model(prepared['inputs'], prepared['data_samples'], mode='loss')


def test_the_four_codebases_are_known_and_others_named_in_the_error():
    assert tuple(sorted(CODEBASES)) == SCOPES
    assert all(CODEBASES[scope].scope == scope for scope in SCOPES)
    with pytest.raises(ValueError, match="no codebase of scope 'mmocr' \\(known: mmdet, "
                                         'mmpose, mmpretrain, mmseg\\).*default_scope'):
        get_codebase('mmocr')
    with pytest.raises(ValueError, match="known: .*, or use the config's own data$"):
        get_codebase(None, "use the config's own data")


@pytest.mark.parametrize('scope', SCOPES)
def test_the_package_of_each_codebase_is_installed_under_its_name(scope):
    """The version a results file records is read from this distribution's metadata."""
    module = importlib.import_module(scope)
    assert metadata.version(get_codebase(scope).package) == module.__version__


@pytest.mark.parametrize('scope', SCOPES)
def test_the_colour_switch_of_each_codebase_preprocessor_is_read(scope):
    preprocessor_type, switch = PREPROCESSORS[scope]
    registry = importlib.import_module(f'{scope}.registry').MODELS
    flag = get_codebase(scope).colour_flag
    assert flag in COLOUR_FLAGS
    for swaps in (True, False):
        # Runners of earlier tests leave their codebase's default scope: build in this one's.
        with DefaultScope.overwrite_default_scope(scope):
            preprocessor = registry.build(dict(type=preprocessor_type, mean=[1.0, 2.0, 3.0],
                                               std=[4.0, 5.0, 6.0], **{switch: swaps}))
        assert getattr(preprocessor, flag) is swaps
        assert preparation_of(preprocessor).swaps_channels is swaps


def test_classification_samples_hold_a_label_of_the_head():
    from mmpretrain.structures import DataSample
    model = tiny_model('mmpretrain')
    labels = []
    for seed in range(8):
        images, samples = samples_of('mmpretrain', model, seed)
        assert all(isinstance(sample, DataSample) for sample in samples)
        labels += [int(sample.gt_label) for sample in samples]
    assert set(labels) <= set(range(NUM_CLASSES)) and len(set(labels)) > 1
    assert torch.isfinite(student_losses(model, images, samples)['loss'])


def test_detection_samples_hold_boxes_labels_and_box_masks_in_the_image():
    from mmdet.structures import DetDataSample
    model = tiny_model('mmdet')
    images, samples = samples_of('mmdet', model)
    for sample in samples:
        assert isinstance(sample, DetDataSample)
        assert sample.img_shape == sample.ori_shape == (HEIGHT, WIDTH)
        boxes, labels = sample.gt_instances.bboxes, sample.gt_instances.labels
        assert boxes.shape == (3, 4) and labels.shape == (3, )
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] > boxes[:, :2]).all()
        assert (boxes[:, 2] <= WIDTH).all() and (boxes[:, 3] <= HEIGHT).all()
        assert labels.min() >= 0 and labels.max() < NUM_CLASSES
        masks = torch.as_tensor(sample.gt_instances.masks.masks)
        assert masks.shape == (3, HEIGHT, WIDTH)
        for mask, (x1, y1, x2, y2) in zip(masks, boxes.tolist()):
            rows, cols = mask.nonzero(as_tuple=True)
            assert rows.min() >= y1 and rows.max() < y2 and cols.min() >= x1 and cols.max() < x2
    losses = student_losses(model, images, samples)
    assert losses['loss_cls'].item() > 0 and losses['loss_bbox'].item() > 0


def test_segmentation_samples_hold_a_label_map_of_the_image():
    from mmseg.structures import SegDataSample
    model = tiny_model('mmseg')
    images, samples = samples_of('mmseg', model)
    for sample in samples:
        assert isinstance(sample, SegDataSample)
        labels = sample.gt_sem_seg.data
        assert labels.shape == (1, HEIGHT, WIDTH)
        assert set(labels.unique().tolist()) == set(range(NUM_CLASSES))
    assert torch.isfinite(student_losses(model, images, samples)['decode.loss_ce'])


def test_pose_samples_hold_keypoints_and_the_heatmaps_of_the_head_codec():
    from mmpose.structures import PoseDataSample
    model = tiny_model('mmpose')
    images, samples = samples_of('mmpose', model)
    for sample in samples:
        assert isinstance(sample, PoseDataSample)
        keypoints = torch.as_tensor(sample.gt_instances.keypoints)
        assert keypoints.shape == (1, 17, 2)
        assert (keypoints >= 0).all() and (keypoints[..., 0] < WIDTH).all()
        assert (keypoints[..., 1] < HEIGHT).all()
        heatmaps = sample.gt_fields.heatmaps
        assert heatmaps.shape == (17, HEIGHT // 4, WIDTH // 4)
        assert heatmaps.max() == pytest.approx(1.0, abs=0.05)  # a Gaussian peak per keypoint
        assert sample.gt_instance_labels.keypoint_weights.shape == (1, 17)
    assert student_losses(model, images, samples)['loss_kpt'].item() > 0


@pytest.mark.parametrize('scope', SCOPES)
def test_smoke_data_is_read_by_the_codebase_datasets(tmp_path, scope):
    """Each split's leaf dataset, with a pipeline added as a config gives one, reads the
    generated images; evaluators that need one get the validation annotations."""
    generated = get_codebase(scope).smoke_data(str(tmp_path), 4, 2, (HEIGHT, WIDTH))
    datasets = importlib.import_module(f'{scope}.registry').DATASETS
    with DefaultScope.overwrite_default_scope(scope):
        lengths = {split: len(datasets.build(dict(leaf, pipeline=[])))
                   for split, leaf in generated.datasets.items()}
    assert lengths == dict(train=4, val=2)
    if scope in ('mmdet', 'mmpose'):  # COCO metrics read the annotation file
        assert generated.ann_file == str(tmp_path / 'annotations' / 'val.json')
    else:
        assert generated.ann_file is None


def test_smoke_labels_stay_below_the_models_classes_and_coco_lists_them_all(tmp_path):
    """An untrained 80-class detector predicts any of its labels: COCO's metric maps each to a
    category, so the generated detection data list 80 (3 drawn); a 2-class classifier or
    segmentor gets labels below 2."""
    import json
    detection = get_codebase('mmdet').smoke_data(str(tmp_path / 'det'), 4, 2, (HEIGHT, WIDTH),
                                                 80)
    with open(detection.ann_file) as f:
        val = json.load(f)
    classes = detection.datasets['val']['metainfo']['classes']
    assert len(val['categories']) == len(classes) == 80
    assert classes[:4] == ('red_rectangle', 'green_ellipse', 'blue_rectangle', 'class_4')
    with open(tmp_path / 'det' / 'annotations' / 'train.json') as f:
        assert {a['category_id'] for a in json.load(f)['annotations']} <= {1, 2, 3}
    from mmpretrain.registry import DATASETS
    two = get_codebase('mmpretrain').smoke_data(str(tmp_path / 'cls'), 4, 2, (HEIGHT, WIDTH), 2)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        train = DATASETS.build(dict(two.datasets['train'], pipeline=[]))
    assert {train.get_data_info(i)['gt_label'] for i in range(len(train))} <= {0, 1}
    segmentation = get_codebase('mmseg').smoke_data(str(tmp_path / 'seg'), 4, 2,
                                                    (HEIGHT, WIDTH), 2)
    assert len(segmentation.datasets['train']['metainfo']['classes']) == 2


def test_detection_smoke_data_has_instance_masks_for_mask_heads(tmp_path):
    """Mask R-CNN and SOLO configs load masks: each generated shape's outline polygons fill
    (nearly) its painted pixels."""
    import json
    from mmdet.registry import DATASETS
    generated = get_codebase('mmdet').smoke_data(str(tmp_path), 4, 2, (HEIGHT, WIDTH))
    pipeline = [dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations', with_bbox=True, with_mask=True)]
    with DefaultScope.overwrite_default_scope('mmdet'):
        dataset = DATASETS.build(dict(generated.datasets['train'], pipeline=pipeline))
    with open(tmp_path / 'annotations' / 'train.json') as f:
        areas = [a['area'] for a in json.load(f)['annotations'] if a['image_id'] == 2]
    masks = dataset[1]['gt_masks']  # image 1 (id 2): its first shape cut by the left border
    assert len(masks) == len(areas) and masks.masks.shape[1:] == (HEIGHT, WIDTH)
    assert masks.areas == pytest.approx(areas, rel=0.35)


def test_pose_smoke_data_is_whole_body_for_a_whole_body_leaf(tmp_path):
    """A config's CocoWholeBodyDataset or UBody2dDataset leaf keeps its type (its 133-keypoint
    metainfo) and reads the generated files; a leaf of another type reads them as CocoDataset;
    the body keypoints are the same either way."""
    from mmpose.registry import DATASETS
    generated = get_codebase('mmpose').smoke_data(str(tmp_path), 4, 2, (HEIGHT, WIDTH))
    ubody = generated.leaf('train', dict(type='UBody2dDataset', ann_file='real.json'))
    assert ubody == dict(generated.datasets['train'], type='UBody2dDataset')
    assert generated.leaf('val', dict(type='mmpose.CocoWholeBodyDataset'))['type'] == \
        'mmpose.CocoWholeBodyDataset'
    assert generated.leaf('train', dict(type='AP10KDataset'))['type'] == 'mmpose.CocoDataset'
    with DefaultScope.overwrite_default_scope('mmpose'):
        whole = DATASETS.build(dict(ubody, pipeline=[]))
        body = DATASETS.build(dict(generated.datasets['train'], pipeline=[]))
    assert whole.metainfo['num_keypoints'] == 133 and len(whole) == 4
    first, first_body = whole.get_data_info(0), body.get_data_info(0)
    assert first['keypoints'].shape == (1, 133, 2)
    assert first['keypoints'][0, :17] == pytest.approx(first_body['keypoints'][0], abs=1e-4)
    assert first['keypoints_visible'][0, 17:].sum() > 0  # feet, face and hands labelled


def test_an_mmdet_student_is_the_detector_yolox_hooks_switch():
    """mmdet's YOLOXModeSwitchHook turns on ``model.detector.bbox_head.use_l1`` when the
    model has a ``detector``: the distiller of an mmdet student answers with its student, and
    only then."""
    from mmdet.engine.hooks import YOLOXModeSwitchHook
    with DefaultScope.overwrite_default_scope('mmdet'):
        distiller = Distiller(student=TINY_YOLOX)
    assert distiller.detector is distiller.student
    assert 'detector' not in dict(distiller.named_children())  # an alias, not a second copy
    runner = MagicMock(epoch=0, max_epochs=1, model=distiller)
    YOLOXModeSwitchHook(num_last_epochs=1).before_train_epoch(runner)
    assert distiller.student.bbox_head.use_l1 is True
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        classifier = Distiller(student=tiny_classifier(4))
    assert not hasattr(classifier, 'detector')
    with pytest.raises(AttributeError, match="no attribute 'detector'"):
        classifier.detector
