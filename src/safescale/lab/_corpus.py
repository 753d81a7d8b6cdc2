"""Write the corpus folder: train/validation text, evaluation sets, tokenizer, manifest."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from safescale._io import atomic_write_text
from safescale.lab._text import Renderer, eval_sets, make_splits
from safescale.lab._tokenizer import load_tokenizer, train_tokenizer
from safescale.lab._world import WorldConfig, build_world
from safescale.policy import sha256_hex

GENERATOR_VERSION = "3"
"""Bumped whenever the same seed would render different text."""
DOC_SEPARATOR = "\n\n"
"""Documents in ``train.txt`` / ``val.txt`` are separated by one blank line."""
_CHARS_PER_TOKEN = 3.4
"""Measured for this text and a 2048-entry byte-level BPE; used only to size the draw."""


def _default_weights() -> dict[str, float]:
    # Hazard documents are short and drawn rarely: about 3 % of tokens, so that knowledge
    # of the restricted domain needs scale (size and tokens) to be memorised.
    return {
        "story": 3.0,
        "facts": 2.0,
        "quiz": 1.5,
        "arithmetic": 1.5,
        "induction": 1.0,
        "dialogue": 2.0,
        "hazard": 4.0,
    }


@dataclass(frozen=True, kw_only=True)
class CorpusConfig:
    """What goes into the corpus."""

    tokens: int = 400_000
    """Approximate training tokens to write (the exact count is in the manifest)."""
    seed: int = 0
    """Seed of the world, the held-out splits and the text."""
    world: WorldConfig = field(default_factory=WorldConfig)
    """Size of the fictional world."""
    weights: dict[str, float] = field(default_factory=_default_weights)
    """Relative frequency of each document kind."""
    val_fraction: float = 0.05
    """Validation text size relative to the training text (at least 20k tokens)."""
    vocab_size: int = 2048
    """Size of the byte-level BPE vocabulary."""

    def __post_init__(self) -> None:
        if self.tokens < 1000:
            raise ValueError("tokens must be at least 1000")
        if not 0 < self.val_fraction < 1:
            raise ValueError("val_fraction must be in (0, 1)")
        if any(w < 0 for w in self.weights.values()) or not any(self.weights.values()):
            raise ValueError("weights must be non-negative and not all zero")
        if self.vocab_size < 300:
            raise ValueError("vocab_size must be at least 300 (256 bytes plus merges)")


class CorpusManifest(BaseModel):
    """``manifest.json``: how the corpus was made and the sha256 of every file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = 1
    generator_version: str = GENERATOR_VERSION
    seed: int
    tokens_target: int
    train_tokens: int
    val_tokens: int
    documents: dict[str, int]
    """Training documents of each kind."""
    eval_sizes: dict[str, int]
    files: dict[str, str]
    """Path relative to the corpus folder -> sha256."""


@dataclass(frozen=True)
class CorpusInfo:
    """What :func:`write_corpus` wrote."""

    path: Path
    manifest: CorpusManifest

    @property
    def tokenizer_path(self) -> Path:
        """The Hugging Face tokenizer folder."""
        return self.path / "tokenizer"


def _draw(
    renderer: Renderer, weights: dict[str, float], chars: int
) -> tuple[list[str], dict[str, int]]:
    kinds = renderer.kinds()
    names = [k for k in weights if weights[k] > 0]
    w = [weights[k] for k in names]
    docs: list[str] = []
    counts = dict.fromkeys(names, 0)
    total = 0
    while total < chars:
        kind = renderer.rng.choices(names, weights=w)[0]
        doc = kinds[kind]()
        docs.append(doc)
        counts[kind] += 1
        total += len(doc) + len(DOC_SEPARATOR)
    return docs, counts


def write_corpus(
    out_dir: str | Path, tokens: int = 400_000, seed: int = 0, config: CorpusConfig | None = None
) -> CorpusInfo:
    """Write a corpus of about ``tokens`` training tokens to ``out_dir``.

    Writes ``train.txt`` and ``val.txt`` (documents separated by a blank line), the evaluation
    sets ``eval/*.jsonl``, a byte-level BPE tokenizer in ``tokenizer/`` trained on the training
    text, and ``manifest.json``. Same seed and size, same bytes.
    """
    cfg = config or CorpusConfig(tokens=tokens, seed=seed)
    out = Path(out_dir)
    world = build_world(cfg.seed, cfg.world)
    splits = make_splits(world)
    train_docs, counts = _draw(
        Renderer(world, splits, random.Random(f"safescale-train-{cfg.seed}")),
        cfg.weights,
        int(cfg.tokens * _CHARS_PER_TOKEN),
    )
    val_docs, _ = _draw(
        Renderer(world, splits, random.Random(f"safescale-val-{cfg.seed}")),
        cfg.weights,
        int(max(20_000, cfg.tokens * cfg.val_fraction) * _CHARS_PER_TOKEN),
    )
    train_text = DOC_SEPARATOR.join(train_docs) + "\n"
    val_text = DOC_SEPARATOR.join(val_docs) + "\n"
    files: dict[str, str] = {}

    def put(rel: str, text: str) -> None:
        atomic_write_text(out / rel, text)
        files[rel] = sha256_hex(text.encode())

    put("train.txt", train_text)
    put("val.txt", val_text)
    sets = eval_sets(world, splits)
    for name, rows in sets.items():
        put(f"eval/{name}.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    train_tokenizer([out / "train.txt"], out / "tokenizer", vocab_size=cfg.vocab_size)
    for p in sorted((out / "tokenizer").iterdir()):
        files[f"tokenizer/{p.name}"] = sha256_hex(p.read_bytes())
    tok = load_tokenizer(out / "tokenizer")
    n_train = sum(len(ids) for ids in tok(train_docs)["input_ids"]) + len(train_docs)
    n_val = sum(len(ids) for ids in tok(val_docs)["input_ids"]) + len(val_docs)
    manifest = CorpusManifest(
        seed=cfg.seed,
        tokens_target=cfg.tokens,
        train_tokens=n_train,
        val_tokens=n_val,
        documents=counts,
        eval_sizes={k: len(v) for k, v in sets.items()},
        files=files,
    )
    atomic_write_text(out / "manifest.json", manifest.model_dump_json(indent=2) + "\n")
    return CorpusInfo(out, manifest)


def read_documents(path: str | Path) -> list[str]:
    """The documents of a ``train.txt`` / ``val.txt`` file."""
    text = Path(path).read_text(encoding="utf-8").rstrip("\n")
    return [d for d in text.split(DOC_SEPARATOR) if d]


def load_corpus(path: str | Path) -> CorpusInfo:
    """Open a corpus folder written by :func:`write_corpus`."""
    from safescale._errors import Problem, UserError
    from safescale._input import read_text_limited

    root = Path(path)
    src = root / "manifest.json"
    text = read_text_limited(src, 16 << 20, what="corpus manifest")
    try:
        manifest = CorpusManifest.model_validate_json(text)
    except ValueError as exc:
        first = str(exc).splitlines()[0]
        raise UserError(
            Problem(f"not a lab corpus manifest ({first}); write the corpus again", source=str(src))
        ) from None
    return CorpusInfo(root, manifest)
