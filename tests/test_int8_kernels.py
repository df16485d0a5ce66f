"""The C kernels of int8 decoding (nmt/models/int8_kernels.c) against the eager PyTorch operations."""

from __future__ import annotations

import logging

import pytest
import torch

from nmt.models import int8_kernels
from nmt.models import linear as linear_module
from nmt.models.linear import Linear, fixed_weights


def _eager(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(int8_kernels, "_loaded", [None])


def _inputs() -> list[torch.Tensor]:
    """Rows of many widths (vector tails), an all-zero row, an outlier, exact halves after scaling."""
    torch.manual_seed(0)
    xs = [torch.randn(n, k) * 3 for n, k in ((1, 1), (3, 7), (37, 256), (5, 1027), (300, 1024))]
    xs[2][4] = 0.0
    xs[2][5, 9] = 1e6
    halves = torch.arange(-127, 128, dtype=torch.float32)[None].repeat(2, 1)
    halves[:, :-1] += 0.5  # scale 1 (max 127): every value but the last is a tie, rounded to even
    xs.append(halves)
    xs.append(torch.zeros(0, 16))
    return xs


def test_the_c_kernels_give_the_eager_results_bit_for_bit(monkeypatch):
    """The compiled kernels make the same IEEE operations in the same order as the eager fallback, so
    int8 decoding translates alike with or without a C compiler, on every CPU."""
    assert int8_kernels.library() is not None, "no C compiler: .ci/run installs one (gcc)"
    torch.manual_seed(1)
    cases = []
    for x in _inputs():
        out = 48 if x.size(1) > 1 else 3
        acc = torch.randint(-(1 << 30), 1 << 30, (x.size(0), out), dtype=torch.int32)  # beyond 2^24: rounding
        if x.size(0) == 37:
            acc = acc.t().contiguous().t()  # the same values in column-major memory
        w_scale, x_scale, bias = torch.rand(out) * 1e-3, torch.rand(x.size(0), 1) * 1e-2, torch.randn(out)
        y = torch.randn(x.size(0), out) * 50
        cases.append((x, acc, w_scale, x_scale, bias, y))

    def run() -> list[torch.Tensor]:
        results = []
        for x, acc, w_scale, x_scale, bias, y in cases:
            results += int8_kernels.quantize_rows(x)
            results += int8_kernels.quantize_rows(x, linear_module.WEIGHT_LEVELS)  # as weights are
            for b in (bias, None):
                for relu in (False, True):
                    results.append(int8_kernels.rescale_int32(acc, w_scale, x_scale, b, relu))
                    results.append(int8_kernels.rescale_rows(y.clone(), x_scale, b, relu))
        return results

    native = run()
    _eager(monkeypatch)
    eager = run()
    assert len(native) == len(eager)
    for a, b in zip(native, eager):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    q, scale = eager[0:2]
    assert q.dtype == torch.int8 and scale.shape == (1, 1)
    halves_q = eager[5 * 12]  # the sixth input's quantized rows (12 results per input)
    assert halves_q[0, :4].tolist() == [-126, -126, -124, -124]  # -126.5, -125.5, -124.5, -123.5


def test_an_int8_layer_runs_alike_with_and_without_the_c_kernels(monkeypatch):
    """Both of _int8_linear's products (oneDNN's int8 kernel and torch._int_mm) through either rescaling."""
    torch.manual_seed(0)
    layer = Linear(256, 300)
    linear_module.quantize_int8(layer)
    x = torch.randn(2, 37, 256)[:, 1:]  # a non-contiguous input
    results = []
    for eager in (False, True):
        if eager:
            _eager(monkeypatch)
        for outputs in (1, 1 << 30):
            monkeypatch.setattr(linear_module, "FUSED_INT8_OUTPUTS", outputs)
            with torch.no_grad(), fixed_weights():
                results.append([layer(x), layer(x, relu=True), layer(x[:1, :1])])
    assert all(torch.equal(a, b) for a, b in zip(results[0], results[2]))
    assert all(torch.equal(a, b) for a, b in zip(results[1], results[3]))


def test_the_kernels_are_built_once_into_the_cache_and_missing_compilers_fall_back(monkeypatch, tmp_path, caplog):
    """The library is compiled into $XDG_CACHE_HOME/nmt under a hash of its source and reused from there;
    without a compiler int8 decoding warns once and runs the eager operations (same results)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(int8_kernels, "_loaded", [])
    assert int8_kernels.library() is not None
    (built,) = (tmp_path / "nmt").glob("int8_kernels-*.so")
    stamp = built.stat().st_mtime_ns
    monkeypatch.setattr(int8_kernels, "_loaded", [])
    assert int8_kernels.library() is not None and built.stat().st_mtime_ns == stamp

    x = torch.randn(4, 64)
    expected = int8_kernels.quantize_rows(x)
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "elsewhere"))
    monkeypatch.setattr(int8_kernels, "_loaded", [])
    with caplog.at_level(logging.WARNING, logger="nmt.models.int8_kernels"):
        assert int8_kernels.library() is None
        fallback = int8_kernels.quantize_rows(x)
    assert "int8_kernels.c failed" in caplog.text and "eager PyTorch" in caplog.text
    assert all(torch.equal(a, b) for a, b in zip(expected, fallback))
    monkeypatch.setattr(int8_kernels, "_loaded", [])
    monkeypatch.setenv("NMT_NATIVE_KERNELS", "0")
    assert int8_kernels.library() is None
