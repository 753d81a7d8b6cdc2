"""A local Hugging Face causal LM: batched log-likelihood with shared-context reuse, generation.

This is the engine behind the ``safescale`` Inspect provider and ``safescale serve-model``. It
scores exactly what lm-evaluation-harness's ``HFLM.loglikelihood`` scores (same encoding of
context and continuation, same left truncation), but computes a multiple-choice question's
shared context once: the context runs through the model with a KV cache, and every choice's
continuation then runs against that cache. :meth:`LocalLM.loglikelihood_reference` is the
simple one-request-at-a-time version the fast path is tested against.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safescale._errors import Problem, UserError
from safescale._input import check_count, quote
from safescale._model_folder import check_device, check_model_config, load_pretrained


class ContextWarning(UserWarning):
    """A prompt was longer than the model's context and was cut."""


def warn_context(message: str) -> None:
    """Warn that prompts were cut to the model's context (``max_length`` model argument)."""
    # Only `eval run` and `assess` take -M; the red-team and constitution commands have no
    # such flag, so the advice names the setting and where it goes.
    advice = "give the model a longer context (max_length: -M max_length=N in eval run and assess)"
    warnings.warn(f"{message}; {advice} if it allows one", ContextWarning, stacklevel=3)


if TYPE_CHECKING:
    import torch

# Files any of which makes a folder hold a tokenizer that AutoTokenizer can load offline.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
DTYPES = ("auto", "float32", "bfloat16", "float16")

MAX_BATCH = 1 << 16
"""Most sequences per forward pass any command takes."""
MAX_CONTEXT = 1 << 24
"""Largest context limit in tokens any command takes (the largest size a model folder's
config may declare)."""


@dataclass(frozen=True)
class LocalModelConfig:
    """How to load and run a local Hugging Face causal-LM folder."""

    path: Path
    """The folder holding ``config.json``, the weights and the tokenizer."""
    dtype: str = "float32"
    """Weights and activations dtype: float32 (default, exact), bfloat16, float16 or auto."""
    device: str = "cpu"
    """A torch device string: cpu, cuda, cuda:1, mps."""
    batch_size: int = 32
    """Sequences per forward pass (continuations for log-likelihood, prompts for generation)."""
    max_length: int | None = None
    """Context-length limit in tokens; default: the model config's ``max_position_embeddings``."""
    fields: tuple[str, str] = ("batch_size", "max_length")
    """How ``batch_size`` and ``max_length`` are named in messages (the flags of a command
    that takes them as flags)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        if self.dtype not in DTYPES:
            raise UserError(
                Problem(f"unknown dtype {quote(self.dtype)}; use one of {DTYPES}", field="dtype")
            )
        check_count(self.batch_size, self.fields[0], lo=1, hi=MAX_BATCH)
        if self.max_length is not None:
            check_count(self.max_length, self.fields[1], lo=2, hi=MAX_CONTEXT)
        check_device(self.device)


@dataclass(frozen=True)
class LoglikelihoodGroup:
    """One context and the continuations scored after it (a multiple-choice question)."""

    context: tuple[int, ...]
    """Token ids of the shared context (never empty: an empty context becomes a prefix token)."""
    continuations: tuple[tuple[int, ...], ...]
    """Token ids of each continuation (each non-empty)."""


@dataclass(frozen=True)
class ContinuationScore:
    """The log-likelihood of one continuation given its context."""

    logprob: float
    """Sum of the continuation tokens' log-probabilities (natural log)."""
    is_greedy: bool
    """Whether every continuation token is the model's argmax (lm-eval's ``is_greedy``)."""
    token_logprobs: tuple[float, ...] = field(repr=False)
    """Per-token log-probabilities of the continuation."""


