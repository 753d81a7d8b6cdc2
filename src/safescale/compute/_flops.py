"""Training FLOP: the operation count (6ND) and the hardware-time estimate.

Both methods follow Epoch AI's "Estimating training compute of deep learning models"
(Sevilla et al. 2022) and are the ones regulators accept (EU AI Act guidelines on GPAI, 2025).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

HARDWARE_REL_UNCERTAINTY = 0.3
"""One-sigma relative uncertainty of a hardware-time estimate. Utilisation (model FLOP
utilisation) is rarely known to better than about 30%: published MFU for large runs spans
roughly 20-60% (Chowdhery et al. 2022, Table 3), and peak-FLOP figures depend on the number
format the run really used."""


@dataclass(frozen=True)
class FlopEstimate:
    """Training FLOP with how it was obtained and how sure it is."""

    flops: float
    """Floating-point operations of the training run (this stage alone)."""
    rel_uncertainty: float
    """One-sigma relative uncertainty (0 for an operation count)."""
    method: Literal["count", "hardware", "reported"]
    """``count`` (6ND), ``hardware`` (GPU time x peak x utilisation) or ``reported``."""

    def __post_init__(self) -> None:
        if not self.flops > 0:
            raise ValueError(f"flops must be positive, got {self.flops}")
        if self.rel_uncertainty < 0:
            raise ValueError(f"rel_uncertainty must be >= 0, got {self.rel_uncertainty}")


def training_flops(params: float, tokens: float) -> float:
    """Training FLOP of a dense transformer by operation count: 6ND.

    Each token costs 2N FLOP forward and 4N backward (Kaplan et al. 2020, section 2.1). The
    attention term 2 n_layer n_ctx d_model per token is left out, as regulators and most
    papers do; it adds a few percent when the context is short relative to the width.
    """
    if not params > 0 or not tokens > 0:
        raise ValueError(f"params and tokens must be positive, got N={params}, D={tokens}")
    return 6.0 * params * tokens


def hardware_flops(
    gpu_hours: float,
    peak_flops: float,
    utilization: float,
    rel_uncertainty: float = HARDWARE_REL_UNCERTAINTY,
) -> FlopEstimate:
    """Training FLOP from hardware time: GPU-hours x 3600 x peak FLOP/s x utilisation.

    Args:
        gpu_hours: accelerator-hours of the run (number of GPUs x wall-clock hours).
        peak_flops: peak FLOP/s of one accelerator in the number format used (e.g. 9.89e14
            for an H100 SXM at dense BF16).
        utilization: achieved fraction of peak, in (0, 1].
        rel_uncertainty: one-sigma relative uncertainty to attach
            (default :data:`HARDWARE_REL_UNCERTAINTY`).
    """
    if not gpu_hours > 0 or not peak_flops > 0:
        raise ValueError("gpu_hours and peak_flops must be positive")
    if not 0 < utilization <= 1:
        raise ValueError(f"utilization must be in (0, 1], got {utilization}")
    return FlopEstimate(
        flops=gpu_hours * 3600.0 * peak_flops * utilization,
        rel_uncertainty=rel_uncertainty,
        method="hardware",
    )
