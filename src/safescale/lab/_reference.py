"""The plain reference training loop that the fast loop is measured and checked against.

fp32, one document per row padded to the sequence length (no packing), the Hugging Face model's
own forward with labels, and torch's default AdamW: what a first training script looks like.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from transformers import LlamaForCausalLM

from safescale.lab._data import pad_documents


@dataclass(frozen=True)
class ReferenceRun:
    """Throughput of a reference run."""

    steps: int
    tokens: int
    """Real (non-padding) tokens trained on."""
    seconds: float
    """Time inside the steps (data preparation excluded, as for the fast loop)."""
    final_loss: float

    @property
    def tokens_per_second(self) -> float:
        """Real tokens per second."""
        return self.tokens / max(self.seconds, 1e-9)


def reference_step(
    model: LlamaForCausalLM, opt: torch.optim.Optimizer, ids: torch.Tensor, labels: torch.Tensor
) -> float:
    """One plain step: forward with labels, backward, clip, AdamW; returns the loss."""
    mask = (labels != -100).long()
    loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(loss.detach())


def reference_train(
    model: LlamaForCausalLM,
    docs: list[list[int]],
    *,
    seq_len: int,
    batch_size: int,
    steps: int,
    lr: float,
    seed: int = 0,
) -> ReferenceRun:
    """Train ``model`` for ``steps`` plain steps on documents drawn at random from ``docs``."""
    ids_all, labels_all = pad_documents(docs, seq_len, pad_id=0)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    g = torch.Generator().manual_seed(seed)
    model.train()
    tokens, seconds, loss = 0, 0.0, float("nan")
    for _ in range(steps):
        idx = torch.randint(len(docs), (batch_size,), generator=g)
        ids, labels = ids_all[idx], labels_all[idx]
        t0 = time.perf_counter()
        loss = reference_step(model, opt, ids, labels)
        seconds += time.perf_counter() - t0
        tokens += int((labels != -100).sum())
    return ReferenceRun(steps, tokens, seconds, loss)
