"""The policy schema: one shape that holds Anthropic's RSP, OpenAI's Preparedness Framework,
Google DeepMind's Frontier Safety Framework and a lab's own policy.

Every model forbids unknown fields, so a typo is an error rather than a silently ignored clause.
Cross-references (a threshold naming a safeguard, a decision naming a role) are checked by
:func:`safescale.policy.check_references`, which reports every dangling id with its path.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from safescale.policy._duration import Duration

POLICY_SCHEMA = "safescale/policy/v1"

Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]

Outcome = Literal[
    "continue",
    "notify",
    "intensify_evaluation",
    "upgrade_safeguards",
    "interim_measures",
    "restrict_deployment",
    "de_deploy",
    "pause_training",
    "lock_down_weights",
    "halt_development",
    "delete_weights",
]
"""The shared outcome vocabulary, mildest first."""

OUTCOME_SEVERITY: dict[str, int] = {name: rank for rank, name in enumerate(get_args(Outcome))}
"""Rank of each outcome; the determination's outcome is the most severe one called for."""

Commitment = Literal["binding", "goal", "recommendation", "competitor_contingent", "exploratory"]


def _outcomes(names: list[str]) -> list[Outcome]:
    return list(names)  # type: ignore[arg-type]


class _Model(BaseModel):
    # allow_inf_nan=False: YAML's .inf and .nan are refused wherever a number is expected
    # (a ratio of .inf is a trigger that can never fire).
    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False
    )


def _not_bool(value: object) -> object:
    # pydantic reads true as 1.0; in a policy line that is a typo, never a number.
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is not a number; write a finite number")
    return value


Number = Annotated[float, BeforeValidator(_not_bool)]
"""A finite number; YAML's ``true``/``false`` are refused rather than read as 1 and 0.

Text that reads as a number stays accepted: PyYAML reads ``1e25`` (no dot, no exponent sign)
as a string, and policies write compute lines that way."""

PROPORTION_METRICS = frozenset(
    {"accuracy", "acc", "acc_norm", "acc_bytes", "exact_match", "pass@1", "f1", "precision",
     "recall", "proportion", "fraction"}
)  # fmt: skip
"""Metric names that are proportions, so their values and lines lie in [0, 1]."""


def metric_range(metric: str) -> tuple[float, float] | None:
    """The values ``metric`` can take, when its name says (a proportion: ``(0.0, 1.0)``).

    Names in :data:`PROPORTION_METRICS` and names ending in ``_rate`` or ``_accuracy`` are
    proportions; any other metric (a speed-up, an uplift score) has no known range.
    """
    name = metric.lower()  # `Accuracy` is as much a proportion as `accuracy`
    if name in PROPORTION_METRICS or name.endswith(("_rate", "_accuracy")):
        return (0.0, 1.0)
    return None


class Source(_Model):
    """Where the policy text comes from."""

    url: str = Field(min_length=1)
    title: str | None = None
    published: date | None = None
    retrieved: date | None = None
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    note: str | None = None


class Framework(_Model):
    """What this policy is: whose, which version, since when, from where."""

    id: Id
    name: str = Field(min_length=1)
    developer: str = Field(min_length=1)
    version: str = Field(min_length=1)
    effective: date
    supersedes: str | None = None
    source: Source
    terminology: dict[str, str] = Field(default_factory=dict)
    """The framework's own words for our concepts (threshold -> Capability Threshold, ...)."""
    summary: str = ""


class RiskDomain(_Model):
    """A domain of catastrophic risk the policy tracks (or explicitly does not)."""

    id: Id
    name: str = Field(min_length=1)
    status: Literal["tracked", "ongoing_assessment", "research", "exploratory", "excluded"]
    description: str = ""


class Level(_Model):
    """Where a threshold sits in the framework's own scale."""

    scheme: Literal["asl", "pf", "ccl", "tcl", "lab", "custom"]
    label: str = Field(min_length=1)
    """ASL-3, High, Critical, CBRN uplift 1, ..."""
    ordinal: int | None = None


