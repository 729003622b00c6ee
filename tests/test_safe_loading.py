"""Weights-only checkpoint loading (:mod:`mmdistill.engine.checkpoint`): what an MMEngine
checkpoint holds loads, on torch's extensible weights-only unpickler and on the restricted
unpickler older torch gets; anything else is refused naming file, role and global; broken
files are named with their role in each role; the opt-in; nothing changes on import; loss
weights and the process-group timeout are checked before training."""
import argparse
import collections
import logging
import os
import os.path as osp
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.registry import DefaultScope
from mmengine.utils import digit_version
from mmengine.runner.checkpoint import CheckpointLoader, _load_checkpoint, load_from_local

from conftest import ROOT, tiny_classifier, write_config
from mmdistill.distillers import Distiller
from mmdistill.engine import (CheckpointReadError, SafeRunner, UnsafeCheckpointError, checkpoint,
                              load_checkpoint_file, safe_checkpoint_loading)
from mmdistill.engine.distributed import process_group_timeout

KD = dict(type='HintonKDLoss', tau=2.0,
          inputs=dict(student_logits='student.head.fc', teacher_logits='teacher.head.fc'))


@pytest.fixture(params=['torch weights-only', 'restricted unpickler'])
def loader_kind(request, monkeypatch):
    """Each test runs on both ways of loading: torch's weights-only unpickler with the
    allow-list (this torch), and the restricted unpickler that older torch gets."""
    if request.param == 'torch weights-only' and not checkpoint._torch_weights_only_extensible():
        pytest.skip('this torch cannot extend its weights-only unpickler (torch 2.13 can)')
    if request.param == 'restricted unpickler':
        monkeypatch.setattr(checkpoint, '_torch_weights_only_extensible', lambda: False)
    return request.param


def mmengine_checkpoint(path: str) -> str:
    """A checkpoint as MMEngine's Runner writes one: model weights, the message hub's state
    (``HistoryBuffer`` of numpy arrays, numpy scalars in its runtime info), a meta with the
    config text and numpy values, numpy's and Python's random states, and a ``Counter`` (what
    mmengine writes into a detection run's checkpoint on torch 2.0)."""
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        from mmpretrain.registry import MODELS
        model = MODELS.build(tiny_classifier(4))
    hub = MessageHub(f'hub_{osp.basename(path)}')
    for value in (2.5, 1.5):
        hub.update_scalar('train/loss', value)
    hub.update_info('iter', np.int64(7))
    hub.update_info('best', np.float32(0.25))
    torch.save({'meta': dict(cfg='model = dict(type="ImageClassifier")\n', seed=np.int64(3),
                             dataset_meta=dict(classes=('a', 'b')), epoch=1, iter=7,
                             rng=np.random.RandomState(0).get_state(),
                             counts=collections.Counter(a=2, b=1)),
                'state_dict': model.state_dict(), 'message_hub': hub.state_dict(),
                'optimizer': dict(state={}, param_groups=[dict(lr=0.1, params=[0])])}, path)
    return path


class Payload:
    """Unpickled, it creates ``path``: the stand-in for code a checkpoint could run."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, 'w')


class MethodOf:
    """Pickled as ``getattr(owner, name)``, as protocol 2 writes a class's function."""

    def __init__(self, owner, name):
        self.owner, self.name = owner, name

    def __reduce__(self):
        return getattr, (self.owner, self.name)


# ------------------------------------------------------------------------- what loads
def test_the_tested_torch_takes_the_allow_list_in_its_own_unpickler():
    """On the project's torch (2.13) loading goes through torch's weights-only unpickler, not
    the fallback (so the fixture's first variant never skips there)."""
    if digit_version(torch.__version__) >= digit_version('2.13.0'):
        assert checkpoint._torch_weights_only_extensible()


