"""Records that every room exchanges: models, evidence, determinations.

They live in the base room so that the determination engine (pure, in this room) and the
ledger (which persists them) share one definition. Each is a versioned pydantic model: it is
written to disk and sent over HTTP.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from safescale._errors import Problem, UserError
from safescale._input import is_sha256

SCHEMA_VERSION = 1


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def canonical_json(obj: Any) -> bytes:
    """Canonical JSON bytes (sorted keys, no spaces, UTF-8): the form that gets hashed."""
    if isinstance(obj, BaseModel):
        obj = obj.model_dump(mode="json")
    # allow_nan=False: NaN and Infinity are not JSON; a record holding one (in a free-form
    # ``details`` or ``extra``) is refused rather than signed into the ledger.
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


# Persisted records refuse NaN and infinities: they are not JSON, and a value that is not a
# number cannot be evidence of anything.
_PERSISTED = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Record(BaseModel):
    """Base of every persisted record: strict fields, a schema version, a stable hash."""

    model_config = _PERSISTED

    schema_version: int = SCHEMA_VERSION

    @model_validator(mode="after")
    def _free_form_is_finite(self) -> Record:
        # allow_inf_nan covers typed float fields; free-form dicts (``extra``, ``details``)
        # would otherwise be written with the number silently replaced by null.
        stack: list[Any] = [v for v in self.__dict__.values() if isinstance(v, dict | list | tuple)]
        while stack:
            cur = stack.pop()
            for item in cur.values() if isinstance(cur, dict) else cur:
                if isinstance(item, float) and not math.isfinite(item):
                    raise ValueError(f"{item} is not a finite number; records hold only those")
                if isinstance(item, dict | list | tuple):
                    stack.append(item)
        return self

    def sha256(self) -> str:
        """sha256 of the record's canonical JSON."""
        return sha256_hex(canonical_json(self))


class Interval(BaseModel):
    """A confidence (or credible, or prediction) interval, ``lo <= hi``."""

    model_config = _PERSISTED

    lo: float
    hi: float
    confidence: float = Field(0.95, gt=0, lt=1)
    method: str = "wilson"
    """How it was computed: wilson, bootstrap-percentile, normal, ..."""

    @model_validator(mode="after")
    def _ordered(self) -> Interval:
        if not self.lo <= self.hi:
            raise ValueError(f"interval lo {self.lo:g} is above hi {self.hi:g}")
        if self.method == "wilson" and not 0.0 <= self.lo <= self.hi <= 1.0:
            raise ValueError(f"a Wilson interval lies in [0, 1] (got [{self.lo:g}, {self.hi:g}])")
        return self


class ModelRecord(Record):
    """A trained model: identity, lineage and training compute."""

    id: str = Field(min_length=1)
    parent: str | None = None
    """The model this one was trained from (fine-tuning, RL); None for a pretraining run."""
    stage: Literal["pretraining", "finetuning", "rl", "other"] = "pretraining"
    weights_ref: str | None = None
    """Where the weights are: a local folder, a URI, an API model name."""
    weights_sha256: str | None = None
    params: float | None = Field(None, gt=0)
    """Non-embedding parameters N."""
    tokens: float | None = Field(None, gt=0)
    """Training tokens D of this stage."""
    flops: float = Field(gt=0)
    """Training FLOP of this stage alone."""
    flops_method: Literal["count", "hardware", "reported"] = "count"
    flops_rel_uncertainty: float = Field(0.0, ge=0)
    """One-sigma relative uncertainty of ``flops`` (0 for an exact operation count)."""
    effective_multiplier: float = Field(1.0, gt=0)
    """Algorithmic-efficiency multiplier: effective compute = cumulative FLOP x multiplier."""
    assessed: bool = False
    """Whether this model was comprehensively assessed (anchors the effective-compute trigger)."""
    created: datetime = Field(default_factory=utcnow)
    extra: dict[str, Any] = Field(default_factory=dict)
    """Free-form facts (final validation loss, loss curve path, config)."""


EvidenceKind = Literal[
    "evaluation", "forecast", "safeguard_test", "interpretability", "attestation", "expert_review"
]


