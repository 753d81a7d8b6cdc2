"""Safety policies as checked code: schema, built-ins, validation, diff, determination."""

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