class Evaluation(_Model):
    """An evaluation the policy relies on; bindings refer to it by id."""

    id: Id
    name: str = Field(min_length=1)
    metric: str = "accuracy"
    description: str = ""
    suite: str | None = None
    """The runnable suite that produces it (for example ``lab/hazard_proxy``), if any."""
    chance: Number | None = None
    """Score of a model with no capability (the floor of a capability forecast)."""

    @field_validator("chance")
    @classmethod
    def _chance_in_range(cls, value: float | None, info: ValidationInfo) -> float | None:
        span = metric_range(str(info.data.get("metric", "accuracy")))
        if value is not None and span is not None and not span[0] <= value <= span[1]:
            raise ValueError(f"{value:g} is outside the metric's range [{span[0]:g}, {span[1]:g}]")
        return value


class EvaluationBinding(_Model):
    """How one evaluation's metric informs a threshold, and its lines.

    With ``direction: higher`` (more score = more capability) the status is *below* when the
    interval's upper bound is under ``rule_out``, *crossed* when its lower bound is over
    ``threshold``, and *cannot rule out* in between. ``alert`` is the early-warning line.
    """

    evaluation: Id
    metric: str | None = None
    """Defaults to the evaluation's metric."""
    direction: Literal["higher", "lower"] = "higher"
    rule_out: Number
    alert: Number | None = None
    threshold: Number | None = None
    max_age: Duration | None = None
    """Evidence older than this is stale, and stale evidence is never *below*."""
    elicitation: str = ""
    """What a serious assessment does to draw the capability out."""

    @model_validator(mode="after")
    def _lines_in_order(self) -> EvaluationBinding:
        lines = [("rule_out", self.rule_out)]
        if self.alert is not None:
            lines.append(("alert", self.alert))
        if self.threshold is not None:
            lines.append(("threshold", self.threshold))
        values = [v for _, v in lines]
        ordered = sorted(values) if self.direction == "higher" else sorted(values, reverse=True)
        if values != ordered:
            names = " <= ".join(n for n, _ in lines)
            word = "increase" if self.direction == "higher" else "decrease"
            raise ValueError(
                f"lines must {word} in the order {names} for direction '{self.direction}' "
                f"(got {', '.join(f'{n}={v:g}' for n, v in lines)})"
            )
        return self


class SafeguardRequirement(_Model):
    """Safeguard standards a threshold requires: all of ``all_of`` and one of each ``any_of``."""

    all_of: list[Id] = Field(default_factory=list)
    any_of: list[list[Id]] = Field(default_factory=list)
    arguments: list[str] = Field(default_factory=list)
    """Arguments that must accompany the safeguards (an affirmative case, a safety case)."""

    def ids(self) -> list[str]:
        """Every safeguard id mentioned, in order, without repeats."""
        seen: dict[str, None] = {}
        for sid in [*self.all_of, *(s for group in self.any_of for s in group)]:
            seen.setdefault(sid, None)
        return list(seen)


ThresholdKind = Literal["threshold", "checkpoint", "alert", "research_category"]


class CapabilityThreshold(_Model):
    """A capability level at which risk rises and safeguards must change."""

    id: Id
    name: str = Field(min_length=1)
    domain: Id
    kind: ThresholdKind = "threshold"
    level: Level | None = None
    commitment: Commitment = "binding"
    definition: str = Field(min_length=1)
    evaluations: list[EvaluationBinding] = Field(default_factory=list)
    required_safeguards: SafeguardRequirement = Field(default_factory=SafeguardRequirement)
    cannot_rule_out: Literal["treat_as_crossed", "treat_as_below", "escalate"] | None = None
    """Overrides the policy's default for this threshold."""
    rules_out: list[Id] = Field(default_factory=list)
    """Thresholds that are ruled out while this one (a checkpoint) is below."""
    on_reach: list[Outcome] = Field(default_factory=list)
    """Outcomes called for when this threshold is treated as crossed, beyond the safeguards."""
    source_ref: str | None = None


class Criterion(_Model):
    """One criterion of a safeguard standard, with the evidence it needs."""

    id: Id
    text: str = Field(min_length=1)
    evidence: list[str] = Field(default_factory=list)


class SafeguardStandard(_Model):
    """A set of deployment or security measures (an ASL Standard, a RAND security level)."""

    id: Id
    name: str = Field(min_length=1)
    category: Literal["deployment", "security", "alignment", "governance", "other"]
    objective: str = ""
    criteria: list[Criterion] = Field(default_factory=list)
    threat_actors_in_scope: list[str] = Field(default_factory=list)
    threat_actors_out_of_scope: list[str] = Field(default_factory=list)
    reapproval_interval: Duration | None = None
    """Approval lapses after this long; a lapsed safeguard is unmet."""
    includes: list[Id] = Field(default_factory=list)
    """Weaker standards that meeting this one also meets (ASL-3 includes ASL-2)."""
    crosswalk: dict[str, str] = Field(default_factory=dict)


