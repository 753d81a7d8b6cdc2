"""Llama-architecture model sizes, from about 10k to about 10M non-embedding parameters."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import LlamaConfig, LlamaForCausalLM


@dataclass(frozen=True, kw_only=True)
class ModelSize:
    """The shape of one Llama model (Touvron et al. 2023: RMSNorm, SwiGLU, rotary positions)."""

    name: str
    """Short label, used in folder names."""
    d_model: int
    """Width of the residual stream."""
    n_layers: int
    """Transformer blocks."""
    n_heads: int
    """Attention heads (no grouped-query attention at this scale)."""
    d_ff: int
    """Width of the SwiGLU feed-forward layer (about 8/3 of ``d_model``)."""

    def __post_init__(self) -> None:
        if min(self.d_model, self.n_layers, self.n_heads, self.d_ff) < 1:
            raise ValueError(f"{self.name}: every dimension must be positive")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(f"{self.name}: d_model / n_heads must be an even integer (rotary)")

    def non_embedding_params(self) -> int:
        """N of Kaplan et al. 2020: parameters outside the (tied) token embedding."""
        d, f = self.d_model, self.d_ff
        per_layer = 4 * d * d + 3 * d * f + 2 * d  # q,k,v,o; gate,up,down; two RMSNorms
        return self.n_layers * per_layer + d  # final RMSNorm

    def llama_config(self, vocab_size: int, max_len: int) -> LlamaConfig:
        """The transformers configuration for this size."""
        return LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=self.d_model,
            intermediate_size=self.d_ff,
            num_hidden_layers=self.n_layers,
            num_attention_heads=self.n_heads,
            num_key_value_heads=self.n_heads,
            max_position_embeddings=max_len,
            # Tied input/output embeddings: at this scale an untied head would be most of
            # the parameters (Press & Wolf 2017).
            tie_word_embeddings=True,
            rms_norm_eps=1e-5,
            bos_token_id=0,
            eos_token_id=0,
            pad_token_id=0,
        )


def _size(name: str, d: int, layers: int, heads: int) -> ModelSize:
    return ModelSize(
        name=name, d_model=d, n_layers=layers, n_heads=heads, d_ff=8 * ((8 * d // 3 + 7) // 8)
    )


SIZES: dict[str, ModelSize] = {
    s.name: s
    for s in (
        _size("s0", 24, 2, 2),  # ~14k
        _size("s1", 48, 2, 2),  # ~56k
        _size("s2", 64, 3, 2),  # ~150k
        _size("s3", 96, 3, 2),  # ~333k
        _size("s4", 160, 4, 4),  # ~1.2M
        _size("s5", 256, 6, 4),  # ~4.7M
        _size("s6", 384, 6, 6),  # ~10.6M
    )
}
"""The named sizes the ladders use (non-embedding parameters in the comments)."""


def build_model(size: ModelSize, vocab_size: int, max_len: int, seed: int) -> LlamaForCausalLM:
    """A freshly initialised model; the initialisation depends only on ``seed``.

    The weights follow transformers' Llama initialisation (normal, std ``initializer_range``,
    for every matrix and the embedding; RMSNorm gains at 1), drawn from a generator seeded
    with ``seed`` rather than from torch's global generator.
    """
    config = size.llama_config(vocab_size, max_len)
    # The constructor draws a throw-away initialisation from the global generator; fork it so
    # the caller's random state is left as it was.
    with torch.random.fork_rng(devices=[]):
        model = LlamaForCausalLM(config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.fill_(1.0)
            else:
                p.normal_(0.0, config.initializer_range, generator=g)
    return model


def count_non_embedding(model: torch.nn.Module) -> int:
    """Count the parameters outside embeddings in a built model (checks the formula)."""
    return sum(
        p.numel()
        for n, p in model.named_parameters()
        if "embed_tokens" not in n and "lm_head" not in n
    )
