"""Safety policies as checked code: schema, built-ins, validation, diff, determination."""

from safescale.policy._duration import Duration
from safescale.policy._load import (
    builtin_ids,
    builtin_path,
    check_policy_file,
    check_policy_text,
    check_references,
    load_builtin,
    load_policy,
    policy_sha256,
)
from safescale.policy._records import (
    Determination,
    Evidence,
    Interval,
    ModelRecord,
    Record,
    SafeguardStatus,
    SignOff,
    ThresholdStatus,
    canonical_json,
    sha256_hex,
    utcnow,
)
from safescale.policy._schema import (
    OUTCOME_SEVERITY,
    CalendarTrigger,
    CapabilityThreshold,
    DiscretionTrigger,
    EffectiveComputeTrigger,
    Evaluation,
    EvaluationBinding,
    EventTrigger,
    PauseRule,
    Policy,
    RegulatoryOverlay,
    SafeguardStandard,
    Trigger,
)

__all__ = [
    "Determination",
    "Evidence",
    "Interval",
    "ModelRecord",
    "Record",
    "SafeguardStatus",
    "SignOff",
    "ThresholdStatus",
    "canonical_json",
    "sha256_hex",
    "utcnow",
]
