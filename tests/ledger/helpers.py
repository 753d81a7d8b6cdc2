"""Record builders shared by the ledger tests."""

from __future__ import annotations

from safescale.policy import Evidence, Interval, ModelRecord


def model(i: int, **kw: object) -> ModelRecord:
    """A model record with a distinct id."""
    return ModelRecord(id=f"m{i}", flops=1e20 * (i + 1), **kw)  # type: ignore[arg-type]


def evidence(i: int, model_id: str = "m0", **kw: object) -> Evidence:
    """An evaluation result with an interval and n."""
    return Evidence(
        id=f"e{i}", model=model_id, kind="evaluation", subject="cbrn-uplift", value=0.25,
        interval=Interval(lo=0.2, hi=0.3), n=400, **kw,  # type: ignore[arg-type]
    )  # fmt: skip
