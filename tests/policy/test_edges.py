"""Policies and records refuse what cannot be true: include cycles (a faked safeguard),
non-finite numbers, values outside their own interval."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from safescale._errors import UserError
from safescale.policy import (
    Evidence,
    Interval,
    ModelRecord,
    canonical_json,
    check_policy_text,
    load_policy,
    safeguard_met,
)

MINIMAL = (Path(__file__).parent / "minimal.yaml").read_text()
NOW = datetime(2026, 11, 1, tzinfo=UTC)

# Secure-Base is the baseline every model must meet; Secure-Weights is the stronger standard
# that CBRN-3 requires, and meeting it also meets the baseline.
TWO_STANDARDS = (
    MINIMAL.replace(
        "    reapproval_interval: P1Y\n",
        "    reapproval_interval: P1Y\n    includes: [Secure-Base]\n"
        "  - id: Secure-Base\n    name: Baseline security\n    category: security\n",
    )
    + "baseline_safeguards: [Secure-Base]\n"
)
# The attack from the issue: the baseline also "includes" the stronger standard.
CYCLE = TWO_STANDARDS.replace(
    "    category: security\nassessment",
    "    category: security\n    includes: [Secure-Weights]\nassessment",
)


def attestation(sid: str) -> Evidence:
    return Evidence(
        id=f"att-{sid}", model="m", kind="attestation", subject=sid, metric="attested",
        value=1.0, created=NOW - timedelta(days=1),
    )  # fmt: skip


def test_the_cycle_edit_is_the_only_change() -> None:
    assert CYCLE != TWO_STANDARDS
    assert check_policy_text(TWO_STANDARDS)[1] == []


def test_an_include_cycle_is_refused_with_its_path(tmp_path: Path) -> None:
    policy, problems = check_policy_text(CYCLE, source="p.yaml")
    assert policy is None and len(problems) == 1
    line = str(problems[0])
    assert "Secure-Base -> Secure-Weights -> Secure-Base" in line or (
        "Secure-Weights -> Secure-Base -> Secure-Weights" in line
    )
    assert "remove one include" in line and problems[0].line is not None
    path = tmp_path / "p.yaml"
    path.write_text(CYCLE)
    with pytest.raises(UserError):
        load_policy(path)  # so no assessment can ever run under it


def test_a_baseline_attestation_does_not_meet_the_stronger_standard() -> None:
    policy, problems = check_policy_text(TWO_STANDARDS)
    assert policy is not None and problems == []
    base_only = [attestation("Secure-Base")]
    met, reason, _ = safeguard_met(policy, "Secure-Weights", "m", base_only, NOW)
    assert not met, reason
    # ... while the stronger standard's attestation does meet the baseline it includes.
    met, reason, _ = safeguard_met(policy, "Secure-Base", "m", [attestation("Secure-Weights")], NOW)
    assert met and "via Secure-Weights" in reason


def test_records_refuse_non_finite_numbers() -> None:
    for bad in (math.inf, -math.inf, math.nan):
        with pytest.raises(ValidationError):
            ModelRecord(id="m", flops=bad)
        with pytest.raises(ValidationError):
            Evidence(id="e", model="m", kind="evaluation", subject="s", value=bad)
        with pytest.raises(ValidationError):
            Interval(lo=0.0, hi=bad, method="normal")
    with pytest.raises(ValidationError):  # nor can free-form details smuggle one in
        ModelRecord(id="m", flops=1e20, extra={"curve": [(1, 2.0), {"loss": math.nan}]})
    with pytest.raises(ValidationError):
        ModelRecord(id="m", flops=1e20, extra={"curve": [(1, math.inf)]})
    with pytest.raises(ValueError):  # and canonical JSON, the hashed form, has none
        canonical_json({"loss": math.inf})


def test_an_interval_holds_its_value_and_a_proportion_stays_in_0_1() -> None:
    ok = Evidence(id="e", model="m", kind="evaluation", subject="s", value=0.5,
                  interval=Interval(lo=0.4, hi=0.6))  # fmt: skip
    assert ok.interval is not None
    with pytest.raises(ValidationError, match="above hi"):
        Interval(lo=0.6, hi=0.4)
    with pytest.raises(ValidationError, match=r"\[0, 1\]"):
        Interval(lo=4.83, hi=5.0)  # the lm-eval accuracy of 5.0 from the issue
    with pytest.raises(ValidationError, match="outside its interval"):
        Evidence(id="e", model="m", kind="evaluation", subject="s", value=0.9,
                 interval=Interval(lo=0.4, hi=0.6))  # fmt: skip
    # A forecast's point may sit outside its percentile interval; that is not refused.
    Evidence(id="f", model="m", kind="forecast", subject="s", value=0.9,
             interval=Interval(lo=0.4, hi=0.6, method="bootstrap-percentile"))  # fmt: skip
