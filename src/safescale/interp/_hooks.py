"""Plain PyTorch forward hooks on any Hugging Face causal LM: where the sites are, how to read
and replace them.

A *hookpoint* is a layer index and a site: ``resid_post`` (the decoder block's output, the
residual stream after layer ``i``), ``mlp_out`` (the feed-forward block's output) or
``attn_out`` (the attention block's output, before it is added to the residual stream). Layers
are zero-indexed as in ``model.model.layers[i]``; ``resid_post`` of layer ``i`` equals
``hidden_states[i + 1]`` of ``output_hidden_states`` except for the last layer, where Hugging
Face applies the final norm first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from safescale._errors import Problem, UserError

SITES = ("resid_post", "mlp_out", "attn_out")
"""The sites a hookpoint can name."""

_MLP_NAMES = ("mlp", "feed_forward", "ffn", "fc")
_ATTN_NAMES = ("self_attn", "attn", "attention", "self_attention")


@dataclass(frozen=True)
class Hookpoint:
    """A place in the model to read or replace: ``layer`` (zero-based) and ``site``."""

    layer: int
    """Decoder block index, zero-based."""
    site: str
    """``resid_post``, ``mlp_out`` or ``attn_out``."""

    def __post_init__(self) -> None:
        if self.site not in SITES:
            raise UserError(
                Problem(
                    f"unknown site {self.site!r}; choose one of {', '.join(SITES)}", field="site"
                )
            )
        if self.layer < 0:
            raise UserError(Problem("layer must be 0 or more", field="layer"))

    @property
    def name(self) -> str:
        """The hookpoint as text, ``layers.2.resid_post``."""
        return f"layers.{self.layer}.{self.site}"

    @classmethod
    def parse(cls, text: str) -> Hookpoint:
        """Read ``layers.2.resid_post`` (or ``2.resid_post``)."""
        m = re.fullmatch(r"(?:layers\.)?(\d+)\.(\w+)", text.strip())
        if not m:
            raise UserError(
                Problem(f"{text!r} is not a hookpoint; write layers.N.SITE", field="hookpoint")
            )
        return cls(int(m.group(1)), m.group(2))


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder blocks of a causal LM: the ModuleList whose length is the layer count.

    Works for Llama/Mistral/Qwen (``model.layers``), GPT-2 (``transformer.h``), GPT-NeoX
    (``gpt_neox.layers``) and OPT (``model.decoder.layers``) without naming them.
    """
    n = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    best: nn.ModuleList | None = None
    for _, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) > 0 and (n is None or len(mod) == n):
            best = mod
            break
    if best is None:
        raise UserError(Problem("cannot find the decoder layers of this model", field="model"))
    return best


def site_module(model: nn.Module, hp: Hookpoint) -> nn.Module:
    """The module whose output is ``hp``."""
    layers = decoder_layers(model)
    if hp.layer >= len(layers):
        raise UserError(
            Problem(
                f"layer {hp.layer} does not exist; the model has {len(layers)} layers (0-based)",
                field="layer",
            )
        )
    block = layers[hp.layer]
    if hp.site == "resid_post":
        return block
    names = _MLP_NAMES if hp.site == "mlp_out" else _ATTN_NAMES
    for name in names:
        child = getattr(block, name, None)
        if isinstance(child, nn.Module):
            return child
    raise UserError(Problem(f"cannot find the {hp.site} module of layer {hp.layer}", field="site"))


def _first(output: Any) -> torch.Tensor:
    # Decoder blocks return a tuple in transformers < 5, a tensor after; attention returns
    # (output, weights). The activation is always the first element.
    return output[0] if isinstance(output, tuple) else output


def _with_first(output: Any, value: torch.Tensor) -> Any:
    return (value, *output[1:]) if isinstance(output, tuple) else value


class StopForward(Exception):
    """Raised by a capture hook once the deepest hookpoint is read, to skip later layers."""


@contextmanager
def capture(
    model: nn.Module, hps: list[Hookpoint], *, stop: bool = True
) -> Iterator[dict[Hookpoint, torch.Tensor]]:
    """Read ``hps`` during a forward pass: ``with capture(m, hps) as acts: m(ids)``.

    ``acts[hp]`` is the (batch, seq, d) activation. With ``stop`` the forward pass is cut
    after the deepest hookpoint (catch :class:`StopForward`; :func:`run_to` does it).
    """
    acts: dict[Hookpoint, torch.Tensor] = {}
    deepest = max(hp.layer for hp in hps)
    handles = []
    for hp in hps:

        def hook(_m: nn.Module, _i: Any, out: Any, hp: Hookpoint = hp) -> None:
            acts[hp] = _first(out).detach()
            if stop and hp.layer == deepest and len(acts) == len(hps):
                raise StopForward

        handles.append(site_module(model, hp).register_forward_hook(hook))
    try:
        yield acts
    finally:
        for h in handles:
            h.remove()


def run_to(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor | None = None) -> None:
    """Run ``model`` on ``ids``, treating :class:`StopForward` as the normal end."""
    with suppress(StopForward):
        model(input_ids=ids, attention_mask=mask, use_cache=False)


@contextmanager
def splice(
    model: nn.Module, hp: Hookpoint, fn: Callable[[torch.Tensor], torch.Tensor]
) -> Iterator[None]:
    """Replace the activation at ``hp`` by ``fn(activation)`` for the forward passes inside."""

    def hook(_m: nn.Module, _i: Any, out: Any) -> Any:
        return _with_first(out, fn(_first(out)))

    handle = site_module(model, hp).register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
