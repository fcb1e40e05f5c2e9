"""Device, precision and seeding."""

from __future__ import annotations

import contextlib
import os
import random
import warnings

import numpy as np
import torch


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device=cuda but no CUDA device is visible; use --device=cpu")
    return torch.device(name)


def bf16_is_fast(device: torch.device) -> bool:
    """bf16 autocast pays off on CUDA and on CPUs with AMX or AVX512-BF16.

    Without them (e.g. AVX2-only CPUs) oneDNN emulates bf16 and convolutions run about 10x
    slower than fp32 (measured on this project's 2-core AVX2 machine), so auto keeps fp32.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return cpu_isa() in ("AMX", "AVX512-BF16")


def cpu_isa() -> str:
    """The CPU's widest matrix/vector extension that torch uses: AMX, AVX512-BF16, AVX512,
    AVX2, ... It decides whether bf16 is fast, so benchmark rows record it."""
    if getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)():
        return "AMX"
    if getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)():
        return "AVX512-BF16"
    return torch.backends.cpu.get_cpu_capability()


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if bf16_is_fast(device) else torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16}[name]


def autocast(device: torch.device, dtype: torch.dtype):
    """An autocast context for bf16, a no-op for fp32 (re-enterable)."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (all devices) — the reference leaves NumPy unseeded (§12.9)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)


class CudaGraphed:
    """Run a pure function of CUDA tensors as CUDA graphs: one launch instead of hundreds.

    `fn(*tensors, **options)` must run the same kernels for the same input shapes, with no host
    sync and no host-to-device copy (no `.item()`, `bincount`, `torch.tensor(list)`). The
    first call per signature (shapes, dtypes, options) warms up on a side stream and captures a
    graph; later calls copy the inputs into the captured buffers, replay, and return a copy of
    the output. Results are those of `fn` run eagerly: the same kernels, replayed. If a capture
    fails, it warns once and runs `fn` eagerly from then on.
    """

    def __init__(self, fn):
        self.fn, self.graphs, self.failed = fn, {}, False

    def __call__(self, *tensors: torch.Tensor, **options):
        if self.failed:
            return self.fn(*tensors, **options)
        key = (tuple((t.shape, t.dtype, t.device) for t in tensors), tuple(sorted(options.items())))
        if key not in self.graphs:
            try:
                self.graphs[key] = self._capture(tensors, options)
            except RuntimeError as error:  # e.g. an op that syncs: keep training, eagerly
                self.failed = True
                warnings.warn(f"CUDA graph capture failed, running eagerly: {error}",
                              stacklevel=2)
                return self.fn(*tensors, **options)
        inputs, output, graph = self.graphs[key]
        for buffer, t in zip(inputs, tensors, strict=True):
            buffer.copy_(t)
        graph.replay()
        return output.clone()

    def _capture(self, tensors, options):
        inputs = [t.clone() for t in tensors]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # PyTorch's recipe: warm up outside the capture
            for _ in range(2):
                self.fn(*inputs, **options)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            output = self.fn(*inputs, **options)
        return inputs, output, graph
