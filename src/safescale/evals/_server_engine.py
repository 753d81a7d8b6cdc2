"""The engine behind ``serve-model``: batched prompt scoring and generation with log-probabilities.

Concurrent HTTP requests become :class:`SequenceRequest` rows. A worker thread gathers the rows
that are waiting, sorts them by prompt length and runs them in batches of at most ``batch_size``
rows: a forward pass over the prompts, which gives every prompt token's log-probability when a
request echoes its prompt and the first new token's distribution (rows whose prompts share a
start, such as a question's choices, run it once: :func:`_prefill`), then
one decoding step at a time for the rows still generating, against the KV cache. Rows that finish
(EOS, a stop string, ``max_new_tokens``) leave the batch, so a short request does not pay for a
long one's steps.

Log-probabilities are those of the model's own distribution (log-softmax of the raw logits,
before temperature or top-p), as OpenAI and vLLM report them. Greedy decoding picks the argmax
of the same logits as ``LocalLM.generate`` (Hugging Face ``generate``) does, so both give the
same tokens; :func:`run_batch` is tested against it.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import queue
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from safescale.evals._lm import LocalLM

GATHER_SECONDS = 0.01
"""The longest the worker waits for requests that are being read (see :meth:`BatchEngine.expect`)
to batch them with those already queued; it never waits when none is on its way."""

FinishReason = Literal["stop", "length"]

log = logging.getLogger("safescale.serve")


@dataclass(frozen=True)
class SequenceRequest:
    """One sequence to score and/or extend (one choice of one HTTP request)."""

    prompt: tuple[int, ...]
    """Prompt token ids (at least one)."""
    max_new_tokens: int = 0
    """Tokens to generate; 0 scores the prompt only."""
    temperature: float = 0.0
    """0: greedy; above 0: sample from the distribution at this temperature."""
    top_p: float = 1.0
    """Nucleus sampling mass (used only when sampling)."""
    seed: int | None = None
    """Seed of this row's sampler; ``None``: a fresh random seed."""
    top_logprobs: int = 0
    """Alternatives (most likely tokens) returned with each generated token."""
    prompt_logprobs: int | None = None
    """``None``: no prompt scoring; ``k``: every prompt token after the first is scored, with its
    ``k`` most likely alternatives."""
    stop: tuple[str, ...] = ()
    """Generation ends once the decoded new text contains one of these."""


@dataclass(frozen=True)
class TokenLogprob:
    """A token and its log-probability, with the most likely alternatives at its position."""

    token: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()
    """(token id, log-probability) of the most likely tokens, best first."""


@dataclass(frozen=True)
class SequenceResult:
    """What :func:`run_batch` computed for one :class:`SequenceRequest`."""

    prompt_logprobs: tuple[TokenLogprob, ...] | None
    """One per prompt token after the first, when asked for."""
    tokens: tuple[TokenLogprob, ...]
    """The generated tokens (EOS not included)."""
    finish_reason: FinishReason


@dataclass(frozen=True)
class PromptScored:
    """A row's prompt log-probabilities, ready before its first new token (for streaming)."""

    logprobs: tuple[TokenLogprob, ...]


StepCallback = Callable[[int, "TokenLogprob | PromptScored"], None]
"""Called with (row index, event) as each row's prompt is scored and each token is generated."""


def eos_ids(lm: LocalLM) -> set[int]:
    """Token ids that end generation: the generation config's EOS ids and the tokenizer's."""
    return set(_special_ids(lm)[0])


def _pad_id(lm: LocalLM) -> int:
    return _special_ids(lm)[1]


_SPECIAL: weakref.WeakKeyDictionary[LocalLM, tuple[frozenset[int], int]] = (
    weakref.WeakKeyDictionary()
)


def _special_ids(lm: LocalLM) -> tuple[frozenset[int], int]:
    """(EOS ids, padding id), looked up once per model: a tokenizer's attribute lookups cost
    about a millisecond per batch, as much as a small model's layer."""
    known = _SPECIAL.get(lm)
    if known is not None:
        return known
    ids: set[int] = set()
    cfg = getattr(lm.model, "generation_config", None)
    value = getattr(cfg, "eos_token_id", None)
    for v in value if isinstance(value, (list, tuple)) else [value]:
        if v is not None:
            ids.add(int(v))
    tok = lm.tokenizer
    eos = tok.eos_token_id
    if eos is not None:
        ids.add(int(eos))
    pad = tok.pad_token_id
    pad = int(pad) if pad is not None else (int(eos) if eos is not None else 0)
    _SPECIAL[lm] = known = (frozenset(ids), pad)
    return known


