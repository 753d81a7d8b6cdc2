"""Sparse autoencoders: the model, and its files in SAELens's format.

Notation (Bricken et al. 2023; Gao et al. 2024): ``f = act(W_enc (x - b_dec) + b_enc)``,
``x_hat = W_dec f + b_dec``. Architectures:

* ``topk``: keep each token's k largest pre-activations, ReLU'd (Gao et al. 2024);
* ``batchtopk``: keep the ``k x batch`` largest over the whole batch while training, so only the
  mean L0 is k (Bussmann et al. 2024); at inference a single threshold learned in training
  replaces the batch, so it is saved as a JumpReLU SAE (as SAELens and dictionary_learning do);
* ``relu``: ReLU with an L1 penalty (Bricken et al. 2023).

Internally the encoder is stored (d_sae, d_in), one row per latent, so that the sparse training
path gathers rows; the files use SAELens's layout, ``W_enc`` (d_in, d_sae) and ``W_dec``
(d_sae, d_in), in ``cfg.json`` + ``sae_weights.safetensors``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from safescale._errors import Problem, UserError
from safescale._input import read_json_limited, regular_file_size
from safescale._io import atomic_write_text, file_sha256, new_file_mode, temp_beside

ARCHITECTURES = ("topk", "batchtopk", "relu")
"""Architectures :func:`~safescale.interp.train_sae` trains."""
CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
SAELENS_FORMAT_VERSION = "6.0.0"
"""The SAELens on-disk format the files follow (v6: ``metadata`` holds the provenance)."""
_TO_SAELENS = {"topk": "topk", "batchtopk": "jumprelu", "relu": "standard"}
WEIGHTS_SHA_KEY = "safescale_weights_sha256"
"""Key in ``cfg.json``'s ``metadata``: the sha256 of the weights file saved with it."""


