"""The ground-truth gate: sparse features in superposition, and how well an SAE recovers them.

After Sharkey, Braun and Millidge (2022), "Taking features out of superposition with sparse
autoencoders": ``n_features`` random unit directions in ``d``; each sample switches each feature
on with probability ``p`` (so the true L0 is ``n_features * p``) with a U(0, 1) magnitude, and
sums the active directions. Recovery is the *mean max cosine similarity* (MMCS): for every true
feature, the best cosine with any decoder row, averaged. MMCS is lenient (duplicates and junk
latents go unpunished), so the one-to-one MCC (Hungarian matching, O'Neill et al. 2024), the
share recovered at cos > 0.9 and the reverse MMCS are reported beside it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from safescale.interp._train import SAEConfig, TrainedSAE, train_sae


@dataclass(frozen=True, kw_only=True)
class SuperpositionConfig:
    """The synthetic data."""

    d: int = 32
    """Width of the activation space."""
    n_features: int = 64
    """True features (more than ``d``: superposition)."""
    true_l0: float = 3.0
    """Expected active features per sample."""
    seed: int = 0
    """Seed of the dictionary and the samples."""

    def __post_init__(self) -> None:
        if self.d < 2 or self.n_features < 1 or not 0 < self.true_l0 <= self.n_features:
            raise ValueError("need d >= 2, n_features >= 1 and 0 < true_l0 <= n_features")


DEFAULT_SAE = SAEConfig(d_sae=128, k=3, tokens=100_000, batch_size=512)
"""The gate's SAE: the default trainer settings at twice the true features' width and the
true L0 as k."""


@dataclass(frozen=True)
class Recovery:
    """How well a dictionary recovers the true features."""

    mmcs: float
    """Mean over true features of the max cosine with any learned atom."""
    mcc: float
    """Mean cosine over a one-to-one (Hungarian) matching of true features to atoms."""
    recovered_09: float
    """Share of true features whose best atom has cosine above 0.9."""
    reverse_mmcs: float
    """Mean over atoms of the max cosine with any true feature (junk atoms pull it down)."""
    n_features: int
    """True features (the n of the means above)."""


def feature_dictionary(cfg: SuperpositionConfig) -> torch.Tensor:
    """The true features, (n_features, d) unit rows."""
    g = torch.Generator().manual_seed(cfg.seed)
    f = torch.randn(cfg.n_features, cfg.d, generator=g)
    return f / f.norm(dim=1, keepdim=True)


def superposition_batches(
    cfg: SuperpositionConfig, batch_size: int, *, seed_offset: int = 1
) -> Iterator[torch.Tensor]:
    """An endless stream of (batch_size, d) samples."""
    feats = feature_dictionary(cfg)
    g = torch.Generator().manual_seed(cfg.seed + 1000 * seed_offset)
    p = cfg.true_l0 / cfg.n_features
    while True:
        on = torch.rand(batch_size, cfg.n_features, generator=g) < p
        mags = torch.rand(batch_size, cfg.n_features, generator=g)
        yield (on * mags) @ feats


def recovery(true: torch.Tensor, learned: torch.Tensor) -> Recovery:
    """Recovery of the rows of ``true`` by the rows of ``learned`` (both (n, d))."""
    t = true / true.norm(dim=1, keepdim=True).clamp_min(1e-12)
    lrn = learned / learned.norm(dim=1, keepdim=True).clamp_min(1e-12)
    cos = (t @ lrn.T).numpy().astype(np.float64)
    best = cos.max(axis=1)
    r, c = linear_sum_assignment(-cos)
    return Recovery(
        mmcs=float(best.mean()),
        mcc=float(cos[r, c].mean()),
        recovered_09=float((best > 0.9).mean()),
        reverse_mmcs=float(cos.max(axis=0).mean()),
        n_features=int(true.shape[0]),
    )


@dataclass(frozen=True)
class SyntheticResult:
    """An SAE trained on synthetic data, and its recovery of the true features."""

    trained: TrainedSAE
    recovery: Recovery
    data: SuperpositionConfig


def run_superposition(
    data: SuperpositionConfig | None = None, sae: SAEConfig | None = None
) -> SyntheticResult:
    """Train an SAE on the synthetic data and score its decoder against the true features."""
    data = data or SuperpositionConfig()
    cfg = sae or DEFAULT_SAE
    trained = train_sae(superposition_batches(data, cfg.batch_size), data.d, cfg)
    return SyntheticResult(
        trained, recovery(feature_dictionary(data), trained.sae.w_dec.detach()), data
    )
