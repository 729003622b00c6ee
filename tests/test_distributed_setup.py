"""setup_distributed's choices and errors, without starting processes (the two-process runs
are in tests/e2e/test_distributed_e2e.py)."""
import pytest
import torch
from mmengine.config import Config

from mmdistill.engine import setup_distributed

TORCHRUN_ENV = ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')


def test_single_process_config_is_left_alone():
    cfg = Config(dict(launcher='none'))
    setup_distributed(cfg)
    assert 'model_wrapper_cfg' not in cfg


@pytest.mark.skipif(torch.cuda.is_available(), reason='the errors are for machines without CUDA')
def test_without_cuda_only_torchrun_is_supported_and_its_environment_is_needed(monkeypatch):
    with pytest.raises(RuntimeError, match="launcher 'slurm' needs CUDA here.*torchrun "
                                           '--nproc_per_node=2 tools/train.py CONFIG '
                                           '--launcher pytorch'):
        setup_distributed(Config(dict(launcher='slurm')))
    for name in TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv('RANK', '0')
    with pytest.raises(RuntimeError, match="--launcher pytorch needs \\['WORLD_SIZE', "
                                           "'MASTER_ADDR', 'MASTER_PORT'\\] in the environment"):
        setup_distributed(Config(dict(launcher='pytorch')))
    assert not torch.distributed.is_initialized()
