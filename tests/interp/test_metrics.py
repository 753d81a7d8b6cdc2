"""Metric definitions on analytic cases, and the probes' AUROC against a reference."""

import numpy as np
import pytest
import torch

from safescale.interp import SparseAutoencoder, auroc, cross_validated_auroc, reconstruction


def _exact_sae(d: int) -> SparseAutoencoder:
    # ReLU(x) - ReLU(-x) = x: latents [I; -I] reconstruct every input exactly.
    sae = SparseAutoencoder(d, 2 * d, "relu")
    eye = torch.eye(d)
    with torch.no_grad():
        sae.w_enc.copy_(torch.cat([eye, -eye]))
        sae.w_dec.copy_(torch.cat([eye, -eye]))
    return sae


def test_fvu_is_zero_for_exact_reconstruction_and_one_for_the_mean() -> None:
    x = torch.randn(500, 6) + 3.0
    exact = reconstruction(_exact_sae(6), x)
    assert exact.fvu.value == pytest.approx(0.0, abs=1e-10)
    assert exact.fvu.n == 500 and exact.fvu.method == "bootstrap"
    mean_only = SparseAutoencoder(6, 4, "relu")
    with torch.no_grad():
        mean_only.b_dec.copy_(x.mean(0))
        mean_only.b_enc.fill_(-1.0)  # nothing fires
    r = reconstruction(mean_only, x)
    assert r.fvu.value == pytest.approx(1.0, rel=1e-6)
    assert r.l0.value == 0 and r.dead.value == 1.0 and r.dead.n == 4
    # Centred: the residual stream's large mean does not flatter it (uncentred NMSE does).
    assert r.nmse < 0.2


def test_a_constant_bias_raises_fvu() -> None:
    # dictionary_learning's "1 - Var(e)/Var(x)" subtracts the residual's mean, so a constant
    # reconstruction bias goes uncounted; our FVU counts it.
    class Biased(SparseAutoencoder):
        def decode(self, f: torch.Tensor) -> torch.Tensor:
            return super().decode(f) + 0.5

    x = torch.randn(400, 5)
    sae = Biased(5, 10, "relu")
    sae.load_state_dict(_exact_sae(5).state_dict())
    biased = reconstruction(sae, x)
    expected = float(400 * 5 * 0.25 / ((x - x.mean(0)) ** 2).sum())
    assert biased.fvu.value == pytest.approx(expected, rel=1e-5)
    assert biased.fvu.lo <= expected <= biased.fvu.hi


def test_l0_and_dense_latents_are_counted() -> None:
    x = torch.randn(300, 4)
    r = reconstruction(_exact_sae(4), x)
    # Each coordinate is positive or negative: exactly one of its two latents fires.
    assert r.l0.value == pytest.approx(4.0)
    assert r.dense.value == 1.0 and r.dead.value == 0.0


def test_auroc_matches_the_rank_statistic_and_has_a_delong_interval() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    s = y * 1.0 + rng.normal(size=400)
    r = auroc(s, y)
    pos, neg = s[y == 1], s[y == 0]
    brute = np.mean([[(p > q) + 0.5 * (p == q) for q in neg] for p in pos])
    assert r.estimate.value == pytest.approx(brute)
    assert r.estimate.lo < r.estimate.value < r.estimate.hi
    assert r.n_pos + r.n_neg == r.estimate.n == 400
    # DeLong's standard error against a bootstrap's.
    boots = []
    for _ in range(300):
        i = rng.integers(0, 400, 400)
        if 0 < y[i].sum() < 400:
            boots.append(auroc(s[i], y[i]).estimate.value)
    se_delong = (r.estimate.hi - r.estimate.lo) / (2 * 1.96)
    assert se_delong == pytest.approx(np.std(boots), rel=0.25)


def test_cross_validated_probe_separates_a_linear_signal_and_not_noise() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 10))
    y = (x[:, 0] + 0.3 * rng.normal(size=200) > 0).astype(int)
    good = cross_validated_auroc(x, y)
    assert good.auroc.estimate.lo > 0.9
    noise = cross_validated_auroc(x, rng.integers(0, 2, 200))
    assert noise.auroc.estimate.lo < 0.5 < noise.auroc.estimate.hi + 0.1
