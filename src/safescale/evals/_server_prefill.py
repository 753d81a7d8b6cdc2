"""The prompt pass of ``serve-model``'s engine: a batch's prompts run once, rows that share a
start (a question's choices) sharing it, packed into one forward pass where the model honours a
4-D mask (a long batch spread over a few packed sequences), and prompts kept across batches
(:class:`PrefixCache`); each shortcut is checked once per model against the plain two-pass
result before it is trusted.

Also the model's special token ids (end of sequence, padding), looked up once per model.
"""

from __future__ import annotations

import heapq
import logging
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from safescale.evals._lm import LocalLM

log = logging.getLogger("safescale.serve")


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
    hits: list[tuple[_Kept | None, int]] = field(default_factory=list)
    """Per group, the kept prompt its start came from and how many tokens of it (none: empty)."""
    keeps: list[_Kept | None] = field(default_factory=list)
    """Per group, the kept prompt that now holds the group's prefix (a lone row: its prompt),
    where the engine leaves its scored log-probabilities for later batches (none: empty)."""

    def known(self, g: int, k: int) -> tuple[Any, ...]:
        """The log-probabilities of group ``g``'s prompt tokens ``1 .. m - 1`` (its ``m`` kept
        tokens but the last, whose successor may differ), as an earlier batch scored them with
        at least ``k`` alternatives; ``()`` when none were kept."""
        kept, m = self.hits[g] if self.hits else (None, 0)
        if kept is None or kept.scored is None or kept.scored[0] < k or m < 2:
            return ()
        have, lps = kept.scored
        return lps[: m - 1] if have == k else tuple(t.cut(k) for t in lps[: m - 1])

    def states(self, b: int) -> Any:
        """Row ``b``'s hidden states, one per prompt token: (n, H)."""
        import torch

        parts = self.parts[b]
        return parts[0] if len(parts) == 1 else torch.cat(parts)


