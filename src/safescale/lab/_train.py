"""The training loop: AdamW, warmup and cosine decay, clipping, bf16 autocast, checkpoints.

A run writes ``checkpoint.pt`` every ``checkpoint_every`` steps (atomically) and resumes from
it when started again with the same configuration, so a killed run loses at most that many
steps. The finished run is a standard Hugging Face folder (``save_pretrained`` of the model and
the tokenizer) plus ``train_record.json``.
"""

from __future__ import annotations

import io
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict
from transformers import LlamaForCausalLM

from safescale._errors import Problem, UserError
from safescale._io import atomic_write_bytes, atomic_write_text
from safescale.lab._data import EpochOrder, encode_documents, pack
from safescale.lab._model import SIZES, ModelSize, build_model
from safescale.lab._precision import resolve_precision
from safescale.lab._tokenizer import load_tokenizer
from safescale.policy import ModelRecord, sha256_hex

StepCallback = Callable[[int, float], None]
"""Called after each step with (tokens done so far, training loss of the step)."""


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """One training run."""

    size: ModelSize = field(default_factory=lambda: SIZES["s1"])
    """Model shape."""
    tokens: int = 200_000
    """Training tokens D (rounded up to whole batches)."""
    seq_len: int = 128
    """Tokens per packed sequence; the lab's documents are shorter than this."""
    batch_size: int = 16
    """Sequences per step: 2048 tokens, small enough for a few hundred steps per run."""
    lr: float = 3e-3
    """Peak learning rate; small models tolerate a high one (Kaplan et al. 2020, fig. 22)."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a fraction of the peak (Chinchilla decays 10x)."""
    warmup_frac: float = 0.05
    """Fraction of steps with linear warmup."""
    weight_decay: float = 0.1
    """AdamW decoupled weight decay on matrices only (Loshchilov & Hutter 2019)."""
    grad_clip: float = 1.0
    """Global gradient-norm clip."""
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    """``auto`` uses bf16 autocast where bf16 matmuls measure clearly faster than fp32 here
    (:func:`~safescale.lab._precision.resolve_precision`); the planted truths hold in both."""
    seed: int = 0
    """Seed of the initialisation and of the data order."""
    checkpoint_every: int = 50
    """Steps between checkpoints (0: never)."""
    val_blocks: int = 64
    """Validation sequences scored at the end (64 x 128 = 8k tokens)."""
    log_every: int = 10
    """Steps between points of the recorded loss curve."""
    device: str = "auto"
    """``auto``: CUDA when present (the ``full`` ladder), else CPU."""
    threads: int | None = None
    """CPU threads for torch (None: leave torch's setting)."""

    def __post_init__(self) -> None:
        checks = {
            "tokens": self.tokens >= self.seq_len * self.batch_size,
            "seq_len": self.seq_len >= 8,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "min_lr_ratio": 0 <= self.min_lr_ratio <= 1,
            "warmup_frac": 0 <= self.warmup_frac < 1,
            "weight_decay": self.weight_decay >= 0,
            "grad_clip": self.grad_clip > 0,
            "checkpoint_every": self.checkpoint_every >= 0,
            "val_blocks": self.val_blocks >= 1,
            "log_every": self.log_every >= 1,
            "threads": self.threads is None or self.threads >= 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid TrainConfig field(s): {', '.join(bad)}")

    @property
    def steps(self) -> int:
        """Optimizer steps."""
        return math.ceil(self.tokens / (self.seq_len * self.batch_size))

    @property
    def tokens_trained(self) -> int:
        """Tokens actually trained on (whole batches)."""
        return self.steps * self.seq_len * self.batch_size


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate of ``step``: 1) linear warmup, 2) cosine decay to ``min_lr_ratio``."""
    warmup = max(1, int(cfg.warmup_frac * cfg.steps))
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, cfg.steps - warmup)
    coeff = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * coeff)


def pick_device(device: str) -> torch.device:
    """The torch device for ``TrainConfig.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether to autocast to bf16 on this device (``auto``: by measured matmul speed)."""
    return resolve_precision(precision, device) == "bf16"


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices, none on norms (nanoGPT's grouping)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # The fused kernel updates all tensors in one pass; it exists for CPU since torch 2.4.
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), fused=True)


def lm_loss(model: LlamaForCausalLM, blocks: torch.Tensor, bf16: bool) -> torch.Tensor:
    """Mean next-token cross-entropy of ``blocks`` ``(batch, seq_len + 1)``."""
    blocks = blocks.to(model.device)
    x, y = blocks[:, :-1], blocks[:, 1:]
    with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = model(input_ids=x).logits  # (batch, seq_len, vocab)
    # The softmax in fp32: bf16 logits lose the small differences the loss is made of.
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))


@torch.no_grad()
def validation_loss(
    model: LlamaForCausalLM, blocks: torch.Tensor, bf16: bool, batch: int = 16
) -> float:
    """Mean loss over ``blocks`` (every block weighs the same)."""
    was_training = model.training
    model.eval()
    total = 0.0
    for i in range(0, len(blocks), batch):
        chunk = blocks[i : i + batch]
        total += float(lm_loss(model, chunk, bf16)) * len(chunk)
    model.train(was_training)
    return total / len(blocks)


class TrainRecord(BaseModel):
    """``train_record.json``: what a finished run trained and measured."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = 1
    name: str
    params: int
    tokens: int
    flops: float
    val_loss: float
    loss_curve: list[tuple[int, float]]
    """(tokens seen, mean training loss since the previous point)."""
    seconds: float
    tokens_per_second: float
    precision: str
    config: dict[str, Any]
    weights_sha256: str
    stage: Literal["pretraining", "finetuning"] = "pretraining"
    parent: str | None = None
    """The model this one was fine-tuned from."""


