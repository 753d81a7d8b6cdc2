"""Activations streamed from a model to an on-disk cache, in bounded memory.

A cache folder holds ``shard-00000.safetensors``, ... and ``manifest.json``. Each shard holds
``activations`` (tokens x d, the manifest's dtype) and, per row, ``token`` (the token id),
``seq`` (the index of the text it came from) and ``pos`` (its position in that text), so a
feature's top contexts can be read back. The manifest is written last: a folder without one
is an unfinished capture. At most ``shard_tokens`` rows are held in memory at any time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, Field
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from safetensors.torch import load_file, save_file

from safescale._errors import Problem, UserError
from safescale._input import (
    MAX_JSONL_BYTES,
    jsonl_rows,
    loads_json,
    read_text_limited,
    regular_file_size,
)
from safescale._io import atomic_write_text, file_sha256
from safescale._model_folder import context_limit
from safescale.interp._hooks import SITES, Hookpoint, capture, run_to

MANIFEST = "manifest.json"
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
MAX_MANIFEST_BYTES = 16 << 20
"""A cache manifest may be at most this large (one line per shard; real ones are kilobytes)."""
MAX_D = 1 << 20
"""The widest activation a cache may claim."""
DEFAULT_CONTEXT = 128
"""Texts are cut to this many tokens unless asked otherwise (or the model's limit is lower)."""


def resolve_context_size(model: Any, context_size: int | None, field: str = "context_size") -> int:
    """The tokens a text is cut to: ``context_size``, or by default :data:`DEFAULT_CONTEXT`
    or the model's limit if lower. More than the model's limit is refused in one line naming
    ``field``: a model with learned positions (GPT-2) has no embedding past it and would fail
    mid-capture, and any other reads positions it was never trained on."""
    limit = context_limit(model)
    if context_size is None:
        return DEFAULT_CONTEXT if limit is None else min(DEFAULT_CONTEXT, limit)
    if limit is not None and context_size > limit:
        raise UserError(
            Problem(
                f"{context_size:,} tokens is more than the model's limit of {limit:,} positions "
                f"(its config.json); give at most {limit:,}",
                field=field,
            )
        )
    return context_size


class ShardInfo(BaseModel):
    """One shard file of a cache."""

    file: str
    tokens: int
    sha256: str


class ActivationManifest(BaseModel):
    """What a cache holds and where it came from (``manifest.json``)."""

    schema_version: int = 1
    model: str
    """The model folder or name the activations were read from."""
    weights_sha256: str
    """Identity of the model's weights (:func:`safescale._io.weights_sha256`)."""
    hookpoint: str
    """``layers.N.SITE``."""
    layer: int
    site: str
    d: int
    """Width of one activation."""
    dtype: str
    tokens: int
    """Rows (tokens) in the cache, padding and excluded tokens left out."""
    texts: int
    """Texts read."""
    context_size: int
    """Texts were cut to this many tokens."""
    texts_sha256: str
    """Hash of the texts, in order, so two caches of the same data can be told apart."""
    excluded_tokens: list[int] = Field(default_factory=list)
    """Token ids not cached (special tokens such as BOS/EOS)."""
    shards: list[ShardInfo]


@dataclass(frozen=True)
class ActivationCache:
    """A finished cache folder; read it with :meth:`batches` or :meth:`load`."""

    path: Path
    manifest: ActivationManifest

    @classmethod
    def open(cls, path: str | Path) -> ActivationCache:
        """Open the cache in ``path`` (a :class:`UserError` if it is not a finished cache)."""
        folder = Path(path)
        mf = folder / MANIFEST
        if not mf.is_file():
            raise UserError(
                Problem(
                    "not an activation cache (no manifest.json); run `safescale interp capture`",
                    source=str(folder),
                )
            )
        text = read_text_limited(mf, MAX_MANIFEST_BYTES, what="cache manifest")
        try:
            manifest = ActivationManifest.model_validate(loads_json(text, str(mf)))
        except ValueError as exc:
            first = str(exc).splitlines()[0]
            raise UserError(Problem(f"bad manifest ({first})", source=str(mf))) from None
        check_manifest(manifest, folder)
        return cls(folder, manifest)

    @property
    def hookpoint(self) -> Hookpoint:
        """The hookpoint the activations were read at."""
        return Hookpoint(self.manifest.layer, self.manifest.site)

    def shard(self, i: int) -> dict[str, torch.Tensor]:
        """Shard ``i`` as tensors (``activations``, ``token``, ``seq``, ``pos``); a shard that is
        not a safetensors file of the manifest's width is a one-line :class:`UserError`."""
        path = self.path / self.manifest.shards[i].file
        src = str(path)
        regular_file_size(path, what="cache shard")
        try:
            tensors = load_file(src)
        except Exception:  # truncated, or not safetensors at all
            raise UserError(
                Problem("a damaged cache shard; capture the cache again", source=src)
            ) from None
        acts = tensors.get("activations")
        if acts is None or acts.ndim != 2 or acts.shape[1] != self.manifest.d:
            raise UserError(
                Problem(
                    f"the shard does not hold d={self.manifest.d} activations; "
                    "capture the cache again",
                    source=src,
                )
            )
        return tensors

    def load(self, limit: int | None = None) -> dict[str, torch.Tensor]:
        """Every row (or the first ``limit``), concatenated; only for caches that fit memory."""
        parts: dict[str, list[torch.Tensor]] = {}
        n = 0
        for i in range(len(self.manifest.shards)):
            for k, v in self.shard(i).items():
                parts.setdefault(k, []).append(v)
            n += self.manifest.shards[i].tokens
            if limit is not None and n >= limit:
                break
        return {k: torch.cat(v)[:limit] for k, v in parts.items()}

    def batches(
        self, batch_size: int, *, seed: int = 0, shuffle_shards: int = 2, epochs: int | None = 1
    ) -> Iterator[torch.Tensor]:
        """Float32 activation batches, shuffled within a window of ``shuffle_shards`` shards.

        Memory stays at ``shuffle_shards`` shards. ``epochs=None`` cycles forever.
        """
        g = torch.Generator().manual_seed(seed)
        epoch = 0
        while epochs is None or epoch < epochs:
            order = torch.randperm(len(self.manifest.shards), generator=g).tolist()
            carry = torch.empty(0, self.manifest.d)
            for start in range(0, len(order), shuffle_shards):
                window = [
                    self.shard(i)["activations"].float()
                    for i in order[start : start + shuffle_shards]
                ]
                rows = torch.cat([carry, *window])
                rows = rows[torch.randperm(len(rows), generator=g)]
                full = len(rows) // batch_size * batch_size
                if full:  # an empty tensor splits into one empty batch
                    yield from rows[:full].split(batch_size)
                carry = rows[full:]
            if len(carry):
                yield carry
            epoch += 1


def check_manifest(manifest: ActivationManifest, folder: Path) -> None:
    """Refuse a manifest whose numbers are impossible or whose shards lie outside ``folder``."""
    src = str(folder / MANIFEST)

    def bad(message: str, field: str) -> UserError:
        return UserError(Problem(f"{message}; capture the cache again", source=src, field=field))

    if not 1 <= manifest.d <= MAX_D:
        raise bad(f"d={manifest.d} is not a width from 1 to {MAX_D:,}", "d")
    if manifest.layer < 0 or manifest.site not in SITES:
        raise bad("not a hookpoint (layer >= 0, a known site)", "layer")
    if manifest.dtype not in _DTYPES:
        raise bad(f"unknown dtype {manifest.dtype[:20]!r}", "dtype")
    if not manifest.shards or any(sh.tokens < 1 for sh in manifest.shards):
        raise bad("no shards, or a shard of no tokens", "shards")
    for sh in manifest.shards:
        name = Path(sh.file)
        if name.name != sh.file or not sh.file.endswith(".safetensors") or sh.file[0] == ".":
            raise bad(f"shard {sh.file[:60]!r} is not a .safetensors file in the cache", "shards")


def _texts_sha(texts: Sequence[str]) -> str:
    import hashlib

    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    return h.hexdigest()


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]capture"),
        BarColumn(),
        TextColumn("{task.completed:>7,.0f}/{task.total:,.0f} texts"),
        TextColumn("{task.fields[tokens]:>10,} tok"),
        TimeElapsedColumn(),
        disable=not enabled,
    )


