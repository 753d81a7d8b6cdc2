"""Safeguard evidence for any policy: attestations and safeguard tests.

An **attestation** says who vouches that a safeguard standard (or one of its criteria) is in
place, in their words, citing artifacts (an audit report, a configuration, a log) kept in the
workspace by sha256. A **safeguard test** is a measurement against one criterion: k of n
attacks got through, with a Wilson interval, judged against the criterion's bound on the
conservative side of the interval (``at_most`` on its upper bound, ``at_least`` on its lower).

The builders (:func:`attestation`, :func:`safeguard_test`) are pure and check everything
against the policy; :func:`record_safeguard_evidence` stores the artifacts and appends the
record. The determination rule (:func:`safescale.policy.safeguard_met`) uses both kinds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from safescale import __version__
from safescale._errors import Problem, UserError
from safescale._input import regular_file_size
from safescale._stats import wilson_interval
from safescale.ledger import Workspace
from safescale.policy import (
    Evidence,
    Interval,
    Policy,
    canonical_json,
    policy_safeguard,
    safeguard_test_passes,
    sha256_hex,
    utcnow,
)


def _check_target(policy: Policy, safeguard: str, criterion: str | None) -> None:
    policy_safeguard(policy, safeguard, "SAFEGUARD")
    if criterion is not None:
        criteria = [c.id for c in policy.safeguard(safeguard).criteria]
        if criterion not in criteria:
            raise UserError(
                Problem(
                    f"{criterion!r} is not a criterion of {safeguard}; "
                    f"choose one of: {', '.join(criteria) or 'none'}",
                    field="--criterion",
                )
            )


def _record_id(prefix: str, fields: Mapping[str, object]) -> str:
    return f"{prefix}-{sha256_hex(canonical_json(dict(fields)))[:16]}"


def _nonempty(value: str, flag: str) -> str:
    text = value.strip()
    if not text:
        raise UserError(Problem("must not be empty", field=flag))
    return text


def attestation(
    policy: Policy,
    safeguard: str,
    *,
    model: str,
    by: str,
    statement: str,
    criterion: str | None = None,
    met: bool = True,
    artifacts: Mapping[str, str] | None = None,
    created: datetime | None = None,
) -> Evidence:
    """An attestation that ``safeguard`` (or its ``criterion``) is, or is not, in place.

    Args:
        policy: The policy whose safeguard standard is attested.
        safeguard: The standard's id.
        model: The model it covers (``*``: every model of the organisation).
        by: Who vouches (a person or a role).
        statement: What they state, in their words (shown in the determination's reasons).
        criterion: One criterion of the standard (None: the standard as a whole).
        met: False to record that it is not in place.
        artifacts: Name -> sha256 of files kept in the workspace (see
            :func:`record_safeguard_evidence`).
        created: When (default now). A re-approval is a new attestation with a later time.
    """
    _check_target(policy, safeguard, criterion)
    by, statement = _nonempty(by, "--by"), _nonempty(statement, "--statement")
    when = created or utcnow()
    arts = dict(artifacts or {})
    fields = {
        "model": model,
        "safeguard": safeguard,
        "criterion": criterion,
        "by": by,
        "statement": statement,
        "met": met,
        "artifacts": arts,
        "time": when.isoformat(),
    }
    return Evidence(
        id=_record_id("att", fields),
        model=model,
        kind="attestation",
        subject=safeguard,
        metric="attested",
        value=1.0 if met else 0.0,
        elicitation=statement,
        producer=f"attested by {by}",
        producer_version=__version__,
        artifacts=arts,
        created=when,
        details={"by": by, "criterion": criterion, "statement": statement, "policy": policy.id},
    )


def safeguard_test(
    policy: Policy,
    safeguard: str,
    *,
    model: str,
    criterion: str,
    metric: str,
    successes: int,
    n: int,
    by: str,
    at_least: float | None = None,
    at_most: float | None = None,
    method: str = "",
    artifacts: Mapping[str, str] | None = None,
    created: datetime | None = None,
) -> Evidence:
    """A safeguard test: ``successes`` of ``n`` trials, judged against one criterion's bound.

    Args:
        policy: The policy whose safeguard standard is tested.
        safeguard: The standard's id.
        model: The model (with its safeguards) tested.
        criterion: The criterion the test speaks to.
        metric: What was counted (``refusal_rate``, ``attack_success_rate``).
        successes: Trials counted by ``metric`` (k).
        n: Trials run.
        by: Who ran the test.
        at_least: The criterion is met when the 95% lower bound is at least this.
        at_most: The criterion is met when the 95% upper bound is at most this.
        method: How it was tested (attack set, red team, classifier version).
        artifacts: Name -> sha256 of files kept in the workspace (transcripts, reports).
        created: When (default now).
    """
    _check_target(policy, safeguard, criterion)
    by = _nonempty(by, "--by")
    if n < 1 or not 0 <= successes <= n:
        raise UserError(
            Problem(
                f"need 0 <= successes <= n and n >= 1 (got {successes}/{n})", field="--successes"
            )
        )
    if at_least is None and at_most is None:
        raise UserError(
            Problem("give the criterion's bound: --at-least X or --at-most X", field="--at-least")
        )
    for flag, bound in (("--at-least", at_least), ("--at-most", at_most)):
        if bound is not None and not (math.isfinite(bound) and 0 <= bound <= 1):
            raise UserError(Problem("must be a rate between 0 and 1", field=flag))
    lo, hi = wilson_interval(successes, n)
    when = created or utcnow()
    arts = dict(artifacts or {})
    details = {
        "by": by,
        "criterion": criterion,
        "method": method,
        "at_least": at_least,
        "at_most": at_most,
        "successes": successes,
        "policy": policy.id,
    }
    fields = {
        "model": model,
        "safeguard": safeguard,
        "metric": metric,
        "n": n,
        "artifacts": arts,
        "time": when.isoformat(),
        **details,
    }
    ev = Evidence(
        id=_record_id("sgt", fields),
        model=model,
        kind="safeguard_test",
        subject=safeguard,
        metric=metric,
        value=successes / n,
        interval=Interval(lo=lo, hi=hi, method="wilson"),
        n=n,
        elicitation=method,
        producer=f"tested by {by}",
        producer_version=__version__,
        artifacts=arts,
        created=when,
        details=details,
    )
    return ev.model_copy(update={"details": {**details, "passed": safeguard_test_passes(ev)}})


def check_artifact_file(path: Path) -> None:
    """Refuse an artifact that is not a regular file (missing, a folder, a device: /dev/zero
    would never end), in one line naming it."""
    regular_file_size(path, what="artifact file")


def store_artifacts(ws: Workspace, files: Mapping[str, Path]) -> dict[str, str]:
    """Keep ``files`` in the workspace's artifact store; name -> sha256."""
    out = {}
    for name, path in files.items():
        check_artifact_file(path)
        out[name] = ws.add_artifact(path)
    return out


def record_safeguard_evidence(ws: Workspace, evidence: Evidence) -> Evidence:
    """Append an attestation or safeguard test to the ledger; its artifacts must be stored."""
    missing = [n for n, sha in evidence.artifacts.items() if not ws.artifact_path(sha).is_file()]
    if missing:
        raise ValueError(f"artifacts not in the workspace: {', '.join(missing)}")
    ws.append_evidence(evidence)
    return evidence