def run_batch(
    lm: LocalLM,
    reqs: Sequence[SequenceRequest],
    on_step: StepCallback | None = None,
    cancelled: Callable[[int], bool] | None = None,
) -> list[SequenceResult]:
    """Score and extend ``reqs`` together (one padded batch); results in the order given.

    The caller keeps ``len(prompt) + max_new_tokens`` within the model's context: nothing here
    truncates. ``cancelled(i)`` lets a row whose client went away stop early.
    """
    import torch
    import torch.nn.functional as F

    dev = lm.device
    stops_at = eos_ids(lm)
    head = lm.model.get_output_embeddings()
    prompt_lps: list[tuple[TokenLogprob, ...] | None] = [None] * len(reqs)
    new: list[list[TokenLogprob]] = [[] for _ in reqs]
    finish: list[FinishReason] = ["length"] * len(reqs)
    generators = [_generator(r, dev) for r in reqs]

    with lm._lock, torch.inference_mode():  # the LocalLM is shared with in-process callers
        # Rows that ask for one new token at most (scoring: lm-eval's echo + max_tokens=1) need
        # no KV cache after the prompt: one packed pass serves them all.
        pre = _prefill(
            lm, [r.prompt for r in reqs], one_step=all(r.max_new_tokens <= 1 for r in reqs)
        )
        # A shared prefix's own tokens (1 .. n-1) are scored once for its group; every row then
        # scores the tokens after them. All in one pass over the stacked states.
        jobs: list[tuple[Any, Any]] = []
        shared: dict[int, int] = {}  # group -> index in jobs
        for g, (n, rows) in enumerate(pre.groups):
            if len(rows) > 1 and any(reqs[b].prompt_logprobs is not None for b in rows):
                shared[g] = len(jobs)
                jobs.append((pre.states(rows[0])[: n - 1], reqs[rows[0]].prompt[1:n]))
        own: dict[int, int] = {}  # row -> index in jobs
        for b, r in enumerate(reqs):
            if r.prompt_logprobs is not None and len(r.prompt) >= 2:
                skip = pre.groups[pre.group_of[b]][0] - 1 if pre.group_of[b] in shared else 0
                own[b] = len(jobs)
                jobs.append((pre.states(b)[skip:-1], r.prompt[skip + 1 :]))
        k = max((r.prompt_logprobs or 0) for r in reqs)
        scored = _pick_many(head, jobs, k, dev)
        for b, r in enumerate(reqs):
            if r.prompt_logprobs is None:
                continue
            g = pre.group_of[b]
            parts = (scored[shared[g]] if g in shared else ()) + (
                scored[own[b]] if b in own else ()
            )
            prompt_lps[b] = tuple(
                TokenLogprob(t.token, t.logprob, t.top[: r.prompt_logprobs]) for t in parts
            )
        if on_step is not None:
            for b, lps in enumerate(prompt_lps):
                if lps is not None:
                    on_step(b, PromptScored(lps))
        base = lm.model.base_model

        live = [b for b, r in enumerate(reqs) if r.max_new_tokens > 0]
        if not live:
            return _results(reqs, prompt_lps, new, finish)
        logits = head(torch.stack([pre.states(b)[-1] for b in live])).float()  # (R, V)
        cache, mask, last = pre.cache, pre.mask, pre.last
        if cache is not None:
            sel = torch.tensor(live, device=dev)
            if len(live) < len(reqs):
                cache.batch_select_indices(sel)
            mask, last = mask[sel], last[sel]
        while True:
            lp = F.log_softmax(logits, dim=-1)  # (R, V)
            chosen = _choose(logits, [reqs[b] for b in live], [generators[b] for b in live])
            k = max(reqs[b].top_logprobs for b in live)
            picked = _pick(lp, chosen, k)
            keep: list[int] = []
            for j, b in enumerate(live):
                r, step = reqs[b], picked[j]
                if step.token in stops_at:
                    finish[b] = "stop"
                    continue
                step = TokenLogprob(step.token, step.logprob, step.top[: r.top_logprobs])
                new[b].append(step)
                if on_step is not None:
                    on_step(b, step)
                if r.stop and _hits_stop(lm, new[b], r.stop):
                    finish[b] = "stop"
                elif len(new[b]) >= r.max_new_tokens:
                    finish[b] = "length"
                elif cancelled is not None and cancelled(b):
                    finish[b] = "stop"
                else:
                    keep.append(j)
            if not keep:
                break
            assert cache is not None  # a packed prefill serves rows of one new token at most
            if len(keep) < len(live):
                ksel = torch.tensor(keep, device=dev)
                cache.batch_select_indices(ksel)
                mask, last, chosen = mask[ksel], last[ksel], chosen[ksel]
                live = [live[j] for j in keep]
            mask = torch.cat([mask, mask.new_ones((len(live), 1))], dim=1)
            last = last + 1
            out = base(
                input_ids=chosen.unsqueeze(1),
                attention_mask=mask,
                position_ids=last.unsqueeze(1),
                past_key_values=cache,
                use_cache=True,
            )
            cache = out.past_key_values
            logits = head(out.last_hidden_state[:, -1]).float()
    return _results(reqs, prompt_lps, new, finish)


