"""A synthetic COCO keypoint data set: stick figures with the 17 COCO body keypoints (and
COCO-WholeBody's feet, face and hands)."""
import json
import os
import os.path as osp
from typing import Dict, Tuple

import cv2
import numpy as np

COCO_KEYPOINTS = ('nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear', 'left_shoulder',
                  'right_shoulder', 'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist',
                  'left_hip', 'right_hip', 'left_knee', 'right_knee', 'left_ankle',
                  'right_ankle')
# COCO's person skeleton, 1-based keypoint indices as in the COCO annotation files.
COCO_SKELETON = ((16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7),
                 (6, 8), (7, 9), (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5),
                 (4, 6), (5, 7))
K = {name: i for i, name in enumerate(COCO_KEYPOINTS)}

# Body proportions in units of the figure's height s (pelvis to head top is about 0.5 s).
TORSO, SHOULDER, HIP, NECK, HEAD = 0.30, 0.11, 0.07, 0.10, 0.07
UPPER_ARM, FOREARM, THIGH, SHIN = 0.17, 0.15, 0.23, 0.22
# Limb colours (BGR): the person's left side reddish, the right side bluish, so that left and
# right can be told apart as on a real person seen from the front.
LEFT_COLOUR = (40, 40, 220)
RIGHT_COLOUR = (220, 90, 40)
TORSO_COLOUR = (60, 180, 60)
HEAD_COLOUR = (150, 200, 240)
# COCO-WholeBody's keypoints beyond the body, in its annotation files' order (133 in all).
WHOLE_BODY_PARTS = (('foot_kpts', 6), ('face_kpts', 68), ('lefthand_kpts', 21),
                    ('righthand_kpts', 21))
LIMBS = (('left_shoulder', 'left_elbow'), ('left_elbow', 'left_wrist'),
         ('right_shoulder', 'right_elbow'), ('right_elbow', 'right_wrist'),
         ('left_hip', 'left_knee'), ('left_knee', 'left_ankle'),
         ('right_hip', 'right_knee'), ('right_knee', 'right_ankle'))


def _direction(angle: float) -> np.ndarray:
    """Unit vector at ``angle`` radians from straight down (image y grows downwards),
    positive angles turning towards image right."""
    return np.array([np.sin(angle), np.cos(angle)])


def _stick_figure(rng: np.random.Generator, height: float, pelvis: np.ndarray) -> dict:
    """Joint positions (x, y) of a random pose, plus the head centre and radius."""
    tilt = rng.normal(0, np.deg2rad(8))
    down = _direction(tilt)
    across = np.array([down[1], -down[0]])  # towards image right = the person's left
    p = {}
    neck = pelvis - TORSO * height * down
    head = neck - NECK * height * down
    p['left_shoulder'] = neck + SHOULDER * height * across
    p['right_shoulder'] = neck - SHOULDER * height * across
    p['left_hip'] = pelvis + HIP * height * across
    p['right_hip'] = pelvis - HIP * height * across
    for side, sign in (('left', 1), ('right', -1)):
        # Angles from the torso's down direction, positive = away from the body.
        shoulder = rng.uniform(np.deg2rad(-20), np.deg2rad(160))
        elbow = shoulder + rng.uniform(0, np.deg2rad(120)) * rng.choice([-1, 1])
        hip = rng.uniform(np.deg2rad(-10), np.deg2rad(45))
        knee = hip + rng.uniform(np.deg2rad(-40), np.deg2rad(60))
        p[f'{side}_elbow'] = p[f'{side}_shoulder'] + \
            UPPER_ARM * height * _direction(tilt + sign * shoulder)
        p[f'{side}_wrist'] = p[f'{side}_elbow'] + FOREARM * height * _direction(tilt + sign * elbow)
        p[f'{side}_knee'] = p[f'{side}_hip'] + THIGH * height * _direction(tilt + sign * hip)
        p[f'{side}_ankle'] = p[f'{side}_knee'] + SHIN * height * _direction(tilt + sign * knee)
    # The face looks at the camera, turned left or right by ``yaw`` (in head radii).
    radius = HEAD * height
    yaw = rng.uniform(-0.4, 0.4)
    p['nose'] = head + radius * (yaw * across + 0.25 * down)
    p['left_eye'] = head + radius * ((yaw + 0.4) * across - 0.2 * down)
    p['right_eye'] = head + radius * ((yaw - 0.4) * across - 0.2 * down)
    p['left_ear'] = head + radius * (min(1.0, 1.0 - yaw) * across)
    p['right_ear'] = head - radius * (min(1.0, 1.0 + yaw) * across)
    hidden_ear = 'left_ear' if yaw > 0.25 else 'right_ear' if yaw < -0.25 else None
    return dict(joints=np.stack([p[name] for name in COCO_KEYPOINTS]), head=head,
                radius=radius, down=down, hidden_ear=hidden_ear)


