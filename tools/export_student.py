"""Export the student of a distillation run as the student codebase's own checkpoint + config.

    python tools/export_student.py CONFIG CHECKPOINT OUT_DIR

writes OUT_DIR/student.pth and OUT_DIR/student_config.py, which load with the student
codebase's API, e.g. ``mmdet.apis.init_detector(cfg, ckpt)``.
"""
import argparse

from mmdistill.apis import export_student


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='the distillation config of the run')
    parser.add_argument('checkpoint', help='a checkpoint the run saved')
    parser.add_argument('out_dir', help='folder for student.pth and student_config.py')
    args = parser.parse_args()
    ckpt, cfg = export_student(args.config, args.checkpoint, args.out_dir)
    print(f'student checkpoint: {ckpt}\nstudent config:     {cfg}')


if __name__ == '__main__':
    main()