def test_an_mmengine_checkpoint_loads_whole(tmp_path, loader_kind):
    path = mmengine_checkpoint(str(tmp_path / 'run.pth'))
    expected = torch.load(path, weights_only=False)
    loaded = load_checkpoint_file(path, 'cpu', role='resume')
    buffer = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer) and buffer.data[0].tolist() == [2.5, 1.5]
    assert buffer.mean() == 2.0 and buffer.statistics('min') == 1.5  # its methods came back
    assert loaded['message_hub']['runtime_info']['best'] == np.float32(0.25)
    assert loaded['meta']['counts'] == collections.Counter(a=2, b=1)
    assert loaded['meta']['seed'] == 3 and loaded['meta']['cfg'] == expected['meta']['cfg']
    state, expected_state = loaded['meta']['rng'], expected['meta']['rng']
    assert state[0] == 'MT19937' and np.array_equal(state[1], expected_state[1])
    assert loaded['state_dict'].keys() == expected['state_dict'].keys()
    assert all(torch.equal(v, expected['state_dict'][k]) for k, v in loaded['state_dict'].items())


def test_numpy_1_and_2_names_both_load(tmp_path, loader_kind):
    """numpy 1.x writes its array rebuilder as numpy.core.multiarray, numpy 2.x as
    numpy._core.multiarray: a checkpoint of either loads."""
    path = str(tmp_path / 'np.pth')
    torch.save({'array': np.arange(3), 'scalar': np.float64(0.5)}, path)
    other = '_core' if b'numpy.core.multiarray' in _pickle_of(path) else 'core'
    renamed = str(tmp_path / 'renamed.pth')
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(renamed, 'w') as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.endswith('data.pkl'):
                data = re.sub(rb'numpy\.(_core|core)\.multiarray',
                              f'numpy.{other}.multiarray'.encode(), data)
            target.writestr(item, data)
    assert f'numpy.{other}.multiarray'.encode() in _pickle_of(renamed)
    for checkpoint_file in (path, renamed):
        loaded = load_checkpoint_file(checkpoint_file)
        assert loaded['array'].tolist() == [0, 1, 2] and loaded['scalar'] == 0.5


def _pickle_of(path: str) -> bytes:
    with zipfile.ZipFile(path) as archive:
        return archive.read(next(n for n in archive.namelist() if n.endswith('data.pkl')))


# ------------------------------------------------------------------------- what is refused
def test_a_global_outside_the_list_is_refused_before_it_runs(tmp_path, loader_kind):
    marker = tmp_path / 'created'
    path = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {}, 'meta': {'x': Payload(str(marker))}}, path)
    with pytest.raises(UnsafeCheckpointError) as error:
        load_checkpoint_file(path, role='load_from')
    message = str(error.value)
    assert f'load_from checkpoint {path} was refused' in message
    assert 'io.open' in message and 'MMDISTILL_TRUST_CHECKPOINTS' in message
    assert not marker.exists()


@pytest.mark.parametrize('owner, name, refused', [
    (HistoryBuffer, '__init__', 'mmengine.logging.history_buffer.HistoryBuffer.__init__'),
    (HistoryBuffer, '_set_default_statistics', 'HistoryBuffer._set_default_statistics'),
    (np.ndarray, 'tofile', 'numpy.ndarray.tofile'),
    (MessageHub, 'get_instance', 'mmengine.logging.message_hub.MessageHub')])
def test_getattr_reaches_only_public_functions_of_allowed_classes(tmp_path, loader_kind, owner,
                                                                  name, refused):
    path = str(tmp_path / 'getattr.pth')
    torch.save({'x': MethodOf(owner, name)}, path)
    with pytest.raises(UnsafeCheckpointError) as error:
        load_checkpoint_file(path)
    assert refused in str(error.value)
    torch.save({'x': MethodOf(HistoryBuffer, 'min')}, path)  # what HistoryBuffer pickles
    assert load_checkpoint_file(path)['x'] is HistoryBuffer.min


