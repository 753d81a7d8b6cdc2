"""``--precision auto`` is chosen by measured speed; explicit precisions are obeyed."""

import pytest
import torch

from safescale.lab import measure_matmul_speed, resolve_precision
from safescale.lab._precision import BF16_MIN_SPEEDUP


def test_explicit_precisions_are_obeyed() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16", cpu)


def test_auto_follows_the_measured_speed() -> None:
    speed = measure_matmul_speed()
    assert speed.fp32_gflops > 0 and speed.bf16_gflops > 0
    assert speed.threads == torch.get_num_threads()
    expected = "bf16" if speed.bf16_speedup >= BF16_MIN_SPEEDUP else "fp32"
    assert resolve_precision("auto", torch.device("cpu")) == expected