class _Trigger(_Model):
    id: Id
    description: str = ""
    leads_to: Literal["comprehensive_assessment", "preliminary_assessment", "evaluation"] = (
        "comprehensive_assessment"
    )
    source_ref: str | None = None


class EffectiveComputeTrigger(_Trigger):
    """Fires when effective compute has grown by ``ratio`` since the reference model."""

    kind: Literal["effective_compute"] = "effective_compute"
    ratio: Number = Field(gt=1)
    relative_to: Literal["last_comprehensive_assessment"] = "last_comprehensive_assessment"


class CalendarTrigger(_Trigger):
    """Fires when ``interval`` has passed (of post-training, or since the last assessment)."""

    kind: Literal["calendar"] = "calendar"
    interval: Duration
    basis: Literal["accumulated_post_training", "since_last_assessment"] = (
        "accumulated_post_training"
    )


class EventTrigger(_Trigger):
    """Fires on a named event (a new deployment surface, a weights release, ...)."""

    kind: Literal["event"] = "event"
    events: list[str] = Field(min_length=1)


class DiscretionTrigger(_Trigger):
    """A person in ``role`` may order an assessment at any time."""

    kind: Literal["discretion"] = "discretion"
    role: Id


Trigger = Annotated[
    EffectiveComputeTrigger | CalendarTrigger | EventTrigger | DiscretionTrigger,
    Field(discriminator="kind"),
]


class Decision(_Model):
    """Who decides what, on which artifact, and who must hear of it."""

    id: Id
    about: Literal["capability", "safeguards", "deployment", "training", "policy_change"]
    artifact: str | None = None
    recommended_by: list[Id] = Field(default_factory=list)
    decided_by: list[Id] = Field(min_length=1)
    """All of these roles must sign."""
    notify: list[Id] = Field(default_factory=list)
    notify_before_proceeding: bool = False
    may_reverse: list[Id] = Field(default_factory=list)
    feedback: str = ""


class DecisionRules(_Model):
    """Which outcomes each situation calls for."""

    cannot_rule_out: Literal["treat_as_crossed", "treat_as_below", "escalate"] = "treat_as_crossed"
    """How a threshold that can be neither ruled out nor shown crossed is treated."""
    below: list[Outcome] = Field(default_factory=lambda: _outcomes(["continue"]))
    alert: list[Outcome] = Field(
        default_factory=lambda: _outcomes(["continue", "intensify_evaluation"])
    )
    escalate: list[Outcome] = Field(default_factory=lambda: _outcomes(["notify"]))
    crossed_safeguards_met: list[Outcome] = Field(default_factory=lambda: _outcomes(["continue"]))
    crossed_safeguards_unmet: list[Outcome] = Field(
        default_factory=lambda: _outcomes(["upgrade_safeguards", "restrict_deployment"])
    )


class LadderStep(_Model):
    """One rung of what to do while required safeguards are not yet in place."""

    step: Outcome
    approvers: list[Id] = Field(default_factory=list)
    notify: list[Id] = Field(default_factory=list)
    examples: list[str] = Field(default_factory=list)


class PauseRule(_Model):
    """Stop training models at least ``ratio`` x the effective compute of a model whose
    required safeguards are unmet, unless ``sufficient_safeguards`` are in place."""

    id: Id
    ratio: Number = Field(1.0, gt=0)
    sufficient_safeguards: list[Id] = Field(default_factory=list)
    action: Outcome = "pause_training"
    description: str = ""


class UnmetSafeguards(_Model):
    """The unmet-safeguards ladder and the training pause."""

    ladder: list[LadderStep] = Field(default_factory=list)
    training_pause: PauseRule | None = None


class Role(_Model):
    """A governance role (RSO, CEO, SAG, Board, ...)."""

    id: Id
    name: str = Field(min_length=1)
    duties: list[str] = Field(default_factory=list)


class Noncompliance(_Model):
    """How noncompliance is raised and handled."""

    channel: str = ""
    recipients: list[Id] = Field(default_factory=list)
    escalation: list[Id] = Field(default_factory=list)
    anti_retaliation: bool = False