# ------------------------------------------------------------------------- broken files
def broken_files(tmp_path) -> dict:
    good = mmengine_checkpoint(str(tmp_path / 'good.pth'))
    with open(good, 'rb') as f:
        data = f.read()
    files = dict(empty=b'', truncated=data[:len(data) // 3], text=b'not a checkpoint\n')
    paths = {}
    for kind, content in files.items():
        paths[kind] = str(tmp_path / f'{kind}.pth')
        with open(paths[kind], 'wb') as f:
            f.write(content)
    return paths


EXPECTED = dict(empty='is empty (0 bytes', truncated='cannot be read: it is truncated or not',
                text='cannot be read: it is truncated or not')


def test_broken_files_are_named_with_their_role_as_load_from_and_on_resume(tmp_path,
                                                                          loader_kind):
    """Through mmdistill's SafeRunner, which loads ``load_from`` and a named resume file
    inside ``safe_checkpoint_loading`` with their role."""
    for kind, path in broken_files(tmp_path).items():
        for resume, role, fix in ((False, 'load_from', 'point load_from at a complete'),
                                  (True, 'resume', 'resume from an earlier checkpoint')):
            runner = SafeRunner(model=tiny_classifier(4), work_dir=str(tmp_path / 'work'),
                                default_scope='mmpretrain', load_from=path, resume=resume,
                                experiment_name=f'{kind}_{role}')
            with pytest.raises(CheckpointReadError) as error:
                runner.load_or_resume()
            message = str(error.value)
            assert f'{role} checkpoint {path} {EXPECTED[kind]}' in message, message
            assert fix in message


def test_broken_files_are_named_as_teacher_checkpoints(tmp_path, loader_kind):
    config = write_config(str(tmp_path / 'teacher.py'), default_scope='mmpretrain',
                          model=tiny_classifier(8))
    for kind, path in broken_files(tmp_path).items():
        for teachers, role in ((dict(teacher=dict(config=config, checkpoint=path)), 'teacher'),
                               (dict(teachers=dict(big=dict(config=config, checkpoint=path))),
                                'teacher big')):
            losses = dict(kd=dict(KD, inputs=dict(
                student_logits='student.head.fc',
                teacher_logits='teacher.head.fc' if 'teacher' in teachers
                else 'teachers.big.head.fc')))
            with DefaultScope.overwrite_default_scope('mmpretrain'), \
                    pytest.raises(CheckpointReadError) as error:
                Distiller(student=tiny_classifier(4), distill_losses=losses, **teachers)
            message = str(error.value)
            assert f'{role} checkpoint {path} {EXPECTED[kind]}' in message, message
            assert "point the teacher's checkpoint at the complete file" in message


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A folder served over HTTP on localhost (its URL prefix), and torch's hub cache in
    ``tmp_path`` (where URLs are downloaded to)."""
    import functools
    import http.server
    import threading
    folder = tmp_path / 'served'
    folder.mkdir()
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f'http://127.0.0.1:{server.server_address[1]}'
    server.shutdown()
    server.server_close()


def test_a_teacher_from_a_url_loads_weights_only(tmp_path, served, loader_kind):
    """Teacher checkpoints from model zoos are URLs: downloaded, then read weights-only."""
    folder, url = served
    config = write_config(str(tmp_path / 'teacher.py'), default_scope='mmpretrain',
                          model=tiny_classifier(8))
    marker = tmp_path / 'created'
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        from mmpretrain.registry import MODELS
        model = MODELS.build(tiny_classifier(8))
    torch.save({'state_dict': model.state_dict(), 'meta': {'x': Payload(str(marker))}},
               str(folder / 'evil_teacher.pth'))
    torch.save({'state_dict': model.state_dict(), 'meta': {'epoch': 3}},
               str(folder / 'teacher.pth'))

    def distiller(checkpoint):
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            return Distiller(student=tiny_classifier(4), distill_losses=dict(kd=KD),
                             teacher=dict(config=config, checkpoint=checkpoint))

    with pytest.raises(UnsafeCheckpointError) as error:
        distiller(f'{url}/evil_teacher.pth')
    cached = str(tmp_path / 'torch_home' / 'hub' / 'checkpoints' / 'evil_teacher.pth')
    assert f'teacher ({url}/evil_teacher.pth) checkpoint {cached} was refused' in str(error.value)
    assert 'io.open' in str(error.value) and not marker.exists()
    teacher = distiller(f'{url}/teacher.pth').teacher
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in teacher.state_dict().items())


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='resume checkpoint .*nowhere.pth can not be'):
        load_checkpoint_file(str(tmp_path / 'nowhere.pth'), role='resume')


# ------------------------------------------------------------------------- the opt-in
def legacy_checkpoint(path: str) -> str:
    """A trusted legacy checkpoint: its meta holds an object no allow-list has."""
    torch.save({'state_dict': {'w': torch.ones(2)},
                'meta': {'args': argparse.Namespace(lr=0.1)}}, path)
    return path


def test_the_opt_in_loads_a_trusted_legacy_checkpoint_with_a_warning(tmp_path, monkeypatch):
    path = legacy_checkpoint(str(tmp_path / 'legacy.pth'))
    other = legacy_checkpoint(str(tmp_path / 'other.pth'))
    with pytest.raises(UnsafeCheckpointError, match='argparse.Namespace'):
        load_checkpoint_file(path, role='teacher')
    logged = []
    monkeypatch.setattr(checkpoint, 'print_log',
                        lambda message, **kwargs: logged.append((message, kwargs['level'])))
    monkeypatch.setenv('MMDISTILL_TRUST_CHECKPOINTS',
                       os.pathsep.join([str(tmp_path / 'elsewhere.pth'), path]))
    for _ in range(2):
        loaded = load_checkpoint_file(path, role='teacher')
        assert loaded['meta']['args'].lr == 0.1
        assert torch.equal(loaded['state_dict']['w'], torch.ones(2))
    assert len(logged) == 2  # a warning at each use
    assert all(level == logging.WARNING and message.startswith(f'teacher checkpoint {path}: full '
                                                               'unpickling because')
               for message, level in logged)
    with pytest.raises(UnsafeCheckpointError):  # only the files it names
        load_checkpoint_file(other)
    monkeypatch.setenv('MMDISTILL_TRUST_CHECKPOINTS', '1')
    assert load_checkpoint_file(other)['meta']['args'].lr == 0.1


# ------------------------------------------------------------------------- scope
def test_the_loader_is_routed_only_inside_the_context(tmp_path):
    path = mmengine_checkpoint(str(tmp_path / 'run.pth'))
    before = CheckpointLoader._get_checkpoint_loader(path)
    with safe_checkpoint_loading('load_from'):
        inside = CheckpointLoader._get_checkpoint_loader(path)
        assert inside.__name__ == 'load_from_local_weights_only'
        assert _load_checkpoint(path)['meta']['iter'] == 7
        with safe_checkpoint_loading('teacher'):  # nested: the inner role, then the outer
            with pytest.raises(FileNotFoundError, match='^teacher checkpoint'):
                _load_checkpoint(str(tmp_path / 'absent.pth'))
        with pytest.raises(FileNotFoundError, match='^load_from checkpoint'):
            _load_checkpoint(str(tmp_path / 'absent.pth'))
    assert CheckpointLoader._get_checkpoint_loader(path) is before
    url = 'https://download.openmmlab.com/x.pth'
    url_loader = CheckpointLoader._get_checkpoint_loader(url)
    with pytest.raises(RuntimeError), safe_checkpoint_loading('resume'):
        assert CheckpointLoader._get_checkpoint_loader(url).__name__ == \
            'load_from_url_weights_only'
        raise RuntimeError('training failed')
    # restored on an error too
    assert CheckpointLoader._get_checkpoint_loader(path) is before
    assert CheckpointLoader._get_checkpoint_loader(url) is url_loader


def test_importing_mmdistill_changes_no_checkpoint_loading():
    """What a codebase's own tools/test.py gets when its config imports mmdistill."""
    code = ('from mmengine.runner.checkpoint import CheckpointLoader, load_from_local\n'
            'import torch.serialization as s\n'
            "safe = getattr(s, 'get_safe_globals', list)\n"
            'before = (dict(CheckpointLoader._schemes), list(safe()))\n'
            'import mmdistill\n'
            'after = (dict(CheckpointLoader._schemes), list(safe()))\n'
            'assert before == after, (before, after)\n'
            "assert CheckpointLoader._schemes[''] is load_from_local\n"
            'print("unchanged")\n')
    done = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=ROOT), timeout=300)
    assert done.returncode == 0 and 'unchanged' in done.stdout, done.stderr[-2000:]
    assert CheckpointLoader._schemes[''] is load_from_local  # nor in this process


