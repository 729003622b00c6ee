"""Synthetic datasets (coloured shapes on noise, stick figures) in each codebase's own layout,
for ``tools/smoke_test.py`` (:mod:`mmdistill.apis.smoke`), the tests and the evidence runs."""
from .classification import write_classification_dataset
from .detection import write_coco_detection
from .pose import write_coco_keypoints
from .segmentation import write_seg_dataset

__all__ = ['write_classification_dataset', 'write_coco_detection', 'write_coco_keypoints',
           'write_seg_dataset']