def _whole_body_parts(figure: dict) -> Dict[str, np.ndarray]:
    """COCO-WholeBody's further keypoints of a figure, placed from its joints (not drawn): per
    foot a big toe, a small toe and a heel by the ankle; 68 face points on a ring inside the
    head; per hand the wrist and 20 finger points fanning out beyond it."""
    joints, down, radius = figure['joints'], figure['down'], figure['radius']
    across = np.array([down[1], -down[0]])
    feet = []
    for side, sign in (('left', 1), ('right', -1)):
        ankle = joints[K[f'{side}_ankle']]
        feet += [ankle + radius * (0.6 * down + sign * offset * across)
                 for offset in (0.5, 0.9)] + [ankle + radius * (0.3 * down - sign * 0.3 * across)]
    angles = np.linspace(0, 2 * np.pi, WHOLE_BODY_PARTS[1][1], endpoint=False)
    parts = dict(foot_kpts=np.array(feet), face_kpts=figure['head'] + 0.8 * radius * np.stack(
        [np.sin(angles), np.cos(angles)], axis=1))
    for side in ('left', 'right'):
        wrist = joints[K[f'{side}_wrist']]
        along = wrist - joints[K[f'{side}_elbow']]
        along = along / max(float(np.linalg.norm(along)), 1e-6)
        normal = np.array([along[1], -along[0]])
        fingers = [wrist + radius * (0.4 * (1 + k % 4) * along + 0.25 * (k // 4 - 2) * normal)
                   for k in range(20)]
        parts[f'{side}hand_kpts'] = np.array([wrist] + fingers)
    return parts


def _labelled(points: np.ndarray, width: int, height: int) -> list:
    """COCO's flat ``[x, y, v, ...]`` of ``points``: visible (2) inside the image, else
    unlabelled (``0, 0, 0``)."""
    inside = ((points[:, 0] >= 0) & (points[:, 0] <= width - 1) & (points[:, 1] >= 0) &
              (points[:, 1] <= height - 1))
    return [value for (x, y), keep in zip(points, inside)
            for value in ((round(float(x), 2), round(float(y), 2), 2) if keep else (0, 0, 0))]


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A flat random colour, Gaussian noise and a few random clutter lines and boxes."""
    image = np.empty((height, width, 3), np.float32)
    image[:] = rng.uniform(40, 215, size=3)
    image += rng.normal(0, 18, size=image.shape)
    image = np.clip(image, 0, 255).astype(np.uint8)
    for _ in range(rng.integers(1, 5)):
        a = tuple(int(v) for v in rng.integers(0, (width, height)))
        b = tuple(int(v) for v in rng.integers(0, (width, height)))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        if rng.random() < 0.5:
            cv2.line(image, a, b, colour, int(rng.integers(1, 3)))
        else:
            cv2.rectangle(image, a, b, colour, -1)
    return image


def _draw(image: np.ndarray, figure: dict, thickness: int) -> None:
    joints = figure['joints']

    def point(xy):
        return tuple(int(round(v)) for v in xy)

    for a, b in LIMBS:
        colour = LEFT_COLOUR if a.startswith('left') else RIGHT_COLOUR
        cv2.line(image, point(joints[K[a]]), point(joints[K[b]]), colour, thickness, cv2.LINE_AA)
    shoulders = (joints[K['left_shoulder']] + joints[K['right_shoulder']]) / 2
    hips = (joints[K['left_hip']] + joints[K['right_hip']]) / 2
    for a, b in (('left_shoulder', 'right_shoulder'), ('left_hip', 'right_hip')):
        cv2.line(image, point(joints[K[a]]), point(joints[K[b]]), TORSO_COLOUR, thickness)
    cv2.line(image, point(shoulders), point(hips), TORSO_COLOUR, thickness)
    cv2.line(image, point(shoulders), point(figure['head']), TORSO_COLOUR, thickness)
    cv2.circle(image, point(figure['head']), max(2, int(round(figure['radius']))), HEAD_COLOUR,
               -1, cv2.LINE_AA)
    dot = max(1, thickness // 2)
    for name, colour in (('left_eye', LEFT_COLOUR), ('right_eye', RIGHT_COLOUR),
                         ('nose', (30, 30, 30))):
        cv2.circle(image, point(joints[K[name]]), dot, colour, -1)


def _occlude(rng: np.random.Generator, image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Paint a noise patch over part of ``box`` (x1, y1, x2, y2); return the patch's box."""
    x1, y1, x2, y2 = box
    w, h = rng.uniform(0.25, 0.5) * (x2 - x1), rng.uniform(0.15, 0.35) * (y2 - y1)
    ox, oy = rng.uniform(x1, x2 - w), rng.uniform(y1, y2 - h)
    patch = np.array([ox, oy, ox + w, oy + h]).round().astype(int)
    patch[[0, 2]] = patch[[0, 2]].clip(0, image.shape[1])
    patch[[1, 3]] = patch[[1, 3]].clip(0, image.shape[0])
    shape = (patch[3] - patch[1], patch[2] - patch[0], 3)
    image[patch[1]:patch[3], patch[0]:patch[2]] = rng.integers(0, 256, size=shape,
                                                               dtype=np.uint8)
    return patch


def _one_person(rng: np.random.Generator, width: int, height: int, occlude_p: float):
    """A random image with one stick figure and its COCO annotation fields."""
    image = _background(rng, width, height)
    s = rng.uniform(0.45, 0.85) * height
    # The pelvis lies at ~0.5 s below the head top: keep most figures inside the image, and
    # let a few reach past an edge (those keypoints are then unlabelled, v = 0).
    pelvis = np.array([rng.uniform(0.2, 0.8) * width,
                       rng.uniform(0.5 * s, height - 0.35 * s)])
    figure = _stick_figure(rng, s, pelvis)
    thickness = max(1, int(round(0.025 * s)))
    _draw(image, figure, thickness)

    joints = figure['joints']
    head_top = figure['head'] - figure['radius'] * figure['down']
    extent = np.vstack([joints, head_top[None]])
    margin = thickness
    box = np.array([*(extent.min(0) - margin), *(extent.max(0) + margin)])
    box[[0, 2]] = box[[0, 2]].clip(0, width - 1)
    box[[1, 3]] = box[[1, 3]].clip(0, height - 1)

    visible = np.full(len(COCO_KEYPOINTS), 2)
    if figure['hidden_ear'] is not None:
        visible[K[figure['hidden_ear']]] = 1  # behind the head: labelled, not visible
    if rng.random() < occlude_p:
        x1, y1, x2, y2 = _occlude(rng, image, box)
        under = ((joints[:, 0] >= x1) & (joints[:, 0] < x2) & (joints[:, 1] >= y1) &
                 (joints[:, 1] < y2))
        visible[under] = 1
    inside = ((joints[:, 0] >= 0) & (joints[:, 0] <= width - 1) & (joints[:, 1] >= 0) &
              (joints[:, 1] <= height - 1))
    visible[~inside] = 0
    keypoints = np.concatenate([joints, visible[:, None]], axis=1)
    keypoints[~inside] = 0  # COCO writes unlabelled keypoints as (0, 0, 0)
    parts = {name: _labelled(points, width, height)
             for name, points in _whole_body_parts(figure).items()}
    return image, keypoints, box, int((visible > 0).sum()), parts


def _coco_json(images: list, annotations: list, seed: int) -> dict:
    return dict(
        info=dict(description=f'mmdistill synthetic stick figures, seed {seed}'),
        licenses=[],
        images=images,
        annotations=annotations,
        categories=[dict(id=1, name='person', supercategory='person',
                         keypoints=list(COCO_KEYPOINTS),
                         skeleton=[list(edge) for edge in COCO_SKELETON])])


def write_coco_keypoints(root: str, num_images: int = 12, size: Tuple[int, int] = (128, 128),
                         seed: int = 0, num_val: int = 4, occlude_p: float = 0.3) -> dict:
    """Write synthetic people (stick figures) as a COCO person-keypoint data set under ``root``.

    Layout (what mmpose's ``CocoDataset`` and ``CocoMetric`` read, and their whole-body
    versions)::

        root/images/0000.png ...          BGR content, written by OpenCV
        root/annotations/train.json       the first num_images - num_val images
        root/annotations/val.json         the last num_val images

    Each image holds one stick figure on a noisy, cluttered background: a head with eyes and
    nose, a torso, two arms and two legs in a random pose, tilt, position and scale, the
    person's left limbs drawn reddish and the right ones bluish. Its annotation has the 17
    COCO body keypoints (nose, eyes and ears on the head; shoulders, elbows, wrists, hips,
    knees and ankles at the joints) with COCO's visibility flags: 2 visible; 1 labelled but
    hidden (the ear behind a turned head, joints under an occluding noise patch, drawn with
    probability ``occlude_p``); 0 unlabelled (outside the image, written as ``0, 0, 0``). The
    box (``bbox``, COCO's ``[x, y, w, h]``) encloses the figure, clipped to the image;
    ``area`` is the box's area (the object scale of COCO's OKS), ``num_keypoints`` counts the
    labelled keypoints, ``iscrowd`` is 0, ``segmentation`` is empty. The category is COCO's
    ``person`` (id 1) with its keypoint names and skeleton. Each annotation also holds
    COCO-WholeBody's further keypoints (``foot_kpts``, ``face_kpts``, ``lefthand_kpts``,
    ``righthand_kpts``: 6 + 68 + 21 + 21, placed from the figure's ankles, head and wrists but
    not drawn; visible inside the image), so that ``CocoWholeBodyDataset``, ``UBody2dDataset``
    and ``CocoWholeBodyMetric`` read the same files with 133 keypoints. The same arguments
    always write the same files.

    Args:
        root: the folder to write into (created if needed).
        num_images: images in all, train and validation.
        size: (H, W) of every image, at least 32×32.
        seed: seed of the random generator that poses, places and sizes the figures.
        num_val: images in the validation split (the last ones).
        occlude_p: probability that an image gets an occluding patch over its figure.

    Returns:
        ``dict(train=<train json path>, val=<val json path>)``.
    """
    if num_val < 1 or num_images - num_val < 1:
        raise ValueError(f'need num_val >= 1 and at least 1 training image; got '
                         f'num_images={num_images}, num_val={num_val}')
    height, width = size
    if min(height, width) < 32:
        raise ValueError(f'size {size} is too small for a stick figure: use at least 32×32')
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'images'), exist_ok=True)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)

    splits = {'train': ([], []), 'val': ([], [])}
    for index in range(num_images):
        labelled = 0
        while labelled == 0:  # a figure wholly outside the image: draw another
            image, keypoints, box, labelled, parts = _one_person(rng, width, height,
                                                                 occlude_p)
        file_name = f'{index:04d}.png'
        if not cv2.imwrite(osp.join(root, 'images', file_name), image):
            raise OSError(f'could not write {osp.join(root, "images", file_name)}')
        x1, y1, x2, y2 = (float(v) for v in box)
        images, annotations = splits['train' if index < num_images - num_val else 'val']
        images.append(dict(id=index + 1, file_name=file_name, height=height, width=width))
        annotations.append(dict(
            id=index + 1, image_id=index + 1, category_id=1, iscrowd=0,
            keypoints=[value for x, y, v in keypoints
                       for value in (round(float(x), 2), round(float(y), 2), int(v))],
            num_keypoints=labelled, bbox=[x1, y1, x2 - x1, y2 - y1], area=(x2 - x1) * (y2 - y1),
            segmentation=[], **parts))

    paths = {}
    for split, (images, annotations) in splits.items():
        paths[split] = osp.join(root, 'annotations', f'{split}.json')
        with open(paths[split], 'w') as f:
            json.dump(_coco_json(images, annotations, seed), f)
    return paths