# ------------------------------------------------------------------------- checks
@pytest.mark.parametrize('weight', [float('nan'), float('inf'), -0.5, '1.0', None, True])
def test_a_bad_loss_weight_is_refused_at_build_naming_the_loss(tmp_path, weight):
    with pytest.raises(ValueError) as error:  # before any teacher is built: none exists here
        Distiller(student=tiny_classifier(4),
                  teacher=dict(config=str(tmp_path / 'none.py'),
                               checkpoint=str(tmp_path / 'none.pth')),
                  distill_losses=dict(kd_logits=dict(KD, loss_weight=weight)))
    message = str(error.value)
    assert "distillation loss 'kd_logits'" in message
    assert f'model.distill_losses.kd_logits.loss_weight must be a finite number >= 0, got ' \
        f'{weight!r}' in message


def test_other_weights_of_a_loss_and_the_students_weight_are_checked(tmp_path):
    fgd = dict(type='FGDLoss', student_channels=8, teacher_channels=8, alpha_fgd=-1e-3,
               inputs=dict(student_feature='student.neck', teacher_feature='teacher.neck',
                           data_samples=None))
    teacher = dict(config=str(tmp_path / 'none.py'), checkpoint=str(tmp_path / 'none.pth'))
    with pytest.raises(ValueError, match=r"'fgd': model.distill_losses.fgd.alpha_fgd must be "
                                         r'a finite number >= 0, got -0.001'):
        Distiller(student=tiny_classifier(4), teacher=teacher, distill_losses=dict(fgd=fgd))
    with pytest.raises(ValueError, match=r"model.student_loss_weight must be a finite number "
                                         r">= 0, got 'nan'"):
        Distiller(student=tiny_classifier(4), teacher=teacher, student_loss_weight='nan',
                  distill_losses=dict(kd=KD))