def check_model_dir(path: Path) -> None:
    """Raise a one-line :class:`UserError` unless ``path`` is a loadable causal-LM folder."""
    if not path.is_dir():
        raise UserError(
            Problem(
                "model folder does not exist; give a folder saved with save_pretrained",
                source=str(path),
            )
        )
    if not (path / "config.json").is_file():
        raise UserError(
            Problem("no config.json here; is this a Hugging Face model folder?", source=str(path))
        )
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise UserError(
            Problem(
                "model has no tokenizer (none of " + ", ".join(TOKENIZER_FILES) + "); "
                "save one next to the weights with tokenizer.save_pretrained(DIR)",
                source=str(path),
            )
        )
    check_model_config(path)


class LocalLM:
    """A loaded local causal LM and its tokenizer (thread-safe: one forward pass at a time)."""

    def __init__(self, config: LocalModelConfig) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        check_model_dir(config.path)
        self.config = config
        hf_logging.disable_progress_bar()  # a per-load bar is noise in an evaluation run
        # local_files_only: a folder is all we read; nothing ever reaches for the hub.
        self.tokenizer = load_pretrained(
            AutoTokenizer.from_pretrained, config.path, "tokenizer", local_files_only=True
        )
        dtype: Any = "auto" if config.dtype == "auto" else getattr(torch, config.dtype)
        model = load_pretrained(
            AutoModelForCausalLM.from_pretrained, config.path, dtype=dtype, local_files_only=True
        )
        # transformers types `.to` through a wrapper mypy cannot see through.
        self.model = model.to(torch.device(config.device)).eval()  # type: ignore[arg-type]
        self.device = torch.device(config.device)
        self.max_length = config.max_length or int(
            getattr(model.config, "max_position_embeddings", None) or 2048
        )
        self.vocab_size = int(model.get_output_embeddings().weight.shape[0])
        self._lock = threading.Lock()

    # -- tokens -------------------------------------------------------------------------------

    @property
    def prefix_token_id(self) -> int:
        """The token that stands in for an empty context (BOS, else EOS), as in lm-eval."""
        tok = self.tokenizer
        token = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        if token is None:
            raise UserError(
                "the tokenizer has neither a BOS nor an EOS token to stand for an empty context"
            )
        return int(token)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` with the default special tokens (lm-eval's ``tok_encode``)."""
        return list(self.tokenizer.encode(text))

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Context and continuation ids, split as lm-eval splits them (:func:`encode_pair`)."""
        return encode_pair(self.tokenizer, context, continuation)

    def decode(self, ids: Sequence[int]) -> str:
        """Text of token ids."""
        return str(self.tokenizer.decode(list(ids)))

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        """Each token id as its own decoded string (for logprob records)."""
        return [str(self.tokenizer.decode([int(i)])) for i in ids]

    def check_ids(self, ids: Sequence[int], what: str = "prompt_token_ids") -> None:
        """Raise a :class:`UserError` if a token id is outside the model's vocabulary."""
        bad = [i for i in ids if not 0 <= int(i) < self.vocab_size]
        if bad:
            raise UserError(
                f"{what}: token id {bad[0]} is outside the vocabulary (size {self.vocab_size})"
            )

    # -- log-likelihood -----------------------------------------------------------------------

    def loglikelihood(
        self,
        groups: Sequence[LoglikelihoodGroup],
        progress: Callable[[int, int], None] | None = None,
    ) -> list[list[ContinuationScore]]:
        """Score every continuation of every group; results in the order given.

        Groups that share a context (the same question asked twice, a question split over
        several requests) are merged first and each (context, continuation) is scored once, as
        lm-eval's logits cache does for identical inputs; a merged group holds at most
        ``batch_size`` continuations. Groups are then sorted longest first and packed into
        micro-batches of at most ``batch_size`` continuations. A group whose longest context +
        continuation exceeds ``max_length + 1`` tokens is scored by the reference path, which
        left-truncates each request separately as lm-eval does. ``progress`` is called after
        each micro-batch with (distinct groups done, distinct groups in all).
        """
        for g in groups:
            self._check_group(g)
        # context -> [continuations of each merged group], dicts as insertion-ordered sets
        merged: dict[tuple[int, ...], list[dict[tuple[int, ...], None]]] = {}
        for g in groups:
            slots = merged.setdefault(g.context, [{}])
            for c in g.continuations:
                if any(c in slot for slot in slots):
                    continue
                if len(slots[-1]) >= self.config.batch_size:
                    slots.append({})
                slots[-1][c] = None
        unique = [
            LoglikelihoodGroup(ctx, tuple(slot)) for ctx, slots in merged.items() for slot in slots
        ]
        table = {
            (u.context, c): score
            for u, scores in zip(
                unique, self._loglikelihood_distinct(unique, progress), strict=True
            )
            for c, score in zip(u.continuations, scores, strict=True)
        }
        return [[table[g.context, c] for c in g.continuations] for g in groups]

    def _loglikelihood_distinct(
        self,
        groups: Sequence[LoglikelihoodGroup],
        progress: Callable[[int, int], None] | None,
    ) -> list[list[ContinuationScore]]:
        import torch

        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(done, len(groups))

        out: list[list[ContinuationScore] | None] = [None] * len(groups)
        fits = []
        over = sum(
            len(g.context) + max(len(c) for c in g.continuations) > self.max_length + 1
            for g in groups
        )
        if over:
            warn_context(
                f"{over} of {len(groups)} log-likelihood requests are longer than the model's "
                f"context ({self.max_length} tokens); their contexts are cut from the left, as "
                "lm-eval cuts them, so the model does not see the start of those prompts"
            )
        for i, g in enumerate(groups):
            longest = max(len(c) for c in g.continuations)
            if len(g.context) + longest <= self.max_length + 1:
                fits.append(i)
            else:
                out[i] = [self.loglikelihood_reference(g.context, c) for c in g.continuations]
                advance(1)
        # Longest first, as lm-eval does: padding within a batch stays small and the first
        # batch shows the worst-case memory.
        fits.sort(key=lambda i: -(len(groups[i].context) + max(map(len, groups[i].continuations))))
        batch: list[int] = []
        width = 0
        with self._lock, torch.inference_mode():
            for i in fits:
                m = len(groups[i].continuations)
                if batch and width + m > self.config.batch_size:
                    self._score_batch(groups, batch, out)
                    advance(len(batch))
                    batch, width = [], 0
                batch.append(i)
                width += m
            if batch:
                self._score_batch(groups, batch, out)
                advance(len(batch))
        return [r if r is not None else [] for r in out]

    def _check_group(self, g: LoglikelihoodGroup) -> None:
        if not g.context:
            raise ValueError("empty context: use encode_pair, which puts a prefix token there")
        if not g.continuations or any(not c for c in g.continuations):
            raise ValueError("every continuation needs at least one token")
        for c in g.continuations:
            if len(c) > self.max_length:
                raise UserError(
                    f"a continuation of {len(c)} tokens is longer than the model's context "
                    f"({self.max_length} tokens); shorten the choice or raise max_length"
                )

    def _score_batch(
        self,
        groups: Sequence[LoglikelihoodGroup],
        idx: list[int],
        out: list[list[ContinuationScore] | None],
    ) -> None:
        import torch
        import torch.nn.functional as F

        dev = self.device
        ctxs = [groups[i].context for i in idx]
        lens_list = [len(c) for c in ctxs]
        B, Lc = len(ctxs), max(lens_list)
        lens = torch.tensor(lens_list, device=dev)
        # Step 1: the contexts, right-padded: (B, Lc). Padding sits after every real token, so
        # under the causal mask it changes nothing a real position sees. Tensors are built from
        # padded lists in one call each: per-row copies cost a Python round trip apiece.
        ids = torch.tensor([list(c) + [0] * (Lc - len(c)) for c in ctxs], device=dev)
        mask = torch.tensor([[1] * n + [0] * (Lc - n) for n in lens_list], device=dev)
        base = self.model.base_model
        head = self.model.get_output_embeddings()
        res = base(input_ids=ids, attention_mask=mask, use_cache=True)
        # Only the last context position predicts a token we score; skipping the vocabulary
        # projection of the other positions saves most of the head's cost: (B, V).
        last_h = res.last_hidden_state[torch.arange(B, device=dev), lens - 1]
        first_lp = F.log_softmax(head(last_h).float(), dim=-1)

        # Every continuation's first token is predicted by its context's last position: (N,).
        conts = [(b, c) for b, i in enumerate(idx) for c in groups[i].continuations]
        row_b = torch.tensor([b for b, _ in conts], device=dev)
        first_tok = torch.tensor([c[0] for _, c in conts], device=dev)
        first_vals = first_lp[row_b, first_tok]
        first_greedy = first_lp.argmax(dim=-1)[row_b] == first_tok

        # Step 2: every continuation of length >= 2 runs its tokens but the last against its
        # group's cached context: rows (R, Lc + Tk), positions continuing from the context.
        long_rows = [r for r, (_, c) in enumerate(conts) if len(c) > 1]
        rest_vals: list[list[float]] = []
        rest_greedy: list[list[bool]] = []
        if long_rows:
            Tk = max(len(conts[r][1]) - 1 for r in long_rows)
            sel = row_b[long_rows]
            cache = res.past_key_values
            cache.batch_select_indices(sel)
            inputs = [list(conts[r][1][:-1]) for r in long_rows]
            targets = [list(conts[r][1][1:]) for r in long_rows]
            cids = torch.tensor([t + [0] * (Tk - len(t)) for t in inputs], device=dev)
            cmask = torch.tensor([[1] * len(t) + [0] * (Tk - len(t)) for t in inputs], device=dev)
            pos = lens[sel].unsqueeze(1) + torch.arange(Tk, device=dev).unsqueeze(0)
            full_mask = torch.cat([mask[sel], cmask], dim=1)
            res2 = base(
                input_ids=cids,
                attention_mask=full_mask,
                position_ids=pos,
                past_key_values=cache,
                use_cache=True,
            )
            rest_lp = F.log_softmax(head(res2.last_hidden_state).float(), dim=-1)  # (R, Tk, V)
            # Padded targets gather a real (ignored) value; only the first len - 1 are read.
            tgt = torch.tensor([t + [0] * (Tk - len(t)) for t in targets], device=dev)
            rest_vals = rest_lp.gather(2, tgt.unsqueeze(2)).squeeze(2).tolist()
            rest_greedy = (rest_lp.argmax(dim=-1) == tgt).tolist()

        # One transfer to Python per tensor, then plain lists: (N,) and (R, Tk).
        fv, fg = first_vals.tolist(), first_greedy.tolist()
        row_of = {r: j for j, r in enumerate(long_rows)}
        scores: list[list[ContinuationScore]] = [[] for _ in idx]
        for r, (b, c) in enumerate(conts):
            values, greedy = [float(fv[r])], bool(fg[r])
            if len(c) > 1:
                j = row_of[r]
                values += rest_vals[j][: len(c) - 1]
                greedy = greedy and all(rest_greedy[j][: len(c) - 1])
            scores[b].append(
                ContinuationScore(
                    logprob=sum(values), is_greedy=greedy, token_logprobs=tuple(values)
                )
            )
        for b, i in enumerate(idx):
            out[i] = scores[b]

    def loglikelihood_reference(
        self, context: Sequence[int], continuation: Sequence[int]
    ) -> ContinuationScore:
        """The simple version: one request, one full forward pass, lm-eval's truncation rule."""
        import torch
        import torch.nn.functional as F

        whole = (list(context) + list(continuation))[-(self.max_length + 1) :][:-1]
        with torch.inference_mode():
            ids = torch.tensor([whole], device=self.device)
            logits = self.model(input_ids=ids).logits[0].float()
            lp = F.log_softmax(logits, dim=-1)[-len(continuation) :]
        return _score(lp, torch.tensor(list(continuation), device=self.device))

    # -- generation ---------------------------------------------------------------------------

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        max_new_tokens: int,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stopping: Callable[[list[int], int], Any] | None = None,
    ) -> list[list[int]]:
        """New token ids for each prompt; greedy unless a temperature above 0 is given.

        Prompts are left-truncated to leave room for ``max_new_tokens`` and run in left-padded
        batches of ``batch_size``, sorted by length so padding stays small. ``stopping``, when
        given, is called per batch with (the prompts' indices in the batch's row order, the
        padded prompt width) and returns transformers stopping criteria for that batch (a
        streaming output classifier stops rows mid-generation this way).
        """
        import torch

        # Keep as much of each prompt as the context allows while leaving room to answer: at
        # most a quarter of the context is reserved, and generation stops at the context's end
        # (a request for more new tokens than the context holds must not erase the prompt).
        reserve = max(1, min(max_new_tokens, self.max_length // 4))
        over = sum(len(p) > self.max_length - reserve for p in prompts)
        if over:
            warn_context(
                f"{over} of {len(prompts)} prompts are longer than the model's context "
                f"({self.max_length} tokens, {reserve} kept for the answer); they are cut from "
                "the left, so the model does not see their start"
            )
        prompts = [list(p)[-(self.max_length - reserve) :] for p in prompts]
        sample = temperature is not None and temperature > 0
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else 0
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        out: list[list[int]] = [[] for _ in prompts]
        rng = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
        with self._lock, torch.inference_mode(), rng:
            if seed is not None:  # generate() samples from the global generator (fork_rng)
                torch.manual_seed(seed)
            for s in range(0, len(order), self.config.batch_size):
                chunk = order[s : s + self.config.batch_size]
                width = max(len(prompts[i]) for i in chunk)
                ids = torch.full((len(chunk), width), pad, dtype=torch.long, device=self.device)
                mask = torch.zeros_like(ids)
                for b, i in enumerate(chunk):
                    p = prompts[i]
                    ids[b, width - len(p) :] = torch.tensor(p, device=self.device)
                    mask[b, width - len(p) :] = 1
                kwargs: dict[str, Any] = {"do_sample": sample}
                if sample:
                    kwargs["temperature"] = temperature
                    if top_p is not None:
                        kwargs["top_p"] = top_p
                if stopping is not None:
                    kwargs["stopping_criteria"] = stopping(chunk, width)
                gen = self.model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    max_new_tokens=max(1, min(max_new_tokens, self.max_length - width)),
                    pad_token_id=pad,
                    **kwargs,
                )
                eos = self.tokenizer.eos_token_id
                for b, i in enumerate(chunk):
                    new = [int(t) for t in gen[b, width:].tolist()]
                    if eos is not None and eos in new:
                        new = new[: new.index(eos)]
                    out[i] = new
        return out


def _score(dist: torch.Tensor, target: torch.Tensor) -> ContinuationScore:
    """Sum the target's log-probabilities under ``dist`` (T, V); greedy if each is the argmax."""
    lp = dist.gather(1, target.unsqueeze(1)).squeeze(1)
    greedy = bool((dist.argmax(dim=-1) == target).all())
    values = tuple(float(v) for v in lp.tolist())
    return ContinuationScore(
        logprob=float(lp.double().sum()), is_greedy=greedy, token_logprobs=values
    )


def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Split ``context + continuation`` into token ids exactly as lm-eval's ``_encode_pair``.

    Trailing spaces of the context move to the continuation; the whole string is encoded once
    and cut at the length of the encoded context, so a merge across the boundary stays in the
    continuation. An empty context becomes the prefix token (BOS, else EOS).
    """
    if context == "":
        cont = list(tokenizer.encode(continuation, add_special_tokens=False))
        prefix = (
            tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        )
        if prefix is None:
            raise UserError(
                "the tokenizer has neither a BOS nor an EOS token to stand for an empty context"
            )
        return ([int(prefix)], cont) if cont[:1] != [prefix] else (cont[:1], cont[1:])
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = list(tokenizer.encode(context + continuation))
    ctx = list(tokenizer.encode(context))
    return ctx, whole[len(ctx) :]


def encode_pairs(
    tokenizer: Any, requests: Sequence[tuple[str, Sequence[str]]]
) -> list[list[tuple[list[int], list[int]]]]:
    """:func:`encode_pair` for many (context, continuations) requests in one tokenizer call.

    Each request's context is encoded once and each ``context + continuation`` once, all in a
    single batched call (a fast tokenizer runs it in Rust, without a Python round trip per
    string); the split is :func:`encode_pair`'s. Empty contexts take :func:`encode_pair` itself.
    Returns, per request, one (context ids, continuation ids) pair per continuation.
    """
    texts: list[str] = []
    plan: list[tuple[int, list[int]] | None] = []
    for context, continuations in requests:
        if context == "":
            plan.append(None)
            continue
        n_spaces = len(context) - len(context.rstrip())
        head, tail = (context[:-n_spaces], context[-n_spaces:]) if n_spaces else (context, "")
        start = len(texts)
        texts.append(head)
        texts.extend(head + tail + c for c in continuations)
        plan.append((start, list(range(start + 1, start + 1 + len(continuations)))))
    ids = list(tokenizer(texts)["input_ids"]) if texts else []
    out: list[list[tuple[list[int], list[int]]]] = []
    for (context, continuations), step in zip(requests, plan, strict=True):
        if step is None:
            out.append([encode_pair(tokenizer, context, c) for c in continuations])
            continue
        ctx = list(ids[step[0]])
        out.append([(ctx, list(ids[j])[len(ctx) :]) for j in step[1]])
    return out


@dataclass(frozen=True)
class PairGroups:
    """Encoded (context, continuation) pairs of one request, grouped by their context ids."""

    groups: tuple[LoglikelihoodGroup, ...]
    """Usually one group: every continuation shares the context's ids (the context is encoded
    on its own); an empty context can split them."""
    index: tuple[tuple[int, ...], ...]
    """For each group, the position in the request of each of its continuations."""

    @classmethod
    def of(cls, pairs: Sequence[tuple[Sequence[int], Sequence[int]]]) -> PairGroups:
        """Group the pairs :func:`encode_pairs` gives for one request."""
        by_ctx: dict[tuple[int, ...], list[int]] = {}
        for i, (ctx, _) in enumerate(pairs):
            by_ctx.setdefault(tuple(ctx), []).append(i)
        return cls(
            groups=tuple(
                LoglikelihoodGroup(ctx, tuple(tuple(pairs[i][1]) for i in idx))
                for ctx, idx in by_ctx.items()
            ),
            index=tuple(tuple(idx) for idx in by_ctx.values()),
        )

    def scored(self, scores: Sequence[Sequence[ContinuationScore]]) -> ScoredText:
        """The request's result from its groups' scores (in the order of :attr:`groups`)."""
        out: list[ContinuationScore | None] = [None] * sum(map(len, self.index))
        for idx, group_scores in zip(self.index, scores, strict=True):
            for i, score in zip(idx, group_scores, strict=True):
                out[i] = score
        tokens = sum(len(g.context) + sum(map(len, g.continuations)) for g in self.groups)
        return ScoredText(tuple(s for s in out if s is not None), tokens)


@dataclass(frozen=True)
class ScoredText:
    """The scores of one (context, continuations) request."""

    scores: tuple[ContinuationScore, ...]
    """One score per continuation, in the order given."""
    input_tokens: int
    """Tokens the model read: each distinct context once, plus every continuation."""


_CACHE: dict[LocalModelConfig, LocalLM] = {}
_CACHE_LOCK = threading.Lock()


def load_local_model(config: LocalModelConfig) -> LocalLM:
    """Load (once per process and configuration) a local model folder."""
    check_model_dir(config.path)
    key = LocalModelConfig(
        config.path.resolve(), config.dtype, config.device, config.batch_size, config.max_length
    )
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = LocalLM(key)
        return _CACHE[key]


def unload_local_models() -> None:
    """Forget every model :func:`load_local_model` has loaded (their memory is freed when
    nothing else holds them); the next load reads the folder again."""
    with _CACHE_LOCK:
        _CACHE.clear()
