"""Time FGD's foreground/background mask construction: a Python loop over the boxes of each
image (the reference's form, the baseline here) against the batched form that FGDLoss uses.

    python tools/analysis/benchmark_fgd_masks.py [--device cuda] [--repeats 30] [--threads 1]

Boxes are random COCO-like boxes (sides 8 to 600 px, log-uniform) in an 800×1333 image padded
to 800×1344; the maps are the five FPN levels of that input (strides 8 to 128). Each time is
the best of ``--repeats`` runs (on a shared machine other processes only ever add time);
``--threads 1`` keeps a busy machine's thread-pool waits out of the numbers. Both forms must
give identical masks: the script stops with an AssertionError otherwise.
"""
import argparse
import math
import time

import torch

from mmdistill.losses.box_masks import background_masks, box_cell_ranges, foreground_masks

IMAGE_SHAPE = (800, 1333)
BATCH_SHAPE = (800, 1344)
LEVELS = [(100, 168), (50, 84), (25, 42), (13, 21), (7, 11)]


def loop_foreground_masks(boxes, image_shapes, batch_shapes, feature_shape):
    """The baseline: per image, paint each box's cells with ``max(mask, 1/area)``."""
    height, width = feature_shape
    masks = image_shapes.new_zeros(len(boxes), height, width)
    for i, image_boxes in enumerate(boxes):
        n = len(image_boxes)
        if n == 0:
            continue
        rows, cols, valid = box_cell_ranges(image_boxes, image_shapes[i].expand(n, 2),
                                            batch_shapes[i].expand(n, 2), feature_shape)
        cells = (rows[:, 1] - rows[:, 0] + 1) * (cols[:, 1] - cols[:, 0] + 1)
        weights = (valid.to(masks.dtype) / cells).tolist()
        for (r0, r1), (c0, c1), weight in zip(rows.tolist(), cols.tolist(), weights):
            if weight > 0:
                masks[i, r0:r1 + 1, c0:c1 + 1].clamp_(min=weight)
    return masks


def random_boxes(count: int, generator: torch.Generator, device) -> torch.Tensor:
    h, w = IMAGE_SHAPE
    sides = torch.empty(count, 2).uniform_(math.log(8), math.log(600), generator=generator).exp()
    centres = torch.rand(count, 2, generator=generator) * torch.tensor([w, h])
    boxes = torch.cat([centres - sides / 2, centres + sides / 2], dim=1)
    return boxes.to(device)  # some boxes reach outside the image, as real ones after crops do


def time_ms(fn, repeats: int, device) -> float:
    fn()
    samples = []
    for _ in range(repeats):
        if device.type == 'cuda':
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == 'cuda':
            torch.cuda.synchronize()
        samples.append((time.perf_counter() - start) * 1e3)
    return min(samples)  # the least disturbed run: other processes only ever add time


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--repeats', type=int, default=30)
    parser.add_argument('--threads', type=int, help='CPU threads (default: torch\'s)')
    parser.add_argument('--batches', type=int, nargs='+', default=[2, 8])
    parser.add_argument('--boxes', type=int, nargs='+', default=[0, 7, 50])
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)

    print(f'device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, '
          f'best of {args.repeats} runs; fg + bg masks, milliseconds')
    print(f'{"batch":>5} {"boxes/img":>9} {"level H×W":>10} {"loop":>8} {"batched":>8} '
          f'{"speed-up":>8}')
    for batch in args.batches:
        for count in args.boxes:
            boxes = [random_boxes(count, generator, device) for _ in range(batch)]
            image_shapes = torch.tensor([IMAGE_SHAPE] * batch, dtype=torch.float32,
                                        device=device)
            batch_shapes = torch.tensor([BATCH_SHAPE] * batch, dtype=torch.float32,
                                        device=device)
            totals = [0.0, 0.0]
            for level in LEVELS:
                forms = [loop_foreground_masks, foreground_masks]
                masks = [form(boxes, image_shapes, batch_shapes, level) for form in forms]
                assert torch.equal(masks[0], masks[1]), f'masks differ at {level}'
                times = [time_ms(lambda form=form: background_masks(
                    form(boxes, image_shapes, batch_shapes, level)), args.repeats, device)
                    for form in forms]
                totals = [total + t for total, t in zip(totals, times)]
                print(f'{batch:>5} {count:>9} {f"{level[0]}×{level[1]}":>10} {times[0]:>8.3f} '
                      f'{times[1]:>8.3f} {times[0] / times[1]:>7.1f}×')
            print(f'{batch:>5} {count:>9} {"5 levels":>10} {totals[0]:>8.3f} {totals[1]:>8.3f} '
                  f'{totals[0] / totals[1]:>7.1f}×')


if __name__ == '__main__':
    main()