MIN_SHARED = 8
"""Rows of a batch whose prompts share at least this many leading tokens share one forward
pass over them (lm-eval's choices of one question share the question)."""


@dataclass
class _Prefill:
    """A batch's prompts after their forward pass: the KV cache, the attention mask over it
    (B, L), each row's last position (B,) (all three ``None`` after a packed pass, which keeps
    no cache), and each row's prompt states."""

    cache: Any
    mask: Any
    last: Any
    parts: list[list[Any]]
    """Per row, hidden-state tensors that, concatenated, hold one state per prompt token."""
    groups: list[tuple[int, list[int]]]
    """(shared prefix length, rows) of each group of rows run together."""
    group_of: list[int]
    """Each row's group."""

    def states(self, b: int) -> Any:
        """Row ``b``'s hidden states, one per prompt token: (n, H)."""
        import torch

        parts = self.parts[b]
        return parts[0] if len(parts) == 1 else torch.cat(parts)


def _prefill(lm: LocalLM, prompts: Sequence[tuple[int, ...]], one_step: bool = False) -> _Prefill:
    """Run the prompts through the model, computing shared leading tokens once.

    Without shared prefixes: one left-padded pass, positions counting real tokens only (as
    Hugging Face ``generate`` sets them). With them: the distinct prefixes first (right-padded),
    then every row's remaining tokens against its prefix's cache, positions continuing from the
    prefix, as :meth:`LocalLM.loglikelihood` runs a question's choices against its context.
    Padding is masked out wherever it sits, so both give the same states.

    ``one_step`` (no row decodes past its first new token, so no cache is needed): shared
    prefixes and their rows' remaining tokens go in one packed pass instead (:func:`_packed`),
    once that pass has been seen to agree with the two-pass one on this model.
    """
    import torch

    dev = lm.device
    pad = _pad_id(lm)
    base = lm.model.base_model
    groups = _share_prefixes(prompts)
    shares = any(len(rows) > 1 for _, rows in groups) and min(map(len, prompts)) >= 2
    verdict = _VERDICTS.setdefault(lm, {})
    if one_step and verdict.get("packed") is not False:
        cache = _PREFIX_CACHES.get(lm) if verdict.get("cached") is not False else None
        if cache is None and verdict.get("cached") is not False:
            cache = _PREFIX_CACHES[lm] = PrefixCache(PREFIX_CACHE_BYTES)
        packed, hits = _packed(lm, prompts, groups, cache)
        # Each way of running a batch is compared once with the two-pass one on this model
        # before it is trusted: a model whose attention ignores a 4-D mask, or whose cache
        # is not a plain per-layer one, falls back instead of scoring wrongly.
        unchecked = [
            k for k, used in (("packed", shares), ("cached", hits)) if used and k not in verdict
        ]
        if not unchecked:
            return packed
        plain = _prefill(lm, prompts)
        agrees = _same_states(lm, packed, plain)
        for k in unchecked:
            verdict[k] = agrees
        if agrees:
            return packed
        _PREFIX_CACHES.pop(lm, None)
        log.warning(
            "serve-model: this model's forward pass does not give the same states with a "
            "packed attention mask%s; scoring runs shared prefixes in two passes instead",
            " over cached prefixes" if "cached" in unchecked else "",
        )
        return plain
    if not shares:
        width = max(map(len, prompts))
        ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompts], device=dev)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=dev)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        out = base(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
        hidden = out.last_hidden_state  # (B, W, H)
        parts = [[hidden[b, width - len(p) :]] for b, p in enumerate(prompts)]
        alone = [(0, [b]) for b in range(len(prompts))]
        return _Prefill(
            out.past_key_values, mask, pos[:, -1], parts, alone, list(range(len(prompts)))
        )
    # Stage 1, the prefixes: (G, Lp), right-padded.
    lens = [n for n, _ in groups]
    lp_ = max(lens)
    first = [prompts[rows[0]] for _, rows in groups]
    ids = torch.tensor(
        [list(p[:n]) + [pad] * (lp_ - n) for p, n in zip(first, lens, strict=True)], device=dev
    )
    pmask = torch.tensor([[1] * n + [0] * (lp_ - n) for n in lens], device=dev)
    out = base(input_ids=ids, attention_mask=pmask, use_cache=True)
    h1 = out.last_hidden_state
    # Stage 2, every row's rest against its prefix: (B, Ts).
    group_of = [0] * len(prompts)
    for g, (_, rows) in enumerate(groups):
        for b in rows:
            group_of[b] = g
    rests = [list(p[lens[group_of[b]] :]) for b, p in enumerate(prompts)]
    ts = max(map(len, rests))
    sel = torch.tensor(group_of, device=dev)
    cache = out.past_key_values
    cache.batch_select_indices(sel)
    rids = torch.tensor([r + [pad] * (ts - len(r)) for r in rests], device=dev)
    rmask = torch.tensor([[1] * len(r) + [0] * (ts - len(r)) for r in rests], device=dev)
    start = torch.tensor([lens[g] for g in group_of], device=dev)
    pos = start.unsqueeze(1) + torch.arange(ts, device=dev).unsqueeze(0)
    mask = torch.cat([pmask[sel], rmask], dim=1)
    out2 = base(
        input_ids=rids, attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True
    )
    h2 = out2.last_hidden_state
    parts = [
        [h1[group_of[b], : lens[group_of[b]]], h2[b, : len(rests[b])]] for b in range(len(prompts))
    ]
    last = start + torch.tensor([len(r) - 1 for r in rests], device=dev)
    return _Prefill(out2.past_key_values, mask, last, parts, groups, group_of)


PREFIX_CACHE_BYTES = 128 * 2**20
"""Memory for prompts kept from earlier scoring batches (their keys, values and states)."""

_VERDICTS: weakref.WeakKeyDictionary[LocalLM, dict[str, bool]] = weakref.WeakKeyDictionary()
"""Per model: whether a packed pass ("packed") and one over cached prefixes ("cached") gave
the two-pass states; a way not yet compared is absent."""

_PREFIX_CACHES: weakref.WeakKeyDictionary[LocalLM, PrefixCache] = weakref.WeakKeyDictionary()


@dataclass
class _Kept:
    """A prompt scored before: per layer its keys and values (heads, n, d), its states (n, H)."""

    tokens: tuple[int, ...]
    keys: list[Any]
    values: list[Any]
    states: Any
    nbytes: int


class PrefixCache:
    """Prompts of earlier scoring batches, least recently used dropped first past ``budget``
    bytes.

    Concurrent clients split a question's choices over several batches; a later choice then
    runs only its own tokens against the question kept here, as if all had shared one batch.
    The keys and values of a causal model's first ``m`` tokens depend on those tokens only,
    so any kept prompt serves as the prefix of any prompt that starts with the same tokens.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self._entries: OrderedDict[tuple[int, ...], _Kept] = OrderedDict()
        self._by_start: dict[tuple[int, ...], list[tuple[int, ...]]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def longest(self, prompt: Sequence[int], limit: int) -> tuple[_Kept | None, int]:
        """The kept prompt sharing the most leading tokens with ``prompt`` (at most
        ``limit``, at least :data:`MIN_SHARED`), and how many; ``(None, 0)`` if none."""
        best, most = None, 0
        for key in self._by_start.get(tuple(prompt[:MIN_SHARED]), ()):
            n, top = MIN_SHARED, min(limit, len(key))
            if top < MIN_SHARED:
                continue
            while n < top and key[n] == prompt[n]:
                n += 1
            if n > most:
                best, most = self._entries[key], n
        if best is None or most < MIN_SHARED:
            return None, 0
        self._entries.move_to_end(best.tokens)
        return best, most

    def add(self, kept: _Kept) -> None:
        """Keep ``kept`` (a prompt kept already is only marked as used)."""
        if kept.tokens in self._entries:
            self._entries.move_to_end(kept.tokens)
            return
        if len(kept.tokens) < MIN_SHARED or kept.nbytes > self.budget:
            return
        self._entries[kept.tokens] = kept
        self._by_start.setdefault(kept.tokens[:MIN_SHARED], []).append(kept.tokens)
        self.used += kept.nbytes
        while self.used > self.budget:
            _, old = self._entries.popitem(last=False)
            self.used -= old.nbytes
            same = self._by_start[old.tokens[:MIN_SHARED]]
            same.remove(old.tokens)
            if not same:
                del self._by_start[old.tokens[:MIN_SHARED]]


def _packed(
    lm: LocalLM,
    prompts: Sequence[tuple[int, ...]],
    groups: Sequence[tuple[int, list[int]]],
    cache: PrefixCache | None,
) -> tuple[_Prefill, bool]:
    """One pass for the whole batch: each group's shared prefix, then each of its rows'
    remaining tokens, side by side in one sequence; ``(prefill, whether a kept prefix was
    used)``.

    A row's tokens see the prefix and the row's own earlier tokens, never another row's (a
    4-D attention mask), and their positions continue from the prefix, so every row gets the
    states a pass over its own prompt alone gives. A question's choices cost one pass over the
    question and one token or so each, as in :meth:`LocalLM.loglikelihood`. A group whose
    start is in ``cache`` runs only the rest, against the kept keys and values; each group's
    prefix (a lone row's whole prompt) is kept in turn. No KV cache is returned: the caller
    decodes no further than the prompts' next tokens.
    """
    import torch

    dev = lm.device
    pad = _pad_id(lm)
    hits: list[tuple[_Kept | None, int]] = []
    for n, rows in groups:
        hit = cache.longest(prompts[rows[0]], n) if cache is not None else (None, 0)
        hits.append(hit)
    ids_l: list[list[int]] = []
    pos_l: list[list[int]] = []
    seg_l: list[list[int]] = []  # -1: the prefix; b: row b's own tokens
    spans: dict[int, tuple[int, int, int]] = {}  # row -> (group, start, length) of its rest
    for g, ((n, rows), (_, m)) in enumerate(zip(groups, hits, strict=True)):
        ids, pos, seg = list(prompts[rows[0]][m:n]), list(range(m, n)), [-1] * (n - m)
        for b in rows:
            rest = prompts[b][n:]
            spans[b] = (g, len(ids), len(rest))
            ids += rest
            pos += range(n, n + len(rest))
            seg += [b] * len(rest)
        ids_l.append(ids)
        pos_l.append(pos)
        seg_l.append(seg)
    width = max(map(len, ids_l))
    past = max(m for _, m in hits)
    ids_t = torch.tensor([x + [pad] * (width - len(x)) for x in ids_l], device=dev)
    pos_t = torch.tensor([x + [0] * (width - len(x)) for x in pos_l], device=dev)
    seg_t = torch.tensor([x + [-2] * (width - len(x)) for x in seg_l], device=dev)  # -2: padding
    q, k = seg_t.unsqueeze(2), seg_t.unsqueeze(1)  # (G, W, 1), (G, 1, W)
    causal = torch.ones(width, width, dtype=torch.bool, device=dev).tril()
    allowed = causal & ((k == -1) | (k == q))
    allowed |= torch.eye(width, dtype=torch.bool, device=dev)  # padding sees itself: no NaN
    kv = None
    if past:
        kept_len = torch.tensor([m for _, m in hits], device=dev)
        seen = torch.arange(past, device=dev).unsqueeze(0) < kept_len.unsqueeze(1)  # (G, P)
        allowed = torch.cat([seen.unsqueeze(1).expand(-1, width, -1), allowed], dim=2)
        kv = _stack_kept(lm, hits, past)
    mask = allowed
    if getattr(lm.model.config, "_attn_implementation", None) != "sdpa":
        # Other attention code adds the mask to the scores; SDPA takes booleans (4x smaller).
        dtype = lm.model.dtype
        mask = torch.zeros(allowed.shape, dtype=dtype, device=dev)
        mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    out = lm.model.base_model(
        input_ids=ids_t,
        attention_mask=mask.unsqueeze(1),
        position_ids=pos_t,
        past_key_values=kv,
        use_cache=cache is not None,
    )
    hidden = out.last_hidden_state  # (G, W, H)
    parts = []
    group_of = []
    for b in range(len(prompts)):
        g, start, r = spans[b]
        kept, m = hits[g]
        n = groups[g][0]
        own = [hidden[g, : n - m], hidden[g, start : start + r]]
        parts.append(([kept.states[:m]] if kept is not None else []) + own)
        group_of.append(g)
    if cache is not None:
        _keep(lm, cache, out.past_key_values, hidden, prompts, groups, hits, past)
    prefill = _Prefill(None, None, None, parts, list(groups), group_of)
    return prefill, any(kept is not None for kept, _ in hits)


def _stack_kept(lm: LocalLM, hits: Sequence[tuple[_Kept | None, int]], past: int) -> Any:
    """The kept prefixes' keys and values as one cache: (G, heads, ``past``, d) per layer,
    zeros after each group's own length (masked out)."""
    from transformers import DynamicCache

    ref = next(kept for kept, _ in hits if kept is not None)
    layers = []
    for li in range(len(ref.keys)):
        pair = []
        for side in (ref.keys, ref.values):
            h, _, d = side[li].shape
            t = side[li].new_zeros((len(hits), h, past, d))
            for g, (kept, m) in enumerate(hits):
                if kept is not None:
                    src = kept.keys if side is ref.keys else kept.values
                    t[g, :, :m] = src[li][:, :m]
            pair.append(t)
        layers.append((pair[0], pair[1]))
    return DynamicCache(layers)


def _keep(
    lm: LocalLM,
    cache: PrefixCache,
    kv: Any,
    hidden: Any,
    prompts: Sequence[tuple[int, ...]],
    groups: Sequence[tuple[int, list[int]]],
    hits: Sequence[tuple[_Kept | None, int]],
    past: int,
) -> None:
    """Keep each group's prefix (a lone row: its whole prompt) for later batches."""
    import torch
    from transformers.cache_utils import DynamicLayer

    layers = getattr(kv, "layers", None)
    if not layers or any(type(x) is not DynamicLayer for x in layers):
        return  # sliding windows and other layouts: nothing reusable by position
    for g, ((n, rows), (kept, m)) in enumerate(zip(groups, hits, strict=True)):
        tokens = prompts[rows[0]][:n] if len(rows) > 1 else prompts[rows[0]]
        new = len(tokens) - m  # this pass's positions of them: past .. past + new
        keys, values = [], []
        for layer in layers:
            keys.append(torch.cat([layer.keys[g, :, :m], layer.keys[g, :, past : past + new]], 1))
            values.append(
                torch.cat([layer.values[g, :, :m], layer.values[g, :, past : past + new]], 1)
            )
        own = hidden[g, :new]
        states = torch.cat([kept.states[:m], own]) if kept is not None else own.clone()
        size = sum(t.numel() * t.element_size() for t in (*keys, *values, states))
        cache.add(_Kept(tuple(tokens), keys, values, states, size))


def _same_states(lm: LocalLM, a: _Prefill, b: _Prefill) -> bool:
    """Whether two prefills of the same prompts give the same next-token log-probabilities
    (within 1e-4 in 32-bit floats; half precision rounds more)."""
    import torch
    import torch.nn.functional as F

    head = lm.model.get_output_embeddings()
    tol = 1e-4 if lm.model.dtype in (torch.float32, torch.float64) else 5e-2
    for row in range(len(a.parts)):
        x = F.log_softmax(head(a.states(row)).float(), dim=-1)
        y = F.log_softmax(head(b.states(row)).float(), dim=-1)
        if x.shape != y.shape or not torch.allclose(x, y, atol=tol, rtol=0):
            return False
    return True


def _share_prefixes(prompts: Sequence[tuple[int, ...]]) -> list[tuple[int, list[int]]]:
    """Group rows by a shared leading run of tokens: (prefix length, rows) per group.

    Prompts are sorted, so rows sharing a start sit together. Two rows form a group when they
    share at least :data:`MIN_SHARED` tokens and half of the first; a row joins a larger group
    only when it shares the group's whole prefix (a question's choices share its context).
    Every row keeps at least one token after its prefix (its last state predicts the next
    token); a group of one takes all its tokens but the last as its prefix.
    """
    order = sorted(range(len(prompts)), key=lambda b: prompts[b])
    groups: list[tuple[int, list[int]]] = []
    for b in order:
        p = prompts[b]
        if groups:
            n, rows = groups[-1]
            head = prompts[rows[0]]
            shared = n if len(rows) > 1 else len(head) - 1
            common = 0
            limit = min(shared, len(p) - 1)
            while common < limit and p[common] == head[common]:
                common += 1
            # A pair sets the shared prefix; later rows join only if they share all of it.
            enough = common * 2 >= shared if len(rows) == 1 else common >= shared
            if common >= MIN_SHARED and enough:
                groups[-1] = (common, [*rows, b])
                continue
        groups.append((len(p) - 1, [b]))
    return groups


def _results(
    reqs: Sequence[SequenceRequest],
    prompt_lps: list[tuple[TokenLogprob, ...] | None],
    new: list[list[TokenLogprob]],
    finish: list[FinishReason],
) -> list[SequenceResult]:
    return [
        SequenceResult(
            prompt_lps[b], tuple(new[b]), finish[b] if reqs[b].max_new_tokens else "length"
        )
        for b in range(len(reqs))
    ]


def _generator(r: SequenceRequest, device: Any) -> Any:
    if r.temperature <= 0:
        return None
    import torch

    g = torch.Generator(device=device)
    g.manual_seed(r.seed if r.seed is not None else int.from_bytes(os.urandom(8), "little") >> 1)
    return g


def _choose(logits: Any, reqs: Sequence[SequenceRequest], gens: Sequence[Any]) -> Any:
    """Next token per row: argmax, or a sample at the row's temperature and top-p: (R,)."""
    import torch

    chosen = logits.argmax(dim=-1)
    for j, (r, g) in enumerate(zip(reqs, gens, strict=True)):
        if r.temperature <= 0:
            continue
        probs = torch.softmax(logits[j] / r.temperature, dim=-1)
        if r.top_p < 1.0:
            p, order = probs.sort(descending=True)
            # Keep the smallest prefix whose mass reaches top_p (the first token always stays).
            drop = (p.cumsum(0) - p) >= r.top_p
            p[drop] = 0.0
            probs = torch.zeros_like(probs).scatter(0, order, p)
        chosen[j] = torch.multinomial(probs, 1, generator=g)[0]
    return chosen


PICK_BLOCK = 512
"""Positions projected onto the vocabulary at a time when scoring prompts (bounds memory)."""


def _pick_many(
    head: Any, jobs: Sequence[tuple[Any, Sequence[int]]], k: int, device: Any
) -> list[tuple[TokenLogprob, ...]]:
    """:func:`_pick` for several (states (T, H), target ids (T,)) at once, in blocks."""
    import torch
    import torch.nn.functional as F

    if not jobs:
        return []
    states = torch.cat([s for s, _ in jobs])
    targets = torch.tensor([int(x) for _, t in jobs for x in t], device=device)
    flat: list[TokenLogprob] = []
    for s in range(0, len(targets), PICK_BLOCK):
        lp = F.log_softmax(head(states[s : s + PICK_BLOCK]).float(), dim=-1)
        flat += _pick(lp, targets[s : s + PICK_BLOCK], k)
    out, at = [], 0
    for _, t in jobs:
        out.append(tuple(flat[at : at + len(t)]))
        at += len(t)
    return out


def _pick(lp: Any, targets: Any, k: int) -> tuple[TokenLogprob, ...]:
    """Each target token's log-probability and its ``k`` best alternatives.

    ``lp`` (T, V) log-probabilities, ``targets`` (T,) token ids.
    """
    values = lp.gather(1, targets.unsqueeze(1)).squeeze(1).tolist()
    toks = targets.tolist()
    if k > 0:
        if k == 1:  # max is several times faster than topk(1) on CPU
            top_v, top_i = lp.max(dim=-1, keepdim=True)
        else:
            top_v, top_i = lp.topk(min(k, lp.shape[-1]), dim=-1)
        tv, ti = top_v.tolist(), top_i.tolist()
        return tuple(
            TokenLogprob(
                int(t), float(v), tuple(zip(map(int, ti[j]), map(float, tv[j]), strict=True))
            )
            for j, (t, v) in enumerate(zip(toks, values, strict=True))
        )
    return tuple(TokenLogprob(int(t), float(v)) for t, v in zip(toks, values, strict=True))


def _hits_stop(lm: LocalLM, tokens: Sequence[TokenLogprob], stop: Sequence[str]) -> bool:
    text = lm.decode([t.token for t in tokens])
    return any(s and s in text for s in stop)


@dataclass
class _Job:
    reqs: list[SequenceRequest]
    future: concurrent.futures.Future[list[SequenceResult]]
    on_step: StepCallback | None
    cancel: threading.Event


class BatchEngine:
    """A worker thread that runs the rows of concurrent requests together (see module doc)."""

    def __init__(self, lm: LocalLM, batch_size: int = 32, gather: float = GATHER_SECONDS) -> None:
        self.lm = lm
        self.batch_size = batch_size
        self.gather = gather
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._arriving = 0
        self._arriving_lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="serve-model-engine", daemon=True)
        self._thread.start()

    def expect(self, n: int = 1) -> None:
        """Announce ``n`` requests being read (``-n``: read, or dropped): while any is on its
        way, the worker waits for it (up to ``gather`` seconds) to run it in the same batch."""
        with self._arriving_lock:
            self._arriving += n

    def submit(
        self, reqs: list[SequenceRequest], on_step: StepCallback | None = None
    ) -> tuple[concurrent.futures.Future[list[SequenceResult]], threading.Event]:
        """Queue one request's rows; returns their future and an event that cancels them."""
        job = _Job(reqs, concurrent.futures.Future(), on_step, threading.Event())
        self._queue.put(job)
        return job.future, job.cancel

    def close(self) -> None:
        """Stop the worker once the queued work is done."""
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs = [job]
            rows = len(job.reqs)
            deadline = time.monotonic() + self.gather
            while rows < self.batch_size:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    # Wait only for requests already being read; none: run what we have.
                    if self._arriving <= 0 or time.monotonic() >= deadline:
                        break
                    try:
                        nxt = self._queue.get(timeout=0.0005)
                    except queue.Empty:
                        continue
                if nxt is None:
                    self._queue.put(None)  # finish this round, then stop
                    break
                jobs.append(nxt)
                rows += len(nxt.reqs)
            self._run(jobs)

    def _run(self, jobs: list[_Job]) -> None:
        jobs = [j for j in jobs if j.future.set_running_or_notify_cancel()]
        rows = [(j, i) for j in jobs for i in range(len(j.reqs))]
        rows.sort(key=lambda ji: -len(ji[0].reqs[ji[1]].prompt))  # little padding per batch
        results: dict[tuple[int, int], SequenceResult] = {}
        failed: dict[int, BaseException] = {}
        for s in range(0, len(rows), self.batch_size):
            chunk = [(j, i) for j, i in rows[s : s + self.batch_size] if id(j) not in failed]
            if not chunk:
                continue

            def step(
                b: int, tok: TokenLogprob | PromptScored, chunk: list[tuple[_Job, int]] = chunk
            ) -> None:
                j, i = chunk[b]
                if j.on_step is not None:
                    j.on_step(i, tok)

            try:
                out = run_batch(
                    self.lm,
                    [j.reqs[i] for j, i in chunk],
                    step,
                    lambda b, chunk=chunk: chunk[b][0].cancel.is_set(),  # type: ignore[misc]
                )
            except Exception as exc:  # a failed batch fails each of its requests
                for j, _ in chunk:
                    failed[id(j)] = exc
                continue
            for (j, i), res in zip(chunk, out, strict=True):
                results[id(j), i] = res
        for j in jobs:
            if id(j) in failed:
                j.future.set_exception(failed[id(j)])
            else:
                j.future.set_result([results[id(j), i] for i in range(len(j.reqs))])