class Governance(_Model):
    """Roles and the noncompliance channel."""

    roles: list[Role] = Field(min_length=1)
    noncompliance: Noncompliance = Field(default_factory=Noncompliance)
    policy_change: str = ""


class TransparencyItem(_Model):
    """Something the policy publishes or shares, with whom and when."""

    artifact: str = Field(min_length=1)
    audience: Literal["public", "government", "internal", "board", "third_party"]
    when: str = ""
    interval: Duration | None = None


class ExternalReview(_Model):
    """External review the policy commits to."""

    kind: str = Field(min_length=1)
    by: str = ""
    interval: Duration | None = None
    when: str = ""


class Transparency(_Model):
    """Transparency and external review commitments."""

    items: list[TransparencyItem] = Field(default_factory=list)
    external_review: list[ExternalReview] = Field(default_factory=list)


class PolicyException(_Model):
    """An audited escape hatch (for example a marginal-risk clause)."""

    id: Id
    kind: str = Field(min_length=1)
    conditions: list[str] = Field(default_factory=list)
    obligations: list[str] = Field(default_factory=list)
    approvers: list[Id] = Field(default_factory=list)


class RegulatoryOverlay(_Model):
    """A legal compute line and what crossing it requires."""

    id: Id
    name: str = Field(min_length=1)
    jurisdiction: str = Field(min_length=1)
    threshold_flop: Number = Field(gt=0)
    """Cumulative raw training FLOP above which the rule applies."""
    effect: str = Field(min_length=1)
    notify_to: str | None = None
    notify_within: Duration | None = None
    duties: list[str] = Field(default_factory=list)
    status: Literal["active", "revoked", "vetoed"] = "active"
    source: str | None = None


class Policy(_Model):
    """A whole safety policy."""

    schema_: Literal["safescale/policy/v1"] = Field("safescale/policy/v1", alias="schema")
    framework: Framework
    risk_domains: list[RiskDomain] = Field(min_length=1)
    evaluations: list[Evaluation] = Field(default_factory=list)
    capability_thresholds: list[CapabilityThreshold] = Field(min_length=1)
    safeguard_standards: list[SafeguardStandard] = Field(default_factory=list)
    baseline_safeguards: list[Id] = Field(default_factory=list)
    """Standards every model must meet whatever its capabilities (ASL-2)."""
    assessment_triggers: list[Trigger] = Field(default_factory=list)
    decision_rules: DecisionRules = Field(default_factory=DecisionRules)
    decisions: list[Decision] = Field(default_factory=list)
    unmet_safeguards: UnmetSafeguards = Field(default_factory=UnmetSafeguards)
    governance: Governance
    transparency: Transparency = Field(default_factory=Transparency)
    exceptions: list[PolicyException] = Field(default_factory=list)
    regulatory_overlays: list[RegulatoryOverlay] = Field(default_factory=list)
    planned_scale_up: Number = Field(4.0, gt=1)
    """Effective-compute factor of the next planned scale-up, for early-warning forecasts."""

    @property
    def id(self) -> str:
        """The policy's id (``framework.id``)."""
        return self.framework.id

    @property
    def version(self) -> str:
        """The policy's version (``framework.version``)."""
        return self.framework.version

    def threshold(self, tid: str) -> CapabilityThreshold:
        """The threshold with id ``tid`` (KeyError if none)."""
        for t in self.capability_thresholds:
            if t.id == tid:
                return t
        raise KeyError(tid)

    def evaluation(self, eid: str) -> Evaluation:
        """The evaluation with id ``eid`` (KeyError if none)."""
        for e in self.evaluations:
            if e.id == eid:
                return e
        raise KeyError(eid)

    def safeguard(self, sid: str) -> SafeguardStandard:
        """The safeguard standard with id ``sid`` (KeyError if none)."""
        for s in self.safeguard_standards:
            if s.id == sid:
                return s
        raise KeyError(sid)

    def to_dict(self) -> dict[str, object]:
        """The policy as plain data in the very shape the loader accepts."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def policy_json_schema() -> dict[str, object]:
    """The JSON Schema of a policy file (what ``safescale policy schema`` prints)."""
    schema = Policy.model_json_schema(by_alias=True, mode="validation")
    schema["$id"] = "https://safescale.dev/schema/policy/v1.json"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
