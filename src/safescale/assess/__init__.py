"""The assessment loop: triggers, evaluations, forecasts, determination, ledger."""

from safescale.assess._assess import Assessment, Evaluator, assess, models_needing_assessment
from safescale.assess._evaluator import SuiteEvaluator
from safescale.assess._forecast import (
    MIN_POINTS,
    Forecast,
    LadderPoint,
    forecast_evaluations,
    forecast_png,
)
from safescale.assess._safeguards import (
    attestation,
    check_artifact_file,
    record_safeguard_evidence,
    safeguard_test,
    store_artifacts,
)

__all__ = [
    "MIN_POINTS",
    "Assessment",
    "Evaluator",
    "Forecast",
    "LadderPoint",
    "SuiteEvaluator",
    "assess",
    "attestation",
    "check_artifact_file",
    "forecast_evaluations",
    "forecast_png",
    "models_needing_assessment",
    "record_safeguard_evidence",
    "safeguard_test",
    "store_artifacts",
]
