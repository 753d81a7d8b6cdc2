"""Compute accounting: training FLOP, lineages, effective compute and assessment triggers.

Effective compute of a model is its FLOP summed along its parent chain times its
algorithmic-efficiency multiplier; the policy's triggers compare it with the last
comprehensively assessed model of its lineage, and with the legal compute lines.
"""

from safescale.compute._flops import (
    HARDWARE_REL_UNCERTAINTY,
    FlopEstimate,
    hardware_flops,
    training_flops,
)
from safescale.compute._lineage import (
    DEFAULT_LINEAGE,
    ComputeSummary,
    assessment_times,
    lineage_of,
    lineage_summary,
)
from safescale.compute._triggers import TriggerResult, evaluate_triggers

__all__ = [
    "DEFAULT_LINEAGE",
    "HARDWARE_REL_UNCERTAINTY",
    "ComputeSummary",
    "FlopEstimate",
    "TriggerResult",
    "assessment_times",
    "evaluate_triggers",
    "hardware_flops",
    "lineage_of",
    "lineage_summary",
    "training_flops",
]
