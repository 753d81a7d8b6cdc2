"""Lineages: cumulative FLOP along parents, effective compute, comprehensive assessments.

A model's *parent* is the model it was trained from (fine-tuning, RL), so its FLOP adds up
along the parent chain. A *lineage* is a named family of models (``extra["lineage"]``,
inherited from the parent, ``"default"`` otherwise): successive pretraining runs of one series
share a lineage without sharing FLOP, and the effective-compute trigger compares each model
with the most recent comprehensively assessed model of its lineage.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from safescale._errors import IntegrityError, Problem
from safescale.policy import Determination, ModelRecord

DEFAULT_LINEAGE = "default"


@dataclass(frozen=True)
class ComputeSummary:
    """Compute facts of one model, derived from the ledger's records."""

    model: str
    lineage: str
    """The family the model belongs to."""
    stage: str
    parent: str | None
    ancestors: tuple[str, ...]
    """The parent chain, nearest first."""
    flops: float
    """FLOP of this stage alone."""
    cumulative_flops: float
    """FLOP summed along the parent chain (pretraining + fine-tuning + RL)."""
    cumulative_sigma: float
    """One-sigma uncertainty of ``cumulative_flops`` (stages independent, in quadrature)."""
    effective_multiplier: float
    effective_compute: float
    """``cumulative_flops x effective_multiplier``, in baseline-equivalent FLOP."""
    assessed_at: datetime | None
    """When the model was last comprehensively assessed (None if never)."""
    created: datetime


def lineage_of(record: ModelRecord, by_id: dict[str, ModelRecord]) -> str:
    """The record's lineage name: its own, else its nearest ancestor's, else the default."""
    seen: set[str] = set()
    current: ModelRecord | None = record
    while current is not None and current.id not in seen:
        name = current.extra.get("lineage")
        if isinstance(name, str) and name:
            return name
        seen.add(current.id)
        current = by_id.get(current.parent) if current.parent else None
    return DEFAULT_LINEAGE


class LineageError(IntegrityError, ValueError):
    """Model records whose parents do not form a tree (a parent not recorded, or a cycle): a
    ``ValueError`` for Python callers, and one line with exit status 1 from a command, whose
    records come from a ledger that should never hold them."""


def _ancestors(record: ModelRecord, by_id: dict[str, ModelRecord]) -> tuple[str, ...]:
    chain: list[str] = []
    parent = record.parent
    while parent is not None:
        if parent == record.id or parent in chain:
            raise LineageError(Problem(f"model {record.id!r}: its parents form a cycle through "
                                       f"{parent!r}; the records do not form a tree"))  # fmt: skip
        if parent not in by_id:
            raise LineageError(Problem(f"model {record.id!r}: parent {parent!r} is not recorded; "
                                       "record the parent before its children"))  # fmt: skip
        chain.append(parent)
        parent = by_id[parent].parent
    return tuple(chain)


def assessment_times(
    models: Sequence[ModelRecord], determinations: Sequence[Determination] = ()
) -> dict[str, datetime]:
    """When each model was last comprehensively assessed.

    A ModelRecord with ``assessed=True`` counts from its creation; a Determination counts from
    its ``as_of`` when it is the record of a comprehensive assessment (a partial one, made
    without fresh evidence for every bound evaluation, does not count).
    """
    times: dict[str, datetime] = {}
    for record in models:
        if record.assessed:
            times[record.id] = max(times.get(record.id, record.created), record.created)
    for det in determinations:
        if det.scope != "comprehensive":
            continue
        times[det.model] = max(times.get(det.model, det.as_of), det.as_of)
    return times


def lineage_summary(
    models: Sequence[ModelRecord], determinations: Sequence[Determination] = ()
) -> list[ComputeSummary]:
    """Per-model compute facts, in the order of ``models``.

    Raises:
        LineageError: (a ``ValueError``) a parent that is not among ``models``, or parents
            forming a cycle.
    """
    by_id = {m.id: m for m in models}
    assessed = assessment_times(models, determinations)
    out = []
    for record in models:
        chain = _ancestors(record, by_id)
        stages = [record, *(by_id[a] for a in chain)]
        cumulative = math.fsum(s.flops for s in stages)
        sigma = math.sqrt(math.fsum((s.flops * s.flops_rel_uncertainty) ** 2 for s in stages))
        out.append(
            ComputeSummary(
                model=record.id,
                lineage=lineage_of(record, by_id),
                stage=record.stage,
                parent=record.parent,
                ancestors=chain,
                flops=record.flops,
                cumulative_flops=cumulative,
                cumulative_sigma=sigma,
                effective_multiplier=record.effective_multiplier,
                effective_compute=cumulative * record.effective_multiplier,
                assessed_at=assessed.get(record.id),
                created=record.created,
            )
        )
    return out
