"""CUDA path: fused AdamW + bf16 autocast trains and reports throughput and MFU. Skipped without a GPU."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_config
from trainer import schema
from trainer.runlog import MemoryRunLogger
from trainer.train import train_run

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_fused_adamw_bf16_run_on_cuda() -> None:
    cfg = tiny_config(**{"train.device": "cuda", "model.width": 256, "model.depth": 4, "model.head_dim": 64,
                         "model.seq_len": 256, "train.batch_size": 32, "train.steps": 60, "hp.lr": 3e-3})
    log = MemoryRunLogger()
    result = train_run(cfg, log)
    assert result.status == schema.STATUS_OK, result.reason
    assert log.tags[schema.T_DEVICE].startswith("cuda")
    assert result.summary[schema.S_FINAL_VAL_LOSS] < result.summary[schema.S_INITIAL_LOSS] - 1.0
    assert result.summary[schema.S_TOKENS_PER_S] > 0
    if any(k in torch.cuda.get_device_name() for k in ("H100", "H200", "A100")):
        assert 0 < result.summary[schema.S_MFU] < 1


def test_cuda_and_cpu_agree_at_the_first_step() -> None:
    """bf16 autocast changes rounding, not the model: the first loss matches the fp32 CPU one closely."""
    cpu, gpu = MemoryRunLogger(), MemoryRunLogger()
    train_run(tiny_config(**{"train.steps": 1, "param.zero_readout": False}), cpu)
    train_run(tiny_config(**{"train.steps": 1, "param.zero_readout": False, "train.device": "cuda"}), gpu)
    assert gpu.last(schema.S_INITIAL_LOSS) == pytest.approx(cpu.last(schema.S_INITIAL_LOSS), rel=2e-2)