class Evidence(Record):
    """One measured fact about a model, bound to a threshold, evaluation or safeguard."""

    id: str = Field(min_length=1)
    model: str = Field(min_length=1)
    kind: EvidenceKind
    subject: str = Field(min_length=1)
    """The policy evaluation id, threshold id or safeguard id this evidence speaks to."""
    metric: str = "accuracy"
    value: float
    interval: Interval | None = None
    n: int | None = Field(None, ge=0)
    elicitation: str = ""
    """What was done to draw out the capability (prompting, fine-tuning, scaffolding)."""
    producer: str = "safescale"
    producer_version: str = ""
    artifacts: dict[str, str] = Field(default_factory=dict)
    """Name -> sha256 of content-addressed artifacts (logs, datasets, weights)."""
    created: datetime = Field(default_factory=utcnow)
    details: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _value_in_interval(self) -> Evidence:
        # A measured value lies inside its own confidence interval, and a proportion inside
        # [0, 1]. (A forecast's point may fall outside its percentile interval, so only
        # measurements are held to the first rule.)
        iv = self.interval
        slack = 1e-9
        if self.kind == "evaluation" and iv is not None:
            if not iv.lo - slack <= self.value <= iv.hi + slack:
                raise ValueError(
                    f"value {self.value:g} lies outside its interval [{iv.lo:g}, {iv.hi:g}]"
                )
            if iv.method == "wilson" and not 0.0 <= self.value <= 1.0:
                raise ValueError(f"a proportion lies in [0, 1] (got {self.value:g})")
        return self


ThresholdState = Literal["below", "cannot_rule_out", "crossed", "no_evidence"]


class ThresholdStatus(BaseModel):
    """The determination for one capability threshold."""

    model_config = _PERSISTED

    id: str
    status: ThresholdState
    treated_as_crossed: bool
    alert: bool
    """The early-warning line was passed (upper bound, or forecast for the next scale-up)."""
    reasons: list[str]
    evidence_ids: list[str]
    metric: float | None = None
    interval: Interval | None = None
    n: int | None = None
    """Sample size behind ``metric``."""
    forecast: float | None = None
    forecast_interval: Interval | None = None


class SafeguardStatus(BaseModel):
    """A safeguard standard the thresholds require, and whether attested evidence meets it."""

    model_config = _PERSISTED

    id: str
    required_by: list[str]
    met: bool
    reasons: list[str]
    evidence_ids: list[str]


class SignOff(BaseModel):
    """An approval or dissent by a governance role."""

    model_config = _PERSISTED

    role: str
    identity: str
    decision: Literal["approve", "dissent"]
    text: str = ""
    signed: datetime = Field(default_factory=utcnow)
    signature: str | None = None


class SignOffRecord(Record):
    """A governance role's approval of, or dissent from, a recorded determination."""

    id: str = Field(min_length=1)
    determination: str = Field(min_length=1)
    model: str = Field(min_length=1)
    role: str = Field(min_length=1)
    identity: str = Field(min_length=1)
    decision: Literal["approve", "dissent"]
    text: str = ""
    created: datetime = Field(default_factory=utcnow)


class Determination(Record):
    """What the policy says a model may do next, and why."""

    id: str
    model: str
    policy_id: str
    policy_version: str
    policy_sha256: str
    as_of: datetime
    thresholds: list[ThresholdStatus]
    safeguards: list[SafeguardStatus]
    outcome: str
    """The most severe outcome (see ``OUTCOME_SEVERITY``)."""
    actions: list[str]
    """Every outcome the policy's rules call for, most severe first."""
    reasons: list[str]
    sign_offs: list[SignOff] = Field(default_factory=list)
    created: datetime = Field(default_factory=utcnow)
    scope: Literal["comprehensive", "partial"] = "comprehensive"
    """``comprehensive`` when every evaluation the policy binds had fresh evidence; ``partial``
    otherwise. Only a comprehensive assessment resets the compute triggers."""
    missing: list[str] = Field(default_factory=list)
    """The bound evaluations without fresh evidence (what keeps the assessment partial)."""


def check_one_weights(recorded: Iterable[Evidence], new: Iterable[Evidence]) -> None:
    """Refuse ``new`` evidence whose weights (``details.weights_sha256``) differ from those of
    the evidence already recorded under the same model id: a record that names an endpoint
    and holds no hash of its own is reached by whatever the server serves, and a server
    restarted with other weights would otherwise add results about a second model to the
    first one's record (and a determination would read them together).

    Raises:
        UserError: a model id would stand for two sets of weights.
    """
    seen: dict[str, str] = {}
    for e in recorded:
        sha = e.details.get("weights_sha256")
        if is_sha256(sha):
            seen.setdefault(e.model, sha)
    for e in new:
        sha = e.details.get("weights_sha256")
        before = seen.get(e.model)
        if is_sha256(sha) and before is not None and before != sha:
            raise UserError(
                Problem(
                    f"model {e.model!r} has evidence about weights {before[:12]}..., these "
                    f"results are about {sha[:12]}...; one id cannot stand for two sets of "
                    "weights: give these another --model-id (and record it with compute add)",
                    field="--model-id",
                )
            )
        if is_sha256(sha):
            seen.setdefault(e.model, sha)
