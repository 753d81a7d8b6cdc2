"""Training sparse autoencoders: TopK, BatchTopK and ReLU + L1.

Tricks, each from the literature (see docs/interp.md):

* inputs scaled so that E||x|| = sqrt(d), folded back into the weights on save (SAELens's
  ``expected_average_only_in``; dictionary_learning does the same);
* ``b_dec`` initialised at the geometric median of a sample (Bricken et al. 2023; openai's
  ``init_from_data_``), found by Weiszfeld's algorithm;
* encoder initialised as the decoder's transpose (Gao et al. 2024);
* unit-norm decoder rows: the gradient's component along each row is removed before the step
  and the rows renormalised after it;
* AuxK (Gao et al. 2024): latents that have not fired for ``dead_tokens`` tokens reconstruct
  the residual error through their top ``k_aux`` pre-activations, weight ``auxk_alpha``.

The TopK/BatchTopK step has two implementations that agree (a test checks it):
:func:`sparse_step` computes the gradients by hand from the (token, latent, value) triples the
activation keeps, so decoding and every backward product cost O(nnz x d) instead of
O(batch x d_sae x d); :func:`dense_step` is the plain autograd reference.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from safescale.interp._sae import ARCHITECTURES, SparseAutoencoder


@dataclass(frozen=True, kw_only=True)
class SAEConfig:
    """How an SAE is trained."""

    architecture: str = "topk"
    """``topk``, ``batchtopk`` or ``relu``."""
    d_sae: int = 1024
    """Latents (dictionary size)."""
    k: int = 32
    """Active latents per token (TopK), or on average (BatchTopK)."""
    l1_coefficient: float = 3.0
    """L1 weight for ``relu`` (on inputs scaled to E||x|| = sqrt(d))."""
    tokens: int = 2_000_000
    """Training tokens (activations) seen."""
    batch_size: int = 1024
    """Activations per step."""
    lr: float | None = None
    """Adam learning rate; default :meth:`learning_rate`."""
    warmup_steps: int = 50
    """Linear learning-rate warmup."""
    decay_fraction: float = 0.2
    """The learning rate decays linearly to 0 over this final share of the steps."""
    auxk_alpha: float = 1 / 32
    """Weight of the AuxK loss (0 turns it off)."""
    k_aux: int | None = None
    """Dead latents used by AuxK; default d_in // 2."""
    dead_tokens: int = 200_000
    """A latent that has not fired for this many training tokens counts as dead (for AuxK)."""
    normalize: bool = True
    """Scale inputs to E||x|| = sqrt(d) while training (folded into the weights after)."""
    geometric_median_init: bool = True
    """Initialise ``b_dec`` at the geometric median of the first batch (else the mean)."""
    threshold_beta: float = 0.99
    """EMA factor of BatchTopK's inference threshold."""
    sparse: bool = True
    """Use the sparse hand-written gradients for TopK/BatchTopK (False: autograd reference)."""
    seed: int = 0
    """Seed of the initial weights."""

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}")
        if min(self.d_sae, self.k, self.tokens, self.batch_size) < 1:
            raise ValueError("d_sae, k, tokens and batch_size must be positive")
        if self.k > self.d_sae:
            raise ValueError("k must not exceed d_sae")
        if self.lr is not None and self.lr <= 0:
            raise ValueError("lr must be positive")
        if not 0 <= self.decay_fraction < 1 or not 0 < self.threshold_beta < 1:
            raise ValueError("decay_fraction must be in [0, 1) and threshold_beta in (0, 1)")

    @property
    def steps(self) -> int:
        """Optimizer steps."""
        return max(1, self.tokens // self.batch_size)

    def learning_rate(self) -> float:
        """The learning rate used: ``lr``, else ``c / sqrt(d_sae / 2**14)``.

        The width scaling is Gao et al.'s. For TopK and BatchTopK ``c = 2e-3``, ten times their
        constant: Adam moves each weight by about lr, so a unit-norm decoder row turns by about
        ``lr * sqrt(d_in)`` per step; SAELens starts its rows at norm 0.1 and divides the norm
        out, so its default 3e-4 turns a row as 3e-3 turns ours. At 2e-4 our short runs
        reconstructed 3-8x worse than SAELens's (docs/interp.md, Throughput). ReLU + L1 keeps
        ``c = 2e-4`` (not re-measured).
        """
        if self.lr is not None:
            return self.lr
        c = 2e-4 if self.architecture == "relu" else 2e-3
        return c / math.sqrt(self.d_sae / 2**14)


@dataclass(frozen=True)
class TrainedSAE:
    """A trained SAE and how its training went."""

    sae: SparseAutoencoder
    config: SAEConfig
    scale: float
    """Input scale used in training (already folded into the weights)."""
    tokens: int
    """Training tokens seen."""
    seconds: float
    """Wall time of the training loop."""
    curve: tuple[tuple[int, float], ...] = field(default_factory=tuple)
    """(tokens, reconstruction loss per token) every few steps."""
    dead_fraction: float = 0.0
    """Share of latents not fired in the last ``dead_tokens`` training tokens."""

    @property
    def tokens_per_second(self) -> float:
        """Training throughput."""
        return self.tokens / max(self.seconds, 1e-9)


def geometric_median(x: torch.Tensor, iters: int = 100, eps: float = 1e-6) -> torch.Tensor:
    """The point minimising the sum of Euclidean distances to the rows of ``x`` (Weiszfeld)."""
    y = x.mean(0)
    for _ in range(iters):
        w = 1.0 / (x - y).norm(dim=1).clamp_min(eps)
        nxt = (w[:, None] * x).sum(0) / w.sum()
        if (nxt - y).norm() <= eps * max(1.0, float(y.norm())):
            return nxt
        y = nxt
    return y


def init_sae(d_in: int, cfg: SAEConfig, first: torch.Tensor) -> SparseAutoencoder:
    """A fresh SAE: random unit decoder rows, encoder = decoder transpose, ``b_dec`` from data."""
    g = torch.Generator().manual_seed(cfg.seed)
    sae = SparseAutoencoder(d_in, cfg.d_sae, cfg.architecture, cfg.k)
    with torch.no_grad():
        sae.w_dec.copy_(torch.randn(cfg.d_sae, d_in, generator=g))
        sae.normalize_decoder()
        sae.w_enc.copy_(sae.w_dec)
        sample = first[:32_768]
        sae.b_dec.copy_(geometric_median(sample) if cfg.geometric_median_init else sample.mean(0))
    return sae


@dataclass
class _State:
    since_fired: torch.Tensor
    """Tokens since each latent last fired."""
    threshold: float | None = None


def _select(pre: torch.Tensor, cfg: SAEConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rows, cols, values) the activation keeps, values before the ReLU."""
    b, m = pre.shape
    if cfg.architecture == "topk":
        vals, cols = pre.topk(cfg.k, dim=1, sorted=False)
        rows = torch.arange(b).repeat_interleave(cfg.k)
        return rows, cols.reshape(-1), vals.reshape(-1)
    vals, flat = pre.reshape(-1).topk(min(cfg.k * b, b * m), sorted=False)
    return flat // m, flat % m, vals


def _aux_select(
    pre: torch.Tensor, dead: torch.Tensor, k_aux: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    kk = min(k_aux, int(dead.sum()))
    masked = pre.masked_fill(~dead, -math.inf)
    vals, cols = masked.topk(kk, dim=1, sorted=False)
    rows = torch.arange(pre.shape[0]).repeat_interleave(kk)
    return rows, cols.reshape(-1), vals.reshape(-1)


def sparse_step(
    sae: SparseAutoencoder, x: torch.Tensor, cfg: SAEConfig, dead: torch.Tensor
) -> tuple[float, torch.Tensor, float]:
    """Set the gradients of a TopK/BatchTopK loss by hand.

    Returns (mse per token, kept latent indices, smallest positive kept value).
    Loss per token: ||x_hat - x||^2 + auxk_alpha ||e_hat - (x - x_hat)||^2 (Gao et al. 2024).
    Shapes: x (B, d); nnz kept (token, latent) pairs. Decoding is an ``embedding_bag``; the
    weight gradients are sparse (d_sae x B) by dense (B x d) products; ``b_dec``'s gradient
    through the encoder is ``g_b_enc @ W_enc``, so no (nnz, d) gather is needed for it. AuxK
    works densely on the dead latents only (B x n_dead), which are few once training settles.
    """
    we, be, wd, bd = sae.w_enc, sae.b_enc, sae.w_dec, sae.b_dec
    b, m = x.shape[0], we.shape[0]
    with torch.no_grad():
        xc = x - bd
        pre = nn.functional.linear(xc, we, be)
        rows, cols, vals = _select(pre, cfg)
        if cfg.architecture == "batchtopk":
            order = torch.argsort(rows, stable=True)
            rows, cols, vals = rows[order], cols[order], vals[order]
        act = vals.relu()
        offsets = torch.zeros(b, dtype=torch.long)
        offsets[1:] = torch.bincount(rows, minlength=b).cumsum(0)[:-1]
        xhat = nn.functional.embedding_bag(
            cols, wd, offsets, mode="sum", per_sample_weights=act, include_last_offset=False
        )
        xhat += bd
        err = xhat - x
        mse = float((err * err).sum()) / b
        g = err * (2.0 / b)  # dL/dx_hat
        g_act = (wd[cols] * g[rows]).sum(1) * (vals > 0)
        index = torch.stack([cols, rows])
        gwd = torch.sparse.mm(
            torch.sparse_coo_tensor(index, act, (m, b), check_invariants=False), g
        )
        gwe = torch.sparse.mm(
            torch.sparse_coo_tensor(index, g_act, (m, b), check_invariants=False), xc
        )
        gbe = torch.zeros_like(be).index_add_(0, cols, g_act)
        gbd = g.sum(0) - gbe @ we
        if cfg.auxk_alpha > 0 and bool(dead.any()):
            didx = dead.nonzero().squeeze(1)
            kk = min(cfg.k_aux or max(1, x.shape[1] // 2), len(didx))
            va, ia = pre[:, didx].topk(kk, dim=1, sorted=False)
            fa = torch.zeros(b, len(didx)).scatter_(1, ia, va.relu())
            wdd = wd[didx]
            ehat = fa @ wdd
            ga = (ehat + err) * (2.0 * cfg.auxk_alpha / b)  # target is -err = x - x_hat
            gfa = (ga @ wdd.T) * (fa > 0)
            gwd.index_add_(0, didx, fa.T @ ga)
            gwe.index_add_(0, didx, gfa.T @ xc)
            gsum = gfa.sum(0)
            gbe.index_add_(0, didx, gsum)
            gbd -= gsum @ we[didx]
    we.grad, be.grad, wd.grad, bd.grad = gwe, gbe, gwd, gbd
    return mse, cols, _lowest(act)


def _lowest(act: torch.Tensor) -> float:
    pos = act[act > 0]
    return float(pos.min()) if pos.numel() else 0.0


def _dense_codes(pre: torch.Tensor, cfg: SAEConfig) -> torch.Tensor:
    if cfg.architecture == "relu":
        return pre.relu()
    rows, cols, _ = _select(pre.detach(), cfg)
    keep = torch.zeros_like(pre, dtype=torch.bool)
    keep[rows, cols] = True
    return pre.relu() * keep


def dense_step(
    sae: SparseAutoencoder, x: torch.Tensor, cfg: SAEConfig, dead: torch.Tensor
) -> tuple[float, torch.Tensor, float]:
    """The autograd reference for every architecture: dense codes, dense products."""
    sae.zero_grad(set_to_none=True)
    b = x.shape[0]
    pre = sae.pre_acts(x)
    f = _dense_codes(pre, cfg)
    xhat = f @ sae.w_dec + sae.b_dec
    err = xhat - x
    mse = (err * err).sum() / b
    loss = mse
    if cfg.architecture == "relu":
        loss = loss + cfg.l1_coefficient * (f * sae.w_dec.norm(dim=1)).sum() / b
    elif cfg.auxk_alpha > 0 and bool(dead.any()):
        ra, ca, _va = _aux_select(pre.detach(), dead, cfg.k_aux or max(1, x.shape[1] // 2))
        keep = torch.zeros_like(pre, dtype=torch.bool)
        keep[ra, ca] = True
        fa = pre.relu() * keep
        ehat = fa @ sae.w_dec
        resid = (x - xhat).detach()
        loss = loss + cfg.auxk_alpha * ((ehat - resid) ** 2).sum() / b
    loss.backward()
    kept = f.detach()
    return float(mse.detach()), kept.nonzero()[:, 1], _lowest(kept.reshape(-1))


@torch.no_grad()
def _project_decoder_grad(sae: SparseAutoencoder) -> None:
    # Remove each row's gradient component along the row, so the step moves along the
    # sphere (openai's unit_norm_decoder_grad_adjustment_).
    w, g = sae.w_dec, sae.w_dec.grad
    if g is not None:
        g -= (g * w).sum(1, keepdim=True) * w


def train_sae(
    batches: Iterator[torch.Tensor],
    d_in: int,
    cfg: SAEConfig,
    *,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainedSAE:
    """Train an SAE on activation ``batches`` (each (batch, d_in), float32) for ``cfg.tokens``.

    ``batches`` must yield enough rows (cycle a cache with ``epochs=None``). The returned SAE
    works on raw activations (the training scale is folded in).
    """
    first = next(batches).float()
    scale = (math.sqrt(d_in) / float(first.norm(dim=1).mean())) if cfg.normalize else 1.0
    sae = init_sae(d_in, cfg, first * scale)
    lr = cfg.learning_rate()
    opt = torch.optim.Adam(sae.parameters(), lr=lr, betas=(0.9, 0.999))
    state = _State(since_fired=torch.zeros(cfg.d_sae, dtype=torch.long))
    sparse = cfg.sparse and cfg.architecture != "relu"
    step_fn = sparse_step if sparse else dense_step
    curve: list[tuple[int, float]] = []
    decay_start = int(cfg.steps * (1 - cfg.decay_fraction))
    seen = 0
    pending: torch.Tensor | None = first
    start = time.perf_counter()
    for step in range(cfg.steps):
        x = pending if pending is not None else next(batches, None)
        pending = None
        if x is None:
            break
        x = x.float() * scale
        factor = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
        if step >= decay_start and cfg.decay_fraction > 0:
            factor *= max(0.0, (cfg.steps - step) / (cfg.steps - decay_start))
        for group in opt.param_groups:
            group["lr"] = lr * factor
        dead = state.since_fired > cfg.dead_tokens
        mse, cols, low = step_fn(sae, x, cfg, dead)
        _project_decoder_grad(sae)
        opt.step()
        sae.normalize_decoder()
        state.since_fired += x.shape[0]
        state.since_fired[cols] = 0
        seen += x.shape[0]
        if cfg.architecture == "batchtopk" and step >= cfg.steps // 2:
            # The inference threshold tracks the smallest activation BatchTopK keeps, over
            # the second half of training (early values come from a different dictionary).
            state.threshold = (
                low
                if state.threshold is None
                else cfg.threshold_beta * state.threshold + (1 - cfg.threshold_beta) * low
            )
        if step % 10 == 0 or step == cfg.steps - 1:
            curve.append((seen, mse))
            if on_step is not None:
                on_step(seen, mse)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        if state.threshold is not None:
            sae.threshold.fill_(state.threshold)
        sae.fold_input_scale(scale)
    dead_frac = float((state.since_fired > cfg.dead_tokens).float().mean())
    sae.metadata.update(
        {
            "training_tokens": seen,
            "input_scale_folded": scale,
            "dead_window_tokens": cfg.dead_tokens,
            "train_config": {k: v for k, v in asdict(cfg).items()},
        }
    )
    return TrainedSAE(sae, cfg, scale, seen, seconds, tuple(curve), dead_frac)
