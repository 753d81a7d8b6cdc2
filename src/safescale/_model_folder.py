"""A local Hugging Face model folder, checked before transformers reads it: a configuration
that fits its weights, and a load whose every failure is one line naming the folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from safescale._errors import Problem, UserError
from safescale._input import quote

MAX_MODEL_CONFIG_BYTES = 1 << 20
"""A model folder's ``config.json`` may be at most this large."""
_WIDTH_KEYS = ("hidden_size", "n_embd", "d_model")
_DEPTH_KEYS = ("num_hidden_layers", "n_layer", "num_layers")
_FFN_KEYS = ("intermediate_size", "n_inner", "ffn_dim")


def check_model_config(folder: Path) -> None:
    """Refuse a model folder whose ``config.json`` is not a bounded JSON object, or describes a
    model far larger than the weights beside it.

    A hostile or mistaken configuration (two million layers, a hidden size of a million) would
    otherwise allocate terabytes, or spend minutes building empty layers, before a single
    weight is read. The estimate (embeddings plus attention and feed-forward blocks) may be
    eight times the weights' bytes, which leaves room for 4-bit quantized checkpoints.
    """
    from safescale._input import read_json_limited, size_text
    from safescale._io import WEIGHT_SUFFIXES

    src = folder / "config.json"
    cfg = read_json_limited(src, MAX_MODEL_CONFIG_BYTES, what="model config")
    if not isinstance(cfg, dict):
        raise UserError(Problem("a model config is a JSON object", source=str(src)))

    def size(keys: tuple[str, ...], default: int) -> int:
        for key in keys:
            value = cfg.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1 << 24:
                raise UserError(
                    Problem(
                        f"{quote(value)} is not a size from 1 to 16,777,216; fix the config",
                        source=str(src),
                        field=key,
                    )
                )
            return value
        return default

    width, depth = size(_WIDTH_KEYS, 1), size(_DEPTH_KEYS, 1)
    vocab, ffn = size(("vocab_size",), 1), size(_FFN_KEYS, 4 * width)
    params = vocab * width + depth * (4 * width * width + 3 * width * ffn)
    weights = sum(
        p.stat().st_size for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES
    )
    if params > 8 * weights + 10**7:
        raise UserError(
            Problem(
                f"config.json describes about {params:,} parameters but the weights beside it "
                f"hold {size_text(weights)}; is this the config of these weights?",
                source=str(src),
            )
        )


def context_limit(model: Any) -> int | None:
    """The most positions the model's config declares (``max_position_embeddings``, or
    ``n_positions`` in GPT-2-style configs), or None if it declares none."""
    cfg = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions"):
        value = getattr(cfg, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def load_pretrained(load: Callable[..., Any], folder: Path, what: str = "model", **kw: Any) -> Any:
    """``load(folder, **kw)`` (a ``from_pretrained``), any failure of it as one line naming
    the folder: a truncated weights file, weights of another shape, an unknown architecture."""
    try:
        return load(str(folder), **kw)
    except UserError:
        raise
    except Exception as exc:  # transformers raises OSError, ValueError, RuntimeError, ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(
            Problem(
                f"cannot load the {what} ({first[:200]}); is this a Hugging Face model folder?",
                source=str(folder),
            )
        ) from None


def check_device(name: str, field: str = "device") -> None:
    """Refuse a torch device this machine does not have (``cuda:99``, ``cuda`` without a GPU,
    ``tpu``) before anything is loaded, naming ``field``."""
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserError(
            Problem(
                f"{quote(name)} is not a torch device; use cpu, cuda, cuda:N or mps", field=field
            )
        ) from None
    if device.type == "cpu":
        return
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) < count:
            return
        have = f"{count} CUDA device(s)" if count else "no CUDA device"
    elif device.type == "mps" and torch.backends.mps.is_available():
        return
    else:
        have = f"no {device.type} device"
    raise UserError(Problem(f"this machine has {have}; use cpu or one it has", field=field))
