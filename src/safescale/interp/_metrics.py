"""SAE quality: reconstruction, sparsity, dead and dense latents, and LM loss when spliced in.

One definition each, tested on analytic cases (docs/interp.md explains the choices):

* FVU = sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 (centred, over the evaluation set, as
  sparsify does; a constant reconstruction bias raises it), bootstrap interval over tokens;
* L0: mean number of nonzero latents per token;
* dead: latents that never fire over the evaluation window (its size in tokens is reported);
  dense: latents firing on more than 10 % of tokens;
* spliced LM loss: next-token cross-entropy with the SAE's reconstruction replacing the
  activation, against the clean loss and zero- and mean-ablation of the site;
  ``recovered = (CE_ablate - CE_sae) / (CE_ablate - CE_clean)``, bootstrap over texts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from safescale._model_folder import context_limit
from safescale.interp._hooks import Hookpoint, splice
from safescale.interp._sae import SparseAutoencoder
from safescale.interp._stats import Estimate, bootstrap_ratio, mean_estimate, proportion

DENSE_SHARE = 0.1
"""A latent firing on more than this share of tokens is dense."""


@dataclass(frozen=True)
class Reconstruction:
    """Reconstruction and sparsity of an SAE on an evaluation set."""

    fvu: Estimate
    """Fraction of variance unexplained (centred)."""
    nmse: float
    """Uncentred normalised MSE, sum ||e||^2 / sum ||x||^2 (openai's; for comparison only)."""
    l0: Estimate
    """Active latents per token."""
    dead: Estimate
    """Share of latents that never fire in the window (n = latents)."""
    dense: Estimate
    """Share of latents firing on more than 10 % of tokens (n = latents)."""
    window_tokens: int
    """Tokens the dead/dense counts are over."""


@torch.no_grad()
def reconstruction(
    sae: SparseAutoencoder, acts: torch.Tensor, *, batch_size: int = 4096
) -> Reconstruction:
    """Score ``sae`` on activations ``acts`` (N, d)."""
    x_all = acts.float()
    mu = x_all.mean(0)
    err, var, raw, l0 = [], [], [], []
    fired = torch.zeros(sae.d_sae, dtype=torch.long)
    for x in x_all.split(batch_size):
        f = sae.encode(x)
        e = sae.decode(f) - x
        err.append((e * e).sum(1))
        var.append(((x - mu) ** 2).sum(1))
        raw.append((x * x).sum(1))
        nz = f != 0
        l0.append(nz.sum(1).float())
        fired += nz.sum(0)
    e_np, v_np = torch.cat(err).double().numpy(), torch.cat(var).double().numpy()
    n = len(e_np)
    dead_k = int((fired == 0).sum())
    dense_k = int((fired > DENSE_SHARE * n).sum())
    return Reconstruction(
        fvu=bootstrap_ratio(e_np, v_np, "tokens"),
        nmse=float(e_np.sum() / torch.cat(raw).double().sum()),
        l0=mean_estimate(torch.cat(l0).double().numpy(), "tokens"),
        dead=proportion(dead_k, sae.d_sae, "latents"),
        dense=proportion(dense_k, sae.d_sae, "latents"),
        window_tokens=n,
    )


@dataclass(frozen=True)
class SplicedLoss:
    """Next-token loss with the SAE spliced in, against the clean model and ablations."""

    clean: Estimate
    """Cross-entropy per token (nats), clean model."""
    sae: Estimate
    """With the SAE's reconstruction in place of the activation."""
    zero: Estimate
    """With the activation set to zero."""
    mean: Estimate
    """With the activation set to its mean over the cache."""
    delta: Estimate
    """``sae - clean`` (nats per token), bootstrap over texts."""
    recovered_zero: Estimate
    """``(zero - sae) / (zero - clean)``."""
    recovered_mean: Estimate
    """``(mean - sae) / (mean - clean)``."""


def _losses(
    model: Any, batches: list[tuple[torch.Tensor, torch.Tensor]]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-text summed next-token loss and token counts."""
    sums, counts = [], []
    for ids, mask in batches:
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1].float()
        tgt = ids[:, 1:]
        m = mask[:, 1:].bool()
        nll = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), reduction="none"
        ).view_as(tgt)
        sums.append((nll * m).sum(1).double())
        counts.append(m.sum(1).double())
    return torch.cat(sums).numpy(), torch.cat(counts).numpy()


@torch.no_grad()
def spliced_loss(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    hookpoint: Hookpoint,
    sae: SparseAutoencoder,
    mean_activation: torch.Tensor,
    *,
    context_size: int = 128,
    batch_size: int = 16,
) -> SplicedLoss:
    """LM loss on ``texts`` clean, with ``sae`` spliced in at ``hookpoint``, and ablated.

    Texts are cut to ``context_size`` tokens, and never past the positions the model's config
    declares (a cache captured with a longer context than this model's: a model with learned
    positions has no embedding past them, and any other reads positions it was not trained
    on)."""
    context_size = min(context_size, context_limit(model) or context_size)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    batches = []
    for start in range(0, len(texts), batch_size):
        enc = [tokenizer(t)["input_ids"][:context_size] for t in texts[start : start + batch_size]]
        enc = [e for e in enc if len(e) >= 2]
        if not enc:
            continue
        width = max(len(e) for e in enc)
        ids = torch.full((len(enc), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, e in enumerate(enc):
            ids[i, : len(e)] = torch.tensor(e)
            mask[i, : len(e)] = 1
        batches.append((ids, mask))
    model.eval()
    mu = mean_activation.float()
    clean, counts = _losses(model, batches)
    with splice(model, hookpoint, lambda a: sae(a.float()).to(a.dtype)):
        with_sae, _ = _losses(model, batches)
    with splice(model, hookpoint, torch.zeros_like):
        zero, _ = _losses(model, batches)
    with splice(model, hookpoint, lambda a: mu.to(a.dtype).expand_as(a)):
        mean, _ = _losses(model, batches)

    def ce(s: np.ndarray) -> Estimate:
        return bootstrap_ratio(s, counts, "texts")

    def recovered(abl: np.ndarray, seed: int) -> Estimate:
        # A ratio of differences of sums, resampled by text.
        n = len(abl)
        value = float((abl.sum() - with_sae.sum()) / max(abl.sum() - clean.sum(), 1e-12))
        rng = np.random.default_rng(seed)
        w = rng.multinomial(n, np.full(n, 1.0 / n), size=500).astype(np.float64)
        stats = (w @ (abl - with_sae)) / np.maximum(w @ (abl - clean), 1e-12)
        lo, hi = np.quantile(stats, [0.025, 0.975])
        return Estimate(value, n, float(lo), float(hi), "bootstrap", "texts")

    delta = bootstrap_ratio(with_sae - clean, counts, "texts")
    return SplicedLoss(
        clean=ce(clean),
        sae=ce(with_sae),
        zero=ce(zero),
        mean=ce(mean),
        delta=delta,
        recovered_zero=recovered(zero, 1),
        recovered_mean=recovered(mean, 2),
    )
