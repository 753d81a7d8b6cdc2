"""A byte-level BPE tokenizer, trained with the ``tokenizers`` library, saved for Hugging Face."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

EOS = "<|endoftext|>"
"""End-of-document token; also used for padding (as GPT-2 does)."""


def train_tokenizer(
    files: Sequence[str | Path], out_dir: str | Path, *, vocab_size: int = 2048
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``files`` and save it as a standard Hugging Face tokenizer.

    Digits are split one per token before BPE so that numbers have a consistent form and
    arithmetic is learnable (as in LLaMA, Touvron et al. 2023).
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train([str(f) for f in files], trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, bos_token=EOS, pad_token=EOS
    )
    fast.save_pretrained(str(out_dir))
    return fast


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """Load a tokenizer folder (a corpus's ``tokenizer/`` or a model folder)."""
    from safescale._model_folder import load_pretrained

    tok = load_pretrained(AutoTokenizer.from_pretrained, Path(path), "tokenizer")
    if not isinstance(tok, PreTrainedTokenizerFast):  # pragma: no cover - we only write fast ones
        raise TypeError(f"{path}: expected a fast tokenizer")
    return tok
