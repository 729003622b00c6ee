"""benchmarks.evidence.train_run / train_and_validate, the one runner of the evidence
harnesses: a real digits run is trained, timed and validated once, then read back by its
fingerprint."""
import json
import os.path as osp

import pytest
from mmengine.config import Config

from benchmarks.digits import run as digits_run
from benchmarks.evidence import file_fingerprint, run_fingerprint, train_run, training


def student_config(work_dir: str, seed: int = 0) -> Config:
    cfg = Config.fromfile(osp.join(digits_run.CONFIGS, 'student_resnet18_w4.py'))
    cfg.work_dir = work_dir
    cfg.merge_from_dict({'train_dataloader.batch_size': 10, 'train_cfg.max_epochs': 1,
                         'randomness.seed': seed, **digits_run.schedule_overrides(cfg, 1)})
    return cfg


def no_training(cfg, caller):
    """Stands for the runner's builder where a run must be read, not trained."""
    raise RuntimeError(f'{cfg.work_dir} trained again')


def test_a_run_is_trained_once_and_then_read_by_its_fingerprint(tmp_path, monkeypatch):
    data_root = str(tmp_path / 'data')
    digits_run.write_digits(data_root, limit=40)
    configs = digits_run.CONFIGS
    result = train_run(student_config(str(tmp_path / 'a' / 'run')), 'accuracy/top1',
                       data_root, configs)
    assert result['cached'] is False and 0 <= result['metric'] <= 100
    # 20 training images in batches of 10: 2 iterations
    assert result['ms_per_iter'] == pytest.approx(1000 * result['seconds'] / 2)
    assert result['checkpoint'].endswith('epoch_1.pth') and osp.isfile(result['checkpoint'])
    saved = json.loads((tmp_path / 'a' / 'run' / 'result.json').read_text())
    assert saved['metric'] == result['metric'] and len(saved['fingerprint']) == 16
    assert result['seconds'] > 0 and saved['provenance']['command'].startswith('python')

    # the same run under another spelling of its work dir: read, no runner built
    monkeypatch.setattr(training, 'build_runner', no_training)
    moved = osp.join(str(tmp_path), 'a', '.', 'run')
    again = train_run(student_config(moved), 'accuracy/top1', data_root, configs)
    assert again['cached'] is True and again['metric'] == result['metric']
    assert again['fingerprint'] == saved['fingerprint']
    assert again['checkpoint'] == osp.join(moved, 'epoch_1.pth')
    # what changes the result changes the fingerprint: the seed, what the run starts from
    with pytest.raises(RuntimeError, match='trained again'):
        train_run(student_config(moved, seed=1), 'accuracy/top1', data_root, configs)
    teacher = dict(checkpoint=str(tmp_path / 'teacher.pth'), fingerprint='0123456789abcdef')
    with pytest.raises(RuntimeError, match='trained again'):
        train_run(student_config(moved), 'accuracy/top1', data_root, configs, [teacher])


def test_places_are_replaced_longest_first_and_files_hash_their_bytes(tmp_path):
    cfg = Config(dict(work_dir='w/run', load_from='w/run/teacher/epoch_1.pth'))
    # the checkpoint inside the work dir is one placeholder, not '<work dir>/teacher/...'
    one = run_fingerprint(cfg, {'w/run': '<w>', 'w/run/teacher/epoch_1.pth': '<t>'})
    moved = Config(dict(work_dir='v/run', load_from='x/epoch_9.pth'))
    assert run_fingerprint(moved, {'v/run': '<w>', 'x/epoch_9.pth': '<t>'}) == one
    assert run_fingerprint(moved, {'v/run': '<w>', 'x/epoch_9.pth': '<t>'}, ['a']) != one
    first, second = tmp_path / 'a.pth', tmp_path / 'b.pth'
    first.write_bytes(b'weights')
    second.write_bytes(b'weights')
    assert file_fingerprint(str(first)) == file_fingerprint(str(second))
    second.write_bytes(b'weightz')
    assert file_fingerprint(str(first)) != file_fingerprint(str(second))