@dataclass(frozen=True)
class TrainResult:
    """A finished training run."""

    path: Path
    """The Hugging Face model folder."""
    record: TrainRecord
    """What was trained and measured (also in ``train_record.json``)."""

    @property
    def model_record(self) -> ModelRecord:
        """The run as a ledger :class:`~safescale.policy.ModelRecord` (flops = 6ND, counted)."""
        r = self.record
        return ModelRecord(
            id=r.name,
            parent=r.parent,
            stage=r.stage,
            weights_ref=str(self.path.resolve()),
            weights_sha256=r.weights_sha256,
            params=r.params,
            tokens=r.tokens,
            flops=r.flops,
            flops_method="count",
            extra={
                "val_loss": r.val_loss,
                "loss_curve": r.loss_curve,
                "config": {k: v for k, v in r.config.items() if k != "certificate"},
                "precision": r.precision,
                **({"certificate": r.config["certificate"]} if "certificate" in r.config else {}),
            },
        )


@dataclass
class RunState:
    """Progress of a run, saved in its checkpoint."""

    step: int = 0
    curve: list[tuple[int, float]] = field(default_factory=list)
    seconds: float = 0.0


def _save_checkpoint(
    path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, state: RunState, key: str
) -> None:
    buf = io.BytesIO()
    torch.save(
        {"key": key, "model": model.state_dict(), "opt": opt.state_dict(), "state": asdict(state)},
        buf,
    )
    atomic_write_bytes(path, buf.getvalue())


def _load_checkpoint(
    path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, key: str
) -> RunState:
    if not path.exists():
        return RunState()
    # weights_only: tensors and plain containers only, so a planted pickle never runs code.
    broken = Problem(
        "not a readable training checkpoint (damaged, or not written by safescale); "
        "delete it or use another --out",
        source=str(path),
    )
    if not path.is_file():
        raise UserError(broken)
    try:
        with warnings.catch_warnings():  # a foreign pickle protocol warns before it is refused
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, weights_only=True, map_location=next(model.parameters()).device)
    except Exception:  # truncated, not a checkpoint, or a pickle that asks for code
        raise UserError(broken) from None
    if not isinstance(ckpt, dict) or not {"key", "model", "opt", "state"} <= ckpt.keys():
        raise UserError(broken)
    if ckpt["key"] != key:
        raise UserError(
            Problem(
                "a checkpoint of a different configuration is here; use another --out or delete it",
                source=str(path),
            )
        )
    try:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        s = ckpt["state"]
        curve = [(int(a), float(b)) for a, b in s["curve"]]
        return RunState(step=int(s["step"]), curve=curve, seconds=float(s["seconds"]))
    except Exception:  # the right key over the wrong tensors or fields
        raise UserError(broken) from None


