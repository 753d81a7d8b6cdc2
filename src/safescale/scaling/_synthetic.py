"""Synthetic training runs drawn from a known law, for tests, benchmarks and demonstrations."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from safescale.scaling._laws import FloatArray

CHINCHILLA = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
"""The Approach 3 estimates of Hoffmann et al. (2022), Table A3 / equation 10."""


@dataclass(frozen=True)
class Runs:
    """A set of training runs: parameters, tokens, compute and final loss, one row per run."""

    params: FloatArray
    """Model parameters N."""
    tokens: FloatArray
    """Training tokens D."""
    loss: FloatArray
    """Final loss L."""

    @property
    def compute(self) -> FloatArray:
        """Training compute C = 6 N D (Kaplan et al. 2020)."""
        return 6.0 * self.params * self.tokens

    def __len__(self) -> int:
        return len(self.loss)


def synthetic_runs(
    truth: dict[str, float] | None = None,
    *,
    budgets: FloatArray | None = None,
    per_budget: int = 28,
    spread: float = 8.0,
    noise: float = 0.01,
    seed: int = 0,
) -> Runs:
    """Iso-FLOP runs from a Chinchilla law with log-normal noise on the loss.

    For each compute budget, ``per_budget`` model sizes are spaced evenly in log N from
    ``N_opt / spread`` to ``N_opt * spread`` (the iso-FLOP design of Hoffmann et al., Approach 2)
    and trained on ``D = C / (6 N)`` tokens.

    Args:
        truth: Chinchilla parameters ``E, A, B, alpha, beta`` (default: the paper's estimates).
        budgets: compute budgets in FLOP (default: 9 budgets from 6e18 to 3e21, as in the paper).
        per_budget: runs per budget.
        spread: how far either side of the optimum the sizes reach, as a factor.
        noise: standard deviation of the multiplicative log-normal noise on the loss.
        seed: seed for the noise.
    """
    t = CHINCHILLA if truth is None else truth
    c = np.geomspace(6e18, 3e21, 9) if budgets is None else np.asarray(budgets, dtype=float)
    a, b, alpha, beta = t["A"], t["B"], t["alpha"], t["beta"]
    # Hoffmann et al. (2022), eq. 4: N_opt = G (C/6)^(beta/(alpha+beta)),
    # G = (alpha A / (beta B))^(1/(alpha+beta))
    g = (alpha * a / (beta * b)) ** (1 / (alpha + beta))
    n_opt = g * (c / 6.0) ** (beta / (alpha + beta))
    factors = np.geomspace(1 / spread, spread, per_budget)
    n = (n_opt[:, None] * factors[None, :]).ravel()
    d = (np.repeat(c, per_budget)) / (6.0 * n)
    clean = t["E"] + a / n**alpha + b / d**beta
    rng = np.random.default_rng(seed)
    loss = clean * np.exp(noise * rng.standard_normal(n.shape))
    return Runs(params=n, tokens=d, loss=loss)


CALIBRATION_SEEDS = range(0, 1000)
"""Synthetic-ladder seeds on which any choice in the forecast calibration may be made (the
error model, its degrees of freedom, any constant). Seeds 0-21, 100-131, 200-263, 300-363,
400-463 and 500-563 were used."""

HELD_OUT_SEEDS = range(1000, 1016)
"""Synthetic-ladder seeds kept for testing calibration only: disjoint from
:data:`CALIBRATION_SEEDS`, never used to choose anything (though their results under earlier
error models were seen; the benchmark-size rule of 2026-12-05 was chosen without them and
measured on them once, as on seeds 1016-1031, which docs/scaling.md reports)."""

LARGE_HELD_OUT_SEEDS = range(1032, 1096)
"""Sixty-four synthetic-ladder seeds for testing the intervals of forecasts told the benchmark's
size, fixed on 2026-12-05 before any of them was drawn, and used by
``tests/scaling/test_held_out_large.py`` alone. On the calibration seeds the pooled coverage
of a set of 16 ladders has a standard deviation of 0.02 (one benchmark + loss) to 0.035 (four
benchmarks) about its mean, too much to test a band 0.1 wide; 64 ladders halve it."""


@dataclass(frozen=True)
class Ladder:
    """A synthetic model ladder for capability forecasts: compute, loss and scores."""

    compute: FloatArray
    """``(n,)`` training FLOP, ascending."""
    loss: FloatArray
    """``(n,)`` loss per model (the first step of the two-step method)."""
    scores: FloatArray
    """``(n, B)`` benchmark scores."""
    chance: FloatArray
    """``(B,)`` chance score per benchmark."""


def synthetic_ladder(
    seed: int,
    *,
    n_models: int = 14,
    n_benchmarks: int = 1,
    decades: float = 3.0,
    questions: int = 1111,
) -> Ladder:
    """A ladder drawn from a known generative process (the truth the calibration tests use).

    Loss follows ``L(C) = E + A / C^alpha`` with per-model log-normal scatter (0.5%); each
    benchmark's probability of a right answer is a sigmoid of loss between its chance level and
    1 (the process the OLMo ladder paper assumes), and its score the share of ``questions``
    items answered right, a binomial draw: a proportion in [0, 1] whose noise shrinks towards
    the floor and the ceiling (standard deviation 0.015 at 0.5 for the default 1,111 items).
    Midpoints, slopes and chance levels are drawn per seed so that ladders sit at different
    stages of their rise. Models are spread log-uniformly (with jitter) over ``decades``
    orders of magnitude from 1e19 FLOP.
    """
    if questions < 1:
        raise ValueError(f"questions must be at least 1, got {questions}")
    rng = np.random.default_rng(seed)
    base = np.linspace(0.0, decades, n_models)
    jitter = rng.uniform(-0.3, 0.3, n_models) * decades / max(n_models - 1, 1)
    c = np.sort(10 ** (19.0 + np.clip(base + jitter, 0.0, decades)))
    e, a, alpha = 1.7, rng.uniform(300.0, 3000.0), rng.uniform(0.12, 0.16)
    clean = e + a / c**alpha
    loss = clean * np.exp(rng.normal(0.0, 0.005, n_models))
    lo, hi = float(clean.min()), float(clean.max())
    chance = rng.choice([0.0, 0.25, 0.5], size=n_benchmarks)
    scores = np.empty((n_models, n_benchmarks))
    for b in range(n_benchmarks):
        # Midpoint somewhere from the middle of the ladder's losses to a decade beyond it.
        mid = rng.uniform(lo - 0.4 * (hi - lo), lo + 0.6 * (hi - lo))
        slope = rng.uniform(3.0, 12.0) / max(hi - lo, 1e-9)
        p = chance[b] + (1 - chance[b]) / (1 + np.exp(slope * (loss - mid)))
        scores[:, b] = rng.binomial(questions, p) / questions
    return Ladder(c, loss, scores, chance)
