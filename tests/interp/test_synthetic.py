"""The ground-truth gate: the default trainer recovers known features in superposition."""

from dataclasses import replace

import pytest
import torch

from safescale.interp import (
    DEFAULT_SAE,
    SuperpositionConfig,
    feature_dictionary,
    recovery,
    run_superposition,
)


def test_default_trainer_recovers_the_true_features() -> None:
    # The gate: TopK with the default trainer settings (AuxK, unit-norm decoder, geometric
    # median b_dec, encoder = decoder transpose) at 2x the true features' width.
    r = run_superposition()
    assert r.recovery.mmcs >= 0.99, r.recovery
    assert r.recovery.mcc >= 0.99 and r.recovery.recovered_09 == 1.0
    assert r.recovery.n_features == SuperpositionConfig().n_features


def test_batchtopk_recovers_the_true_features_too() -> None:
    # BatchTopK's per-sample L0 varies, so it needs more tokens than TopK to settle.
    r = run_superposition(sae=replace(DEFAULT_SAE, architecture="batchtopk", tokens=250_000))
    assert r.recovery.mmcs >= 0.99, r.recovery


def test_an_untrained_dictionary_fails_the_gate() -> None:
    # The gate can fail: random atoms are far from the true features.
    cfg = SuperpositionConfig()
    random_atoms = torch.randn(128, cfg.d, generator=torch.Generator().manual_seed(5))
    assert recovery(feature_dictionary(cfg), random_atoms).mmcs < 0.8


def test_mmcs_is_lenient_where_mcc_is_not() -> None:
    true = feature_dictionary(SuperpositionConfig(d=16, n_features=8))
    same = recovery(true, true)
    assert same.mmcs == pytest.approx(1.0) and same.mcc == pytest.approx(1.0)
    # Half the features learned twice, half not at all: MMCS takes each feature's best atom
    # independently; the one-to-one matching (MCC) can only do as well or worse.
    dup = torch.cat([true[:4], true[:4]])
    r = recovery(true, dup)
    assert r.recovered_09 == 0.5
    assert r.mcc <= r.mmcs + 1e-9 and r.mmcs < 0.9
