"""Small-input overrides for mmpose's RTMPose configs (the pose end-to-end tests use them).

The SimCC input size of every model and pipeline shrinks from 192×256 to 64×96 (codec, head
and pipelines together) for speed; mmpose's own dataset class, transforms (the recipe's
``Albumentation`` step included) and metric run unchanged on the synthetic stick figures of
:func:`mmdistill.testing.write_coco_keypoints`.
"""
import copy

INPUT_SIZE = (64, 96)  # (w, h): SimCC codec input size
FEATURE_SIZE = (2, 3)  # (w, h) of the CSPNeXt stride-32 output the RTMCC head flattens


def small_head(prefix: str) -> dict:
    """Overrides that give the head at ``prefix`` and its codec the small input size."""
    return {f'{prefix}head.input_size': INPUT_SIZE,
            f'{prefix}head.in_featuremap_size': FEATURE_SIZE,
            f'{prefix}head.decoder.input_size': INPUT_SIZE,
            f'{prefix}backbone.init_cfg': None}  # no pretrained download


def small_pipeline(pipeline: list) -> list:
    """The pipeline with the small input size in its affine transform and target encoder."""
    steps = []
    for step in copy.deepcopy(pipeline):
        if step['type'] == 'TopdownAffine':
            step['input_size'] = INPUT_SIZE
        if step['type'] == 'GenerateTarget':
            step['encoder']['input_size'] = INPUT_SIZE
        steps.append(step)
    return steps


def loader(cfg_loader, root: str, split: str) -> dict:
    """``cfg_loader`` reading ``root``'s ``split`` (``train``/``val``), small pipeline,
    batch 4, no worker processes."""
    dataset = dict(cfg_loader.dataset, data_root=root, ann_file=f'annotations/{split}.json',
                   data_prefix=dict(img='images/'), bbox_file=None,
                   pipeline=small_pipeline(cfg_loader.dataset.pipeline))
    return dict(cfg_loader, dataset=dataset, batch_size=4, num_workers=0,
                persistent_workers=False)