def train_model(
    config: TrainConfig,
    corpus_dir: str | Path,
    out_dir: str | Path,
    *,
    name: str | None = None,
    on_step: StepCallback | None = None,
) -> TrainResult:
    """Train one model on a corpus folder and save it to ``out_dir``.

    Resumes from ``out_dir/checkpoint.pt`` when present (same configuration and corpus).
    """
    corpus, out = Path(corpus_dir), Path(out_dir)
    if not (corpus / "train.txt").exists() or not (corpus / "tokenizer").exists():
        raise UserError(
            Problem(
                "not a corpus folder; write one with `safescale lab corpus`", source=str(corpus)
            )
        )
    tok = load_tokenizer(corpus / "tokenizer")
    train = pack(encode_documents(corpus / "train.txt", corpus / "tokenizer"), config.seq_len)
    val = pack(encode_documents(corpus / "val.txt", corpus / "tokenizer"), config.seq_len)[
        : config.val_blocks
    ]
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    device = pick_device(config.device)
    model = build_model(config.size, len(tok), config.seq_len, config.seed)
    model.to(device)  # type: ignore[arg-type]  # transformers types .to narrowly
    opt = make_optimizer(model, config)
    bf16 = use_bf16(config.precision, device)
    key = sha256_hex(
        repr((asdict(config), sha256_hex((corpus / "train.txt").read_bytes()))).encode()
    )
    ckpt = out / "checkpoint.pt"
    state = _load_checkpoint(ckpt, model, opt, key)
    order = EpochOrder(len(train), config.seed)
    tokens_per_step = config.batch_size * config.seq_len
    model.train()
    window: list[float] = []
    while state.step < config.steps:
        t0 = time.perf_counter()
        for g in opt.param_groups:
            g["lr"] = lr_at(state.step, config)
        loss = lm_loss(
            model, train[order.take(state.step * config.batch_size, config.batch_size)], bf16
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        state.step += 1
        state.seconds += time.perf_counter() - t0
        step_loss = loss.item()
        window.append(step_loss)
        if state.step % config.log_every == 0 or state.step == config.steps:
            state.curve.append((state.step * tokens_per_step, sum(window) / len(window)))
            window = []
        if on_step is not None:
            on_step(state.step * tokens_per_step, step_loss)
        if config.checkpoint_every and state.step % config.checkpoint_every == 0:
            _save_checkpoint(ckpt, model, opt, state, key)
    return save_run(
        model, tok, config, out, name or out.name, state, validation_loss(model, val, bf16), bf16
    )


def save_run(
    model: LlamaForCausalLM,
    tok: Any,
    config: TrainConfig,
    out: Path,
    name: str,
    state: RunState,
    val_loss: float,
    bf16: bool,
    *,
    parent: str | None = None,
    extra: dict[str, Any] | None = None,
) -> TrainResult:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the ladder's own bars say what is happening
    model.to(torch.device("cpu"))  # type: ignore[arg-type]
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    weights = out / "model.safetensors"
    n = config.size.non_embedding_params()
    d = config.tokens_trained
    record = TrainRecord(
        name=name,
        params=n,
        tokens=d,
        flops=6.0 * n * d,  # Kaplan et al. 2020: C = 6ND for a forward and backward pass
        val_loss=val_loss,
        loss_curve=state.curve,
        seconds=state.seconds,
        tokens_per_second=d / max(state.seconds, 1e-9),
        precision="bf16" if bf16 else "fp32",
        config={**asdict(config), "size": asdict(config.size), **(extra or {})},
        weights_sha256=sha256_hex(weights.read_bytes()),
        stage="pretraining" if parent is None else "finetuning",
        parent=parent,
    )
    atomic_write_text(out / "train_record.json", record.model_dump_json(indent=2) + "\n")
    result = TrainResult(out, record)
    atomic_write_text(
        out / "model_record.json", result.model_record.model_dump_json(indent=2) + "\n"
    )
    (out / "checkpoint.pt").unlink(missing_ok=True)
    return result


def load_train_result(path: str | Path) -> TrainResult:
    """Open a finished run folder."""
    from safescale._input import read_text_limited

    p = Path(path)
    src = p / "train_record.json"
    text = read_text_limited(src, 64 << 20, what="training record")
    try:
        return TrainResult(p, TrainRecord.model_validate_json(text))
    except ValueError as exc:
        first = str(exc).splitlines()[0]
        raise UserError(
            Problem(f"not a lab training record ({first}); train the model again", source=str(src))
        ) from None