def capture_activations(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    out_dir: str | Path,
    hookpoint: Hookpoint,
    *,
    model_name: str,
    weights_sha256: str,
    context_size: int | None = None,
    batch_size: int = 16,
    shard_tokens: int = 65_536,
    dtype: str = "float32",
    progress: bool = True,
) -> ActivationCache:
    """Run ``model`` over ``texts`` and write the activations at ``hookpoint`` to ``out_dir``.

    Each text is cut to ``context_size`` tokens (see :func:`resolve_context_size`). Padding
    and special tokens (BOS/EOS, whose norms dwarf the rest) are left out. At most
    ``shard_tokens`` rows are held in memory; each full shard is written and dropped.
    """
    context_size = resolve_context_size(model, context_size)
    if dtype not in _DTYPES:
        raise UserError(
            Problem(f"unknown dtype {dtype!r}; use {', '.join(_DTYPES)}", field="dtype")
        )
    if not texts:
        raise UserError(Problem("no texts to read activations from", field="texts"))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)
    excluded = sorted(set(getattr(tokenizer, "all_special_ids", []) or []))
    excl = torch.tensor(excluded, dtype=torch.long)
    tdtype = _DTYPES[dtype]
    device = next(model.parameters()).device
    shards: list[ShardInfo] = []
    buf: dict[str, list[torch.Tensor]] = {"activations": [], "token": [], "seq": [], "pos": []}
    held = 0
    total = 0
    d = 0

    def flush() -> None:
        nonlocal held
        if not held:
            return
        name = f"shard-{len(shards):05d}.safetensors"
        tensors = {k: torch.cat(v).contiguous() for k, v in buf.items()}
        save_file(tensors, str(out / name))
        shards.append(ShardInfo(file=name, tokens=held, sha256=file_sha256(out / name)))
        for v in buf.values():
            v.clear()
        held = 0

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    was_training = model.training
    model.eval()
    with _progress(progress) as bar, torch.inference_mode():
        task = bar.add_task("capture", total=len(texts), tokens=0)
        for start in range(0, len(texts), batch_size):
            chunk = list(texts[start : start + batch_size])
            enc = [tokenizer(t)["input_ids"][:context_size] for t in chunk]
            width = max(1, max(len(e) for e in enc))
            ids = torch.full((len(enc), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(enc), width), dtype=torch.long)
            for i, e in enumerate(enc):
                ids[i, : len(e)] = torch.tensor(e, dtype=torch.long)
                mask[i, : len(e)] = 1
            with capture(model, [hookpoint]) as acts:
                run_to(model, ids.to(device), mask.to(device))
            a = acts[hookpoint].to("cpu")
            d = a.shape[-1]
            keep = mask.bool() & ~torch.isin(ids, excl)
            rows = keep.nonzero(as_tuple=False)
            buf["activations"].append(a[keep].to(tdtype))
            buf["token"].append(ids[keep].to(torch.int32))
            buf["seq"].append((rows[:, 0] + start).to(torch.int64))
            buf["pos"].append(rows[:, 1].to(torch.int32))
            held += int(keep.sum())
            total += int(keep.sum())
            if held >= shard_tokens:
                flush()
            bar.update(task, advance=len(chunk), tokens=total)
        flush()
    model.train(was_training)
    if total == 0:
        raise UserError(Problem("the texts gave no tokens to cache", field="texts"))
    manifest = ActivationManifest(
        model=model_name,
        weights_sha256=weights_sha256,
        hookpoint=hookpoint.name,
        layer=hookpoint.layer,
        site=hookpoint.site,
        d=d,
        dtype=dtype,
        tokens=total,
        texts=len(texts),
        context_size=context_size,
        texts_sha256=_texts_sha(texts),
        excluded_tokens=excluded,
        shards=shards,
    )
    atomic_write_text(out / MANIFEST, json.dumps(manifest.model_dump(), indent=2) + "\n")
    return ActivationCache(out, manifest)


