"""An exported student loads in a plain process of its codebase, one that never imports
mmdistill, with torch's default weights-only ``torch.load``.

For each codebase the student of a ``configs/kd`` config gets a distiller checkpoint as the
Runner writes it (``student.*`` weights, the dataset's metainfo in ``meta``: mmpose's holds
numpy arrays), is exported, and a fresh interpreter loads it with the codebase's own API.
"""
import json
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config

from mmdistill.apis import export_student
from mmdistill.apis.export import plain_meta
from mmdistill.utils import build_model_in_scope

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
KD = osp.join(ROOT, 'configs', 'kd')
CONFIGS = dict(
    mmpretrain=osp.join(KD, 'kd_resnet18_from_resnet34_8xb32_in1k.py'),
    mmdet=osp.join(KD, 'fpn_retinanet_r18_from_r50_fpn_1x_coco.py'),
    mmseg=osp.join(KD, 'kd_pspnet_r18_from_r101-d8_4xb2-80k_cityscapes-512x1024.py'),
    mmpose=osp.join(KD, 'kd_rtmpose-s_from_rtmpose-m_8xb256-420e_coco-256x192.py'))

# Run in a fresh interpreter: load with the codebase's API, report what it loaded.
LOADER = r'''
import json, sys
codebase, config, checkpoint = sys.argv[1:]
if codebase == 'mmpretrain':
    from mmpretrain.apis import get_model
    model = get_model(config, pretrained=checkpoint, device='cpu')
    meta = model._dataset_meta
elif codebase == 'mmdet':
    from mmdet.apis import init_detector
    model = init_detector(config, checkpoint, device='cpu')
    meta = model.dataset_meta
elif codebase == 'mmseg':
    from mmseg.apis import init_model
    model = init_model(config, checkpoint, device='cpu')
    meta = model.dataset_meta
else:
    from mmpose.apis import init_model
    model = init_model(config, checkpoint, device='cpu')
    meta = model.dataset_meta
fingerprint = sum(float(v.double().sum()) for v in model.state_dict().values()
                  if v.is_floating_point())
print(json.dumps(dict(fingerprint=fingerprint, meta=meta,
                      mmdistill_imported=any(m.split('.')[0] == 'mmdistill' for m in sys.modules))))
'''


def dataset_meta(codebase: str) -> dict:
    """The metainfo the codebase's dataset gives the Runner, which saves it in checkpoints."""
    if codebase == 'mmpretrain':
        from mmpretrain.datasets import ImageNet
        return dict(ImageNet.METAINFO)
    if codebase == 'mmdet':
        from mmdet.datasets import CocoDataset
        return dict(CocoDataset.METAINFO)
    if codebase == 'mmseg':
        from mmseg.datasets import CityscapesDataset
        return dict(CityscapesDataset.METAINFO)
    from mmpose.datasets.datasets.utils import parse_pose_metainfo
    return parse_pose_metainfo(dict(from_file='configs/_base_/datasets/coco.py'))


def fingerprint(state_dict: dict) -> float:
    return sum(float(v.double().sum()) for v in state_dict.values() if v.is_floating_point())


def test_plain_meta_turns_numpy_into_python_and_drops_other_objects():
    meta = dict(a=np.arange(4).reshape(2, 2), b=(np.float32(0.5), 'x', None),
                c=dict(d=[np.int64(3)], e=object()), f=torch.ones(2))
    plain = plain_meta(meta)
    assert plain['a'] == [[0, 1], [2, 3]] and type(plain['a'][0][0]) is int
    assert plain['b'] == (0.5, 'x', None) and type(plain['b'][0]) is float
    assert plain['c'] == dict(d=[3]) and type(plain['c']['d'][0]) is int
    assert torch.equal(plain['f'], torch.ones(2))


@pytest.mark.parametrize('codebase', sorted(CONFIGS))
def test_exported_student_loads_weights_only_without_mmdistill(codebase, tmp_path):
    cfg = Config.fromfile(CONFIGS[codebase])
    torch.manual_seed(0)
    student = build_model_in_scope(cfg.model.student, codebase)
    meta = dataset_meta(codebase)
    checkpoint = str(tmp_path / 'iter_1.pth')
    torch.save({'state_dict': {f'student.{k}': v for k, v in student.state_dict().items()},
                'meta': dict(dataset_meta=meta, epoch=1, iter=1, seed=0,
                             cfg=cfg.pretty_text)}, checkpoint)
    exported, student_cfg = export_student(CONFIGS[codebase], checkpoint, str(tmp_path / 'out'))
    torch.load(exported, weights_only=True)  # what torch >= 2.6 does by default

    done = subprocess.run([sys.executable, '-c', LOADER, codebase, student_cfg, exported],
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded['mmdistill_imported'] is False
    assert loaded['fingerprint'] == pytest.approx(fingerprint(student.state_dict()), rel=1e-9)
    if codebase != 'mmpose':
        assert loaded['meta']['classes'] == list(meta['classes'])
    else:  # numpy arrays in the run's metainfo arrive as lists
        assert loaded['meta']['num_keypoints'] == meta['num_keypoints'] == 17
        assert isinstance(meta['sigmas'], np.ndarray)
        np.testing.assert_array_equal(loaded['meta']['sigmas'], meta['sigmas'])
        np.testing.assert_array_equal(loaded['meta']['keypoint_colors'],
                                      meta['keypoint_colors'])
