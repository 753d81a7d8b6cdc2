"""Choosing the training precision by measured speed, not by a CPU flag.

A CPU flag does not say which is faster. On one AMD machine a 1024 x 1024 bf16 matmul ran at
77-89 GFLOP/s against 1,519 on an Intel machine with AMX; on another AMD EPYC, with AVX512-BF16
and no AMX, at 512 against fp32's 117 (one thread). ``auto`` therefore times both and takes
bf16 only where it is clearly faster. Either precision must give the same planted truths: the lab
certifies its organisms after training (:mod:`safescale.lab._certify`), whichever was used.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import torch

Precision = Literal["auto", "bf16", "fp32"]
PRECISIONS: tuple[str, ...] = ("auto", "bf16", "fp32")

BF16_MIN_SPEEDUP = 1.5
"""bf16 autocast is chosen only when its matmuls are at least this much faster than fp32's:
autocast adds casts around every matmul, so a small raw advantage is lost in training."""


@dataclass(frozen=True)
class MatmulSpeed:
    """Measured matmul throughput of this machine, now, at the current thread count."""

    fp32_gflops: float
    bf16_gflops: float
    threads: int

    @property
    def bf16_speedup(self) -> float:
        """bf16 throughput over fp32 throughput."""
        return self.bf16_gflops / max(self.fp32_gflops, 1e-9)


def _gflops(dtype: torch.dtype, n: int, budget_s: float) -> float:
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    a @ b  # warm-up: first calls pick kernels and allocate
    best = float("inf")
    spent, reps = 0.0, 0
    while (spent < budget_s and reps < 50) or reps < 3:
        t0 = time.perf_counter()
        a @ b
        dt = time.perf_counter() - t0
        best, spent, reps = min(best, dt), spent + dt, reps + 1
    return 2 * n**3 / best / 1e9


@lru_cache(maxsize=8)
def _measure(threads: int, n: int, budget_s: float) -> MatmulSpeed:
    return MatmulSpeed(
        fp32_gflops=_gflops(torch.float32, n, budget_s),
        bf16_gflops=_gflops(torch.bfloat16, n, budget_s),
        threads=threads,
    )


def measure_matmul_speed(n: int = 512, budget_s: float = 0.05) -> MatmulSpeed:
    """Best-of-several n x n matmul throughput in fp32 and bf16 (cached per thread count)."""
    return _measure(torch.get_num_threads(), n, budget_s)


def resolve_precision(precision: str, device: torch.device) -> Literal["bf16", "fp32"]:
    """The precision a run uses: ``bf16`` or ``fp32`` as asked, or ``auto`` by measured speed.

    On CUDA, ``auto`` takes bf16 where the GPU supports it (tensor cores make it faster). On the
    CPU it times both (about 0.1 s, once per process and thread count).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision != "auto":
        return "bf16" if precision == "bf16" else "fp32"
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type != "cpu":
        return "fp32"
    speed = measure_matmul_speed()
    return "bf16" if speed.bf16_speedup >= BF16_MIN_SPEEDUP else "fp32"