def prefill(lm: LocalLM, prompts: Sequence[tuple[int, ...]], one_step: bool = False) -> _Prefill:
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
        packed, hits, spread = _packed(
            lm, prompts, groups, cache, spread=verdict.get("spread") is not False
        )
        # Each way of running a batch is compared once with the two-pass one on this model
        # before it is trusted: a model whose attention ignores a 4-D mask, or whose cache
        # is not a plain per-layer one, falls back instead of scoring wrongly.
        used = (("packed", shares), ("cached", hits), ("spread", spread))
        unchecked = [k for k, on in used if on and k not in verdict]
        if not unchecked:
            return packed
        plain = prefill(lm, prompts)
        agrees = _same_states(lm, packed, plain)
        for k in unchecked:
            verdict[k] = agrees
        if agrees:
            return packed
        if unchecked != ["spread"]:
            _PREFIX_CACHES.pop(lm, None)
        log.warning(
            "serve-model: this model's forward pass does not give the same states with %s; "
            "scoring goes without %s from now on",
            " and ".join(_WAYS[k] for k in unchecked),
            "them" if len(unchecked) > 1 else "it",
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
"""Per model: whether a packed pass ("packed"), one over cached prefixes ("cached") and one
spread over several sequences ("spread") gave the two-pass states; a way not yet compared is
absent."""

_PREFIX_CACHES: weakref.WeakKeyDictionary[LocalLM, PrefixCache] = weakref.WeakKeyDictionary()

_WAYS = {
    "packed": "one packed pass over shared prefixes",
    "cached": "prompts kept from earlier batches",
    "spread": "a packed pass spread over several sequences",
}


@dataclass
class _Kept:
    """A prompt scored before: per layer its keys and values (heads, n, d), its states (n, H)."""

    tokens: tuple[int, ...]
    keys: list[Any]
    values: list[Any]
    states: Any
    nbytes: int
    scored: tuple[int, tuple[Any, ...]] | None = None
    """``(k, log-probabilities)`` of tokens ``1 ..`` with ``k`` alternatives each
    (``TokenLogprob``), once a batch that asked for them has scored them."""


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

    def add(self, kept: _Kept) -> _Kept | None:
        """Keep ``kept`` (a prompt kept already is only marked as used); returns the entry that
        holds its tokens now (``None``: too short or too large to keep)."""
        if kept.tokens in self._entries:
            self._entries.move_to_end(kept.tokens)
            return self._entries[kept.tokens]
        if len(kept.tokens) < MIN_SHARED or kept.nbytes > self.budget:
            return None
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
        return kept


PACK_SEQUENCE_COST_TOKENS = 4
"""What one more sequence of a packed pass is taken to cost, in tokens: of two ways to spread
a batch whose estimated costs are that close, the one with fewer sequences."""


def _attention_share(lm: LocalLM) -> float:
    """The work of one (query, key) pair of attention against one token's pass through the rest
    of a layer, from the model's widths: about 4d multiply-adds against 2(4d^2 + 3df), taken
    1.2 times (the 4x256 model measured 5.9e-4 where its widths give 4.9e-4)."""
    cfg = lm.model.config
    d = int(getattr(cfg, "hidden_size", 0) or 256)
    f = int(getattr(cfg, "intermediate_size", 0) or 4 * d)
    return 1.2 * 2.0 / (4 * d + 3 * f)


def _spread(sizes: Sequence[int], past: Sequence[int], share: float) -> list[list[int]]:
    """Groups of a packed pass (``sizes`` tokens to run, ``past`` kept ones each) spread over
    sequences of whole groups, each padded to the longest: each group to the emptiest
    sequence, largest first, in the number of sequences whose estimated cost, sequences x
    length x (1 + ``share`` x keys each token sees), is least. One long sequence pays attention
    over all of it (a quarter of the pass for 16 questions); a sequence per group pays every
    short group's padding to the longest. Returns each sequence's groups."""
    order = sorted(range(len(sizes)), key=lambda g: (-sizes[g], g))
    best: tuple[float, list[list[int]]] | None = None
    for n in sorted({-(-len(sizes) // k) for k in range(1, len(sizes) + 1)}):
        heap = [(0, i) for i in range(n)]
        seqs: list[list[int]] = [[] for _ in range(n)]
        kept = [0] * n
        for g in order:
            fill, i = heapq.heappop(heap)
            seqs[i].append(g)
            kept[i] += past[g]
            heapq.heappush(heap, (fill + sizes[g], i))
        length = max(fill for fill, _ in heap)
        cost = n * (length * (1 + share * (max(kept) + length)) + PACK_SEQUENCE_COST_TOKENS)
        if best is None or cost < best[0]:
            best = (cost, [sorted(seq) for seq in seqs if seq])
    assert best is not None
    return best[1]


def _packed(
    lm: LocalLM,
    prompts: Sequence[tuple[int, ...]],
    groups: Sequence[tuple[int, list[int]]],
    cache: PrefixCache | None,
    spread: bool = True,
) -> tuple[_Prefill, bool, bool]:
    """One pass for the whole batch, each group's shared prefix followed by each of its rows'
    remaining tokens, packed without padding into one sequence (or, ``spread``, into a few
    sequences of whole groups, see :func:`_spread`); ``(prefill, whether a kept prefix was
    used, whether more than one sequence was)``.

    A row's tokens see its group's prefix and the row's own earlier tokens, never another
    row's or another group's (a 4-D attention mask), and their positions continue from the
    prefix, so every row gets the states a pass over its own prompt alone gives. A question's
    choices cost one pass over the question and one token or so each, as in
    :meth:`LocalLM.loglikelihood`. A group whose start is in ``cache`` runs only the rest,
    against the kept keys and values (laid side by side before its sequence, each group seeing
    its own); each group's prefix (a lone row's whole prompt) is kept in turn. Packed rather
    than a padded row per group: a batch that holds a question's last choices (their prefix
    kept) beside a new question is not padded to the longest group. Padding at the end of a
    shorter sequence sees only itself. No KV cache is returned: the caller decodes no further
    than the prompts' next tokens.
    """
    import torch

    dev = lm.device
    hits: list[tuple[_Kept | None, int]] = []
    for n, members in groups:
        hit = cache.longest(prompts[members[0]], n) if cache is not None else (None, 0)
        hits.append(hit)
    sizes = [
        n - m + sum(len(prompts[b]) - n for b in members)
        for (n, members), (_, m) in zip(groups, hits, strict=True)
    ]
    layout = (
        _spread(sizes, [m for _, m in hits], _attention_share(lm))
        if spread and len(groups) > 1
        else [list(range(len(groups)))]
    )
    where = [(0, 0)] * len(groups)  # group -> (sequence, where its own prefix tokens start)
    spans: dict[int, tuple[int, int]] = {}  # row -> (start, length) of its rest
    seqs: list[tuple[list[int], list[int], list[int], list[int], list[int]]] = []
    for r, members in enumerate(layout):
        ids: list[int] = []
        pos: list[int] = []
        seg: list[int] = []  # -1: a prefix; b: row b's own tokens
        grp: list[int] = []  # each token's group
        past: list[int] = []  # each kept token's group
        for g in members:
            (n, group_rows), (_, m) = groups[g], hits[g]
            past += [g] * m
            where[g] = (r, len(ids))
            ids += prompts[group_rows[0]][m:n]
            pos += range(m, n)
            seg += [-1] * (n - m)
            for b in group_rows:
                rest = prompts[b][n:]
                spans[b] = (len(ids), len(rest))
                ids += rest
                pos += range(n, n + len(rest))
                seg += [b] * len(rest)
            grp += [g] * (len(ids) - len(grp))
        seqs.append((ids, pos, seg, grp, past))
    width = max(len(x[0]) for x in seqs)
    kept_width = max(len(x[4]) for x in seqs)
    pad = _pad_id(lm)

    def padded(i: int, fill: int, to: int) -> Any:
        return torch.tensor([x[i] + [fill] * (to - len(x[i])) for x in seqs], device=dev)

    # Padding: group -1 and segment -3 (it sees earlier padding and itself, nothing real sees
    # it); kept padding: group -2 (seen by nothing).
    grp_t, seg_t = padded(3, -1, width), padded(2, -3, width)  # (S, T)
    q, k = seg_t.unsqueeze(2), seg_t.unsqueeze(1)  # (S, T, 1), (S, 1, T)
    allowed = torch.ones(width, width, dtype=torch.bool, device=dev).tril().unsqueeze(0)
    allowed = allowed & (grp_t.unsqueeze(2) == grp_t.unsqueeze(1))
    allowed &= (k == -1) | (k == q)
    kv = None
    if kept_width:
        seen = grp_t.unsqueeze(2) == padded(4, -2, kept_width).unsqueeze(1)  # (S, T, P)
        allowed = torch.cat([seen, allowed], dim=2)
        kv = _stack_kept(layout, hits, kept_width)
    mask = allowed
    if getattr(lm.model.config, "_attn_implementation", None) != "sdpa":
        # Other attention code adds the mask to the scores; SDPA takes booleans (4x smaller).
        dtype = lm.model.dtype
        mask = torch.zeros(allowed.shape, dtype=dtype, device=dev)
        mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    out = lm.model.base_model(
        input_ids=padded(0, pad, width),
        attention_mask=mask.unsqueeze(1),
        position_ids=padded(1, 0, width),
        past_key_values=kv,
        use_cache=cache is not None,
    )
    hidden = out.last_hidden_state  # (S, T, H)
    parts: list[list[Any]] = [[] for _ in prompts]
    group_of = [0] * len(prompts)
    for g, (n, group_rows) in enumerate(groups):
        (r, begin), (kept, m) = where[g], hits[g]
        for b in group_rows:
            start, length = spans[b]
            own = [hidden[r, begin : begin + n - m], hidden[r, start : start + length]]
            group_of[b] = g
            parts[b] = ([kept.states[:m]] if kept is not None else []) + own
    keeps: list[_Kept | None] = []
    if cache is not None:
        keeps = _keep(cache, out.past_key_values, hidden, prompts, groups, hits, where, kept_width)
    prefill = _Prefill(None, None, None, parts, list(groups), group_of, hits, keeps)
    return prefill, any(kept is not None for kept, _ in hits), len(layout) > 1


def _stack_kept(
    layout: Sequence[Sequence[int]], hits: Sequence[tuple[_Kept | None, int]], width: int
) -> Any:
    """The kept prefixes' keys and values as one cache: per sequence of ``layout``, its groups'
    kept tokens side by side, zeros after them up to ``width``: (S, heads, width, d) a layer."""
    from transformers import DynamicCache

    first = next(kept for kept, m in hits if kept is not None and m)
    layers = []
    for li in range(len(first.keys)):
        heads, _, d = first.keys[li].shape
        keys = first.keys[li].new_zeros((len(layout), heads, width, d))
        values = first.values[li].new_zeros((len(layout), heads, width, d))
        for r, members in enumerate(layout):
            at = 0
            for g in members:
                kept, m = hits[g]
                if kept is not None and m:
                    keys[r, :, at : at + m] = kept.keys[li][:, :m]
                    values[r, :, at : at + m] = kept.values[li][:, :m]
                    at += m
        layers.append((keys, values))
    return DynamicCache(layers)


def _keep(
    cache: PrefixCache,
    kv: Any,
    hidden: Any,
    prompts: Sequence[tuple[int, ...]],
    groups: Sequence[tuple[int, list[int]]],
    hits: Sequence[tuple[_Kept | None, int]],
    where: Sequence[tuple[int, int]],
    past: int,
) -> list[_Kept | None]:
    """Keep each group's prefix (a lone row: its whole prompt) for later batches; returns
    each group's entry in ``cache`` (``None``: not kept). ``where``: each group's sequence and
    the start of its tokens there, after ``past`` kept positions."""
    import torch
    from transformers.cache_utils import DynamicLayer

    layers = getattr(kv, "layers", None)
    if not layers or any(type(x) is not DynamicLayer for x in layers):
        return []  # sliding windows and other layouts: nothing reusable by position
    out: list[_Kept | None] = []
    for g, ((n, rows), (kept, m)) in enumerate(zip(groups, hits, strict=True)):
        tokens = prompts[rows[0]][:n] if len(rows) > 1 else prompts[rows[0]]
        new = len(tokens) - m  # this pass's positions of them: where[g] .. + new
        r, begin = where[g]
        at = past + begin
        keys, values = [], []
        for li, layer in enumerate(layers):
            k_new, v_new = layer.keys[r, :, at : at + new], layer.values[r, :, at : at + new]
            if kept is not None and m:
                k_new = torch.cat([kept.keys[li][:, :m], k_new], 1)
                v_new = torch.cat([kept.values[li][:, :m], v_new], 1)
            else:
                k_new, v_new = k_new.clone(), v_new.clone()
            keys.append(k_new)
            values.append(v_new)
        own = hidden[r, begin : begin + new]
        states = torch.cat([kept.states[:m], own]) if kept is not None else own.clone()
        size = sum(t.numel() * t.element_size() for t in (*keys, *values, states))
        out.append(cache.add(_Kept(tuple(tokens), keys, values, states, size)))
    return out


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
