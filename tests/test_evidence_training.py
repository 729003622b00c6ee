"""benchmarks.evidence.train_and_validate, the one runner of the evidence harnesses: a real
digits run is trained, timed and validated once, then read back by its fingerprint."""
import json
import os.path as osp

import pytest
from mmengine.config import Config

from benchmarks.digits import run as digits_run
from benchmarks.evidence import file_fingerprint, run_fingerprint, train_and_validate, training


def student_config(work_dir: str, data_root: str, seed: int = 0) -> Config:
    cfg = Config.fromfile(osp.join(digits_run.CONFIGS, 'student_resnet18_w4.py'))
    cfg.work_dir = work_dir
    cfg.merge_from_dict({'train_dataloader.dataset.data_root': data_root,
                         'val_dataloader.dataset.data_root': data_root,
                         'test_dataloader.dataset.data_root': data_root,
                         'train_dataloader.batch_size': 10, 'train_cfg.max_epochs': 1,
                         'randomness.seed': seed,
                         **digits_run.schedule_overrides(cfg, 1)})
    return cfg


class NoTraining:
    """Stands for MMEngine's Runner where a run must be read, not trained."""

    @staticmethod
    def from_cfg(cfg):
        raise RuntimeError(f'{cfg.work_dir} trained again')


def stamp(cfg: Config, data_root: str, depends_on=()) -> str:
    return run_fingerprint(cfg, {cfg.work_dir: '<work dir>', data_root: '<data root>'},
                           depends_on)


def test_a_run_is_trained_once_and_then_read_by_its_fingerprint(tmp_path, monkeypatch):
    data_root = str(tmp_path / 'data')
    digits_run.write_digits(data_root, limit=40)
    cfg = student_config(str(tmp_path / 'a' / 'run'), data_root)
    fingerprint = stamp(cfg, data_root)
    result = train_and_validate(cfg, 'accuracy/top1', fingerprint)
    assert result['cached'] is False and 0 <= result['metric'] <= 100
    # 20 training images in batches of 10: 2 iterations
    assert result['ms_per_iter'] == pytest.approx(1000 * result['seconds'] / 2)
    assert result['checkpoint'].endswith('epoch_1.pth') and osp.isfile(result['checkpoint'])
    saved = json.loads((tmp_path / 'a' / 'run' / 'result.json').read_text())
    assert saved['fingerprint'] == fingerprint and saved['metric'] == result['metric']
    assert result['seconds'] > 0 and saved['provenance']['command'].startswith('python')

    # the same run under another spelling of its work dir: read, no runner built
    monkeypatch.setattr(training, 'Runner', NoTraining)
    moved = student_config(str(tmp_path / 'a' / 'run'), data_root)
    moved.work_dir = osp.join(str(tmp_path), 'a', '.', 'run')
    assert stamp(moved, data_root) == fingerprint
    again = train_and_validate(moved, 'accuracy/top1', stamp(moved, data_root))
    assert again['cached'] is True and again['metric'] == result['metric']
    assert again['checkpoint'] == osp.join(moved.work_dir, 'epoch_1.pth')
    # what changes the result changes the fingerprint: the seed, a teacher's fingerprint
    other_seed = student_config(cfg.work_dir, data_root, seed=1)
    assert stamp(other_seed, data_root) != fingerprint
    assert stamp(cfg, data_root, ['0123456789abcdef']) != fingerprint
    # a different fingerprint is not read: it trains
    with pytest.raises(RuntimeError, match='trained again'):
        train_and_validate(other_seed, 'accuracy/top1', stamp(other_seed, data_root))


def test_places_are_replaced_longest_first_and_files_hash_their_bytes(tmp_path):
    cfg = Config(dict(work_dir='w/run', load_from='w/run/teacher/epoch_1.pth'))
    # the checkpoint inside the work dir is one placeholder, not '<work dir>/teacher/...'
    one = run_fingerprint(cfg, {'w/run': '<w>', 'w/run/teacher/epoch_1.pth': '<t>'})
    moved = Config(dict(work_dir='v/run', load_from='x/epoch_9.pth'))
    assert run_fingerprint(moved, {'v/run': '<w>', 'x/epoch_9.pth': '<t>'}) == one
    first, second = tmp_path / 'a.pth', tmp_path / 'b.pth'
    first.write_bytes(b'weights')
    second.write_bytes(b'weights')
    assert file_fingerprint(str(first)) == file_fingerprint(str(second))
    second.write_bytes(b'weightz')
    assert file_fingerprint(str(first)) != file_fingerprint(str(second))
