"""Draw what FGD sees on one image: per FPN level with an FGD loss, the image with its GT
boxes, the foreground and background masks, the teacher's spatial attention and the squared
student-teacher feature difference (after the loss's align layer), as one PNG grid.

    python tools/analysis/visualize_fgd.py CONFIG IMAGE --boxes 10,20,200,180 [...] \\
        [--teacher-checkpoint T.pth] [--student-checkpoint S.pth] [--out fgd.png]
    python tools/analysis/visualize_fgd.py CONFIG IMAGE --ann-file instances_val2017.json \\
        [--image-id 139]

Boxes are ``x1,y1,x2,y2`` pixels of the original image (``--boxes``) or the image's non-crowd
COCO annotations (``--ann-file``; the image is found by ``--image-id`` or by its file name).
The image goes through the config's own test pipeline and data preprocessor, as in
validation. ``--student-checkpoint`` takes a checkpoint of the distillation run (student and
loss layers) or an exported ``student.pth``; without it the student has random weights, and
without ``--teacher-checkpoint`` the config's teacher checkpoint is loaded.
"""
import argparse
import copy
import json
import os.path as osp
from typing import List, Optional, Sequence

import cv2
import numpy as np
from mmengine.config import DictAction
from mmengine.dataset import Compose
from mmengine.registry import DefaultScope
from mmengine.runner.checkpoint import _load_checkpoint, _load_checkpoint_to_model

from mmdistill.apis import build_distiller
from mmdistill.engine import safe_checkpoint_loading
from mmdistill.utils import load_config
from mmdistill.visualization import draw_fgd_grid, fgd_level_maps


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='an FGD distillation config')
    parser.add_argument('image', help='the image file')
    boxes = parser.add_mutually_exclusive_group(required=True)
    boxes.add_argument('--boxes', nargs='+', metavar='X1,Y1,X2,Y2',
                       help='ground-truth boxes in pixels of the original image')
    boxes.add_argument('--ann-file', help='COCO json holding the image\'s annotations')
    parser.add_argument('--image-id', type=int,
                        help='the image\'s id in --ann-file (default: match its file name)')
    parser.add_argument('--teacher-checkpoint',
                        help='teacher weights (default: the config\'s teacher checkpoint)')
    parser.add_argument('--student-checkpoint',
                        help='a distillation checkpoint or an exported student.pth')
    parser.add_argument('--out', default='fgd_maps.png', help='the PNG to write')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, key=value')
    return parser.parse_args(argv)


def parse_boxes(specs: Sequence[str]) -> np.ndarray:
    """``['x1,y1,x2,y2', ...]`` -> K×4 float32, with a clear error on a malformed box."""
    boxes = []
    for spec in specs:
        values = spec.split(',')
        try:
            box = [float(v) for v in values]
        except ValueError:
            box = []
        if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
            raise ValueError(f"box '{spec}' must be four numbers x1,y1,x2,y2 with x2 > x1 and "
                             'y2 > y1, e.g. --boxes 10,20,200,180')
        boxes.append(box)
    return np.array(boxes, np.float32).reshape(-1, 4)


def coco_boxes(ann_file: str, image: str, image_id: Optional[int]) -> np.ndarray:
    """The non-crowd boxes of one image of a COCO json, as K×4 xyxy."""
    with open(ann_file) as f:
        coco = json.load(f)
    if image_id is None:
        name = osp.basename(image)
        matches = [i['id'] for i in coco['images'] if osp.basename(i['file_name']) == name]
        if not matches:
            raise ValueError(f"no image named '{name}' in {ann_file}: pass --image-id")
        image_id = matches[0]
    elif not any(i['id'] == image_id for i in coco['images']):
        raise ValueError(f'no image with id {image_id} in {ann_file}')
    boxes = [a['bbox'] for a in coco['annotations']
             if a['image_id'] == image_id and not a.get('iscrowd', 0)]
    xywh = np.array(boxes, np.float32).reshape(-1, 4)
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)


def test_pipeline(cfg) -> List[dict]:
    """The config's test pipeline without its annotation loading: the boxes given here go in
    before ``Resize``, which scales them with the image."""
    loader = cfg.get('test_dataloader') or cfg.get('val_dataloader')
    if loader is None:
        raise ValueError(f'{cfg.filename} has no test_dataloader or val_dataloader: the tool '
                         'prepares the image with the config\'s own test pipeline.')
    return [t for t in copy.deepcopy(loader.dataset.pipeline)
            if t['type'] not in ('LoadAnnotations', 'mmdet.LoadAnnotations')]


def prepare(distiller, cfg, image: str, boxes: np.ndarray) -> dict:
    """One image and its boxes through the test pipeline and the distiller's preprocessor."""
    from mmdet.structures.bbox import HorizontalBoxes
    results = dict(img_path=image, img_id=0, gt_bboxes=HorizontalBoxes(boxes),
                   gt_bboxes_labels=np.zeros(len(boxes), np.int64),
                   gt_ignore_flags=np.zeros(len(boxes), bool))
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        packed = Compose(test_pipeline(cfg))(results)
    image_tensor = packed['inputs']  # 3×h×w uint8 in the loader's channel order (BGR)
    data = distiller.data_preprocessor(
        dict(inputs=[image_tensor], data_samples=[packed['data_samples']]), False)
    batch_h, batch_w = data['inputs'].shape[-2:]
    picture = np.zeros((batch_h, batch_w, 3), np.uint8)  # the padded batch the maps cover
    picture[:image_tensor.shape[1], :image_tensor.shape[2]] = \
        image_tensor.permute(1, 2, 0).numpy()
    data['picture'] = picture
    return data


def load_student(distiller, checkpoint: str) -> None:
    """Load a distillation checkpoint (``student.*`` and loss weights) into the distiller, or
    an exported student checkpoint into its student."""
    with safe_checkpoint_loading('checkpoint to visualise'):
        state_dict = _load_checkpoint(checkpoint, map_location='cpu')
    state_dict = state_dict.get('state_dict', state_dict)
    target = distiller if any(k.startswith('student.') for k in state_dict) \
        else distiller.student
    _load_checkpoint_to_model(target, {'state_dict': state_dict}, strict=False)


def main(argv: Optional[Sequence[str]] = None) -> str:
    args = parse_args(argv)
    if args.boxes:
        boxes = parse_boxes(args.boxes)
    else:
        boxes = coco_boxes(args.ann_file, args.image, args.image_id)
    if not osp.isfile(args.image):
        raise FileNotFoundError(f'image {args.image} does not exist')
    options = dict(args.cfg_options or {})
    teacher_checkpoint = args.teacher_checkpoint
    if teacher_checkpoint is None:
        teacher = load_config(args.config, options).model.get('teacher') or {}
        teacher_checkpoint = teacher.get('checkpoint')
    distiller, cfg = build_distiller(args.config, options, teacher_checkpoint)
    if args.student_checkpoint:
        load_student(distiller, args.student_checkpoint)
    data = prepare(distiller, cfg, args.image, boxes)
    levels = fgd_level_maps(distiller, data['inputs'], data['data_samples'])
    shown = data['data_samples'][0].gt_instances.bboxes
    grid = draw_fgd_grid(data['picture'], getattr(shown, 'tensor', shown).numpy(), levels)
    if not cv2.imwrite(args.out, grid):
        raise OSError(f'could not write {args.out}')
    print(f'FGD maps of {len(levels)} level(s) written to {osp.abspath(args.out)}')
    return args.out


if __name__ == '__main__':
    main()