def load_lm(path: str | Path) -> tuple[Any, Any, str]:
    """A local Hugging Face causal LM folder: (model, tokenizer, weights sha256)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from safescale._io import weights_sha256
    from safescale._model_folder import load_pretrained
    from safescale.evals._lm import check_model_dir

    folder = Path(path)
    check_model_dir(folder)  # a folder with a config, a tokenizer, and weights to match
    hf_logging.disable_progress_bar()  # our commands print their own progress
    model = load_pretrained(AutoModelForCausalLM.from_pretrained, folder, local_files_only=True)
    model.eval()
    tok = load_pretrained(AutoTokenizer.from_pretrained, folder, "tokenizer", local_files_only=True)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return model, tok, weights_sha256(folder)


def read_texts(path: str | Path, limit: int | None = None) -> list[str]:
    """Texts from a file: documents separated by blank lines (a lab corpus file), or JSONL
    with a ``text`` field per line."""
    p = Path(path)
    if p.suffix == ".jsonl":
        out = []
        for i, row in jsonl_rows(p, "text file"):
            if not isinstance(row.get("text"), str):
                raise UserError(
                    Problem("expected a 'text' string", source=str(p), line=i, field="text")
                )
            out.append(row["text"])
    else:
        raw = read_text_limited(p, MAX_JSONL_BYTES, what="text file")
        out = [t.strip() for t in raw.split("\n\n") if t.strip()]
    return out[:limit] if limit is not None else out