def test_valid_weights_build(tmp_path):
    config = write_config(str(tmp_path / 'teacher.py'), default_scope='mmpretrain',
                          model=tiny_classifier(8))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        distiller = Distiller(student=tiny_classifier(4),
                              teacher=dict(config=config, checkpoint=None),
                              distill_losses=dict(kd=dict(KD, loss_weight=0),
                                                  kd2=dict(KD, loss_weight=np.float32(0.5))),
                              student_loss_weight=0)
    assert distiller.distill_losses['kd'].loss_weight == 0
    assert distiller.distill_losses['kd2'].loss_weight == 0.5


def test_the_process_group_timeout_comes_from_env_cfg():
    assert process_group_timeout(Config(dict(env_cfg=dict(dist_cfg=dict(timeout=90))))) \
        .total_seconds() == 90
    assert process_group_timeout(Config(dict(env_cfg=dict(dist_cfg=dict(backend='gloo'))))) \
        is None
    assert process_group_timeout(Config(dict())) is None
    for bad in (0, -5, '30', float('nan')):
        with pytest.raises(ValueError, match=r'env_cfg.dist_cfg.timeout must be a number of '
                                             r'seconds > 0, got ' + repr(bad).replace('.', r'\.')):
            process_group_timeout(Config(dict(env_cfg=dict(dist_cfg=dict(timeout=bad)))))
