"""The benchmark's model-FLOPs count: exact for unpadded batches, padding never counted as work."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from test_models import TINY
from torch.utils.flop_counter import FlopCounterMode

from nmt.data.batching import collate
from nmt.models import build_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import benchmark  # noqa: E402


@pytest.mark.parametrize("name", ["transformer", "rnnsearch", "luong"])
def test_pair_flops_match_executed_flops(name):
    model = build_model(TINY[name], 40, 40, shared_vocab=True).train()
    flops = benchmark.pair_flops(model, 40)
    unpadded = collate(range(3), [[7] * 6] * 3, [[9] * 4] * 3)  # 7 source, 5 target positions each
    assert benchmark.step_flops(model, unpadded) == pytest.approx(3 * flops(7, 5), rel=1e-9)
    padded = collate(range(3), [[7] * 6, [7] * 2, [7] * 11], [[9] * 4, [9] * 8, [9] * 1])
    useful = flops(np.array([7, 3, 12]), np.array([5, 9, 2])).sum()
    assert useful < benchmark.step_flops(model, padded) <= 3 * flops(12, 9) * (1 + 1e-9)


@pytest.mark.parametrize("name", ["transformer", "luong"])
def test_cpu_attention_and_lstm_kernels_are_counted(name):
    """FlopCounterMode alone counts CPU SDPA and oneDNN LSTM layers as zero."""
    model = build_model(TINY[name], 40, 40, shared_vocab=True).train()
    batch = collate([0], [[7] * 6], [[9] * 4])
    plain = FlopCounterMode(display=False)
    with plain:
        benchmark.forward_backward(model, batch)
    model.zero_grad(set_to_none=True)
    assert benchmark.step_flops(model, batch) > plain.get_total_flops()
