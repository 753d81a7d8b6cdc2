"""Token streams and batches: packed (the fast path) and padded per document (the reference)."""

from __future__ import annotations

from pathlib import Path

import torch

from safescale.lab._corpus import read_documents
from safescale.lab._tokenizer import load_tokenizer


def encode_documents(text_file: str | Path, tokenizer_dir: str | Path) -> list[list[int]]:
    """Token ids of each document of a ``train.txt`` / ``val.txt`` file, each ending in EOS."""
    tok = load_tokenizer(tokenizer_dir)
    eos = tok.eos_token_id
    assert eos is not None  # our tokenizers always define it
    return [[*ids, eos] for ids in tok(read_documents(text_file))["input_ids"]]


def pack(docs: list[list[int]], seq_len: int) -> torch.Tensor:
    """Concatenate documents and cut the stream into ``(n_blocks, seq_len + 1)`` blocks.

    Packing wastes no compute on padding (Raffel et al. 2020, T5); attention may cross a
    document boundary, which the EOS token marks, as in GPT-2 training.
    """
    stream = torch.tensor([t for d in docs for t in d], dtype=torch.long)
    n = len(stream) // (seq_len + 1)
    if n == 0:
        raise ValueError(
            f"the text holds {len(stream)} tokens, fewer than one block of {seq_len + 1}"
        )
    return stream[: n * (seq_len + 1)].view(n, seq_len + 1)


def block_indices(n_blocks: int, start: int, count: int, seed: int) -> torch.Tensor:
    """Indices of blocks ``start .. start+count`` of an endless sequence of shuffled epochs.

    Each epoch is a permutation drawn from ``(seed, epoch)``, so any step's batch can be
    recomputed from the step number alone; that makes resuming after a kill exact.
    """
    out = []
    for i in range(start, start + count):
        epoch, pos = divmod(i, n_blocks)
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        out.append(int(torch.randperm(n_blocks, generator=g)[pos]))
    return torch.tensor(out, dtype=torch.long)


class EpochOrder:
    """Caches one epoch's permutation at a time for :func:`block_indices`-equal lookups."""

    def __init__(self, n_blocks: int, seed: int) -> None:
        self.n_blocks, self.seed = n_blocks, seed
        self._epoch = -1
        self._perm = torch.empty(0, dtype=torch.long)

    def take(self, start: int, count: int) -> torch.Tensor:
        """Same result as ``block_indices(n_blocks, start, count, seed)``, faster."""
        out = torch.empty(count, dtype=torch.long)
        for j, i in enumerate(range(start, start + count)):
            epoch, pos = divmod(i, self.n_blocks)
            if epoch != self._epoch:
                g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                self._perm, self._epoch = torch.randperm(self.n_blocks, generator=g), epoch
            out[j] = self._perm[pos]
        return out


def pad_documents(
    docs: list[list[int]], seq_len: int, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's batches: one document per row, truncated or padded to ``seq_len``.

    Returns ``(input_ids, labels)``, both ``(n_docs, seq_len)``; padded label positions are
    -100 so that the Hugging Face loss ignores them.
    """
    ids = torch.full((len(docs), seq_len), pad_id, dtype=torch.long)
    labels = torch.full((len(docs), seq_len), -100, dtype=torch.long)
    for i, d in enumerate(docs):
        d = d[:seq_len]
        ids[i, : len(d)] = torch.tensor(d)
        labels[i, : len(d)] = torch.tensor(d)
    return ids, labels