class SparseAutoencoder(nn.Module):
    """A sparse autoencoder over ``d_in``-wide activations with ``d_sae`` latents."""

    threshold: torch.Tensor

    def __init__(self, d_in: int, d_sae: int, architecture: str = "topk", k: int = 32) -> None:
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise UserError(
                Problem(
                    f"unknown architecture {architecture!r}; choose {', '.join(ARCHITECTURES)}",
                    field="architecture",
                )
            )
        self.d_in, self.d_sae, self.architecture, self.k = d_in, d_sae, architecture, k
        self.w_enc = nn.Parameter(torch.zeros(d_sae, d_in))
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.w_dec = nn.Parameter(torch.zeros(d_sae, d_in))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        # BatchTopK's inference threshold (Bussmann et al. 2024); 0 for the others.
        self.register_buffer("threshold", torch.zeros(d_sae))
        self.metadata: dict[str, Any] = {}

    @property
    def W_enc(self) -> torch.Tensor:
        """Encoder (d_in, d_sae), SAELens's layout."""
        return self.w_enc.T

    @property
    def W_dec(self) -> torch.Tensor:
        """Decoder (d_sae, d_in)."""
        return self.w_dec

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-activations ``W_enc (x - b_dec) + b_enc``, shape (..., d_sae)."""
        return nn.functional.linear(x - self.b_dec, self.w_enc, self.b_enc)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent activations (..., d_sae), dense, as used at inference."""
        pre = self.pre_acts(x)
        if self.architecture == "topk":
            vals, idx = pre.topk(min(self.k, self.d_sae), dim=-1)
            return torch.zeros_like(pre).scatter_(-1, idx, vals.relu())
        if self.architecture == "batchtopk":
            return pre * (pre > self.threshold)
        return pre.relu()

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``W_dec f + b_dec``."""
        return f @ self.w_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction of ``x``."""
        return self.decode(self.encode(x))

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Rescale every decoder row to unit norm (the unit-norm decoder constraint)."""
        self.w_dec.div_(self.w_dec.norm(dim=1, keepdim=True).clamp_min(1e-8))

    @torch.no_grad()
    def fold_input_scale(self, scale: float) -> None:
        """Make an SAE trained on ``scale * x`` work on raw ``x`` (same latents)."""
        self.w_enc.mul_(scale)
        self.w_dec.div_(scale)
        self.b_dec.div_(scale)


def save_sae(sae: SparseAutoencoder, folder: str | Path) -> Path:
    """Write ``cfg.json`` and ``sae_weights.safetensors`` in SAELens's v6 format.

    ``sae.metadata`` (hookpoint, model, weights hash, training facts) goes under
    ``metadata``, where SAELens keeps provenance; the architecture we trained is under
    ``metadata.safescale_architecture``.

    The two files are kept a pair, also when an existing SAE is overwritten and the writing is
    killed half way. The new weights go to a temporary file first; then ``cfg.json`` is
    replaced, holding the sha256 of those weights (``metadata.safescale_weights_sha256``);
    then the weights file is replaced. Each replacement is an atomic rename. Killed before the
    config is replaced, the folder holds the old SAE whole; after the weights are replaced,
    the new one whole; in between, the new config names weights that are not there, and
    :func:`load_sae` refuses the folder in one line rather than pair new weights with an old
    config (or the reverse). The config goes first so that this holds even when the SAE being
    overwritten was written without a hash.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {
        "W_enc": sae.W_enc.detach().contiguous().clone(),
        "b_enc": sae.b_enc.detach().clone(),
        "W_dec": sae.W_dec.detach().contiguous().clone(),
        "b_dec": sae.b_dec.detach().clone(),
    }
    cfg: dict[str, Any] = {
        "architecture": _TO_SAELENS[sae.architecture],
        "d_in": sae.d_in,
        "d_sae": sae.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "sae_lens_version": SAELENS_FORMAT_VERSION,
            "sae_lens_training_version": SAELENS_FORMAT_VERSION,
            "hook_name": sae.metadata.get("hookpoint"),
            "model_name": sae.metadata.get("model"),
            **sae.metadata,
            "safescale_architecture": sae.architecture,
        },
    }
    if sae.architecture == "topk":
        cfg["k"] = sae.k
        cfg["rescale_acts_by_decoder_norm"] = False
    if sae.architecture == "batchtopk":
        tensors["threshold"] = sae.threshold.detach().clone()
    fd, name = temp_beside(out / WEIGHTS_FILE)  # locked while open: not swept as abandoned
    tmp = Path(name)
    try:
        os.fchmod(fd, new_file_mode())
        save_file(tensors, str(tmp))
        os.fsync(fd)
        cfg["metadata"][WEIGHTS_SHA_KEY] = file_sha256(tmp)
        atomic_write_text(out / CFG_FILE, json.dumps(cfg, indent=2, default=str) + "\n")
        os.replace(tmp, out / WEIGHTS_FILE)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)
    return out


def load_sae(folder: str | Path) -> SparseAutoencoder:
    """Read an SAE from a SAELens-format folder (ours, or a topk/jumprelu/standard SAELens one)."""
    path = Path(folder)
    cfg_path, w_path = path / CFG_FILE, path / WEIGHTS_FILE
    if not cfg_path.is_file() or not w_path.is_file():
        raise UserError(
            Problem(f"not an SAE folder (needs {CFG_FILE} and {WEIGHTS_FILE})", source=str(path))
        )
    cfg = read_json_limited(cfg_path, MAX_CFG_BYTES, what="SAE config")
    if not isinstance(cfg, dict) or not isinstance(cfg.get("metadata") or {}, dict):
        raise UserError(
            Problem("an SAE config is a JSON object (metadata: an object)", source=str(cfg_path))
        )
    meta = dict(cfg.get("metadata") or {})
    named = cfg.get("architecture", "")
    arch = meta.get("safescale_architecture") or {v: k for k, v in _TO_SAELENS.items()}.get(
        named if isinstance(named, str) else ""
    )
    if arch is None:
        raise UserError(
            Problem(
                f"unsupported SAE architecture {cfg.get('architecture')!r}; "
                "topk, jumprelu and standard are read",
                source=str(cfg_path),
                field="architecture",
            )
        )
    w = _read_weights(w_path)
    _check_pair(meta, cfg_path, w_path)
    d_in, d_sae = w["W_enc"].shape
    k = cfg.get("k", 0) or 0
    if arch == "topk" and (isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= d_sae):
        raise UserError(
            Problem(
                f"k must be a whole number from 1 to d_sae={d_sae}", source=str(cfg_path), field="k"
            )
        )
    sae = SparseAutoencoder(int(d_in), int(d_sae), arch, int(k))
    with torch.no_grad():
        sae.w_enc.copy_(w["W_enc"].T.float())
        sae.b_enc.copy_(w["b_enc"].float())
        sae.w_dec.copy_(w["W_dec"].float())
        sae.b_dec.copy_(w["b_dec"].float())
        if "threshold" in w:
            sae.threshold.copy_(w["threshold"].float())
    sae.metadata = {
        k: v
        for k, v in meta.items()
        if k
        not in (
            "sae_lens_version",
            "sae_lens_training_version",
            "safescale_architecture",
            WEIGHTS_SHA_KEY,
        )
    }
    return sae


def _check_pair(meta: dict[str, Any], cfg_path: Path, w_path: Path) -> None:
    """Refuse weights other than the ones the config was saved with (see :func:`save_sae`).
    A config without the hash (an older safescale's, or SAELens's) is not checked."""
    want = meta.get(WEIGHTS_SHA_KEY)
    if want is None:
        return
    if not isinstance(want, str) or want != file_sha256(w_path):
        raise UserError(
            Problem(
                f"{WEIGHTS_FILE} is not the weights file this config was saved with (a save "
                "interrupted between its two files?); save or train the SAE again",
                source=str(cfg_path),
                field=f"metadata.{WEIGHTS_SHA_KEY}",
            )
        )


MAX_CFG_BYTES = 1 << 20
"""An SAE's ``cfg.json`` may be at most this large."""
MAX_SAE_ELEMENTS = 1 << 31
"""Most elements in one SAE weight matrix (8 GiB of float32)."""


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of an SAE weights file, checked: safetensors (never a pickle), the four
    matrices and vectors with shapes that fit together, every value finite."""
    src = str(path)
    regular_file_size(path, what="SAE weights file")

    def bad(message: str) -> UserError:
        return UserError(
            Problem(f"{message}; is this an SAE saved by safescale or SAELens?", source=src)
        )

    try:
        with safe_open(src, framework="pt") as fh:
            keys = set(fh.keys())
            missing = [k for k in ("W_enc", "b_enc", "W_dec", "b_dec") if k not in keys]
            if missing:
                raise bad(f"the weights lack {', '.join(missing)}")
            shape = fh.get_slice("W_enc").get_shape()
            if len(shape) != 2 or shape[0] < 1 or shape[1] < 1:
                raise bad(f"W_enc has shape {shape}, not (d_in, d_sae)")
            if shape[0] * shape[1] > MAX_SAE_ELEMENTS:
                raise bad(f"W_enc has {shape[0] * shape[1]:,} elements, over {MAX_SAE_ELEMENTS:,}")
            w = {
                k: fh.get_tensor(k)
                for k in keys & {"W_enc", "b_enc", "W_dec", "b_dec", "threshold"}
            }
    except UserError:
        raise
    except Exception:  # truncated, or not safetensors at all
        raise bad("not a readable safetensors file") from None
    d_in, d_sae = w["W_enc"].shape
    want = {"b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,), "threshold": (d_sae,)}
    for name, dims in want.items():
        if name in w and tuple(w[name].shape) != dims:
            raise bad(
                f"{name} has shape {tuple(w[name].shape)}; W_enc {(d_in, d_sae)} needs {dims}"
            )
    for name, t in w.items():
        if not t.is_floating_point() or not bool(torch.isfinite(t).all()):
            raise bad(f"{name} holds values that are not finite floats")
    return w
