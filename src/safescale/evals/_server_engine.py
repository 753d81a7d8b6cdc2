"""The engine behind ``serve-model``: batched prompt scoring and generation with log-probabilities.

Concurrent HTTP requests become :class:`SequenceRequest` rows. A worker thread gathers the rows
that are waiting, sorts them by prompt length and runs them in batches of at most ``batch_size``
rows: a forward pass over the prompts, which gives every prompt token's log-probability when a
request echoes its prompt and the first new token's distribution (rows whose prompts share a
start, such as a question's choices, run it once: ``_server_prefill.prefill``), then one
decoding step at a time for the rows still generating, against the KV cache. Rows that finish
(EOS, a stop string, ``max_new_tokens``) leave the batch, so a short request does not pay for a
long one's steps.

Log-probabilities are those of the model's own distribution (log-softmax of the raw logits,
before temperature or top-p), as OpenAI and vLLM report them. Greedy decoding picks the argmax
of the same logits as ``LocalLM.generate`` (Hugging Face ``generate``) does, so both give the
same tokens; :func:`run_batch` is tested against it.
"""

from __future__ import annotations

import concurrent.futures
import heapq
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from safescale.evals._lm import LocalLM
from safescale.evals._server_prefill import eos_ids, prefill

GATHER_SECONDS = 0.03
"""The longest the worker, once free, waits to fill a batch: for requests being read (see
:meth:`BatchEngine.arriving`) and for the next requests of the clients its last batch answered.
It never waits when none is on its way (a lone client, a request after a pause)."""

RETURN_WAIT_MIN = 0.01
"""The least the worker waits for the clients its last batch answered, once it has seen how
long they take (see :meth:`BatchEngine._return_wait`)."""

RETURNS_KEPT = 16
"""Batches whose clients' return times set that wait."""

FIRST_REQUEST_SECONDS = 0.005
"""How long a client that has just connected counts as a request on its way (see
:meth:`BatchEngine.arriving`): a client sends its request as soon as it is connected, so
clients that connect together (the start of an evaluation) have their first requests batched
together instead of the first run alone and the rest after it. A connection that sends nothing
holds a batch back this long at most."""

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

    def cut(self, k: int) -> TokenLogprob:
        """This with at most ``k`` alternatives."""
        return self if len(self.top) <= k else TokenLogprob(self.token, self.logprob, self.top[:k])


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
        pre = prefill(
            lm, [r.prompt for r in reqs], one_step=all(r.max_new_tokens <= 1 for r in reqs)
        )
        # A shared prefix's own tokens (1 .. n-1) are scored once for its group; every row then
        # scores the tokens after them. All in one pass over the stacked states, but for the
        # start of a prompt kept from an earlier batch, whose tokens were scored there.
        k = max((r.prompt_logprobs or 0) for r in reqs)
        jobs: list[tuple[Any, Any]] = []
        known: dict[int, tuple[TokenLogprob, ...]] = {}  # group -> its kept start's scores
        shared: dict[int, int] = {}  # group -> index in jobs
        for g, (n, rows) in enumerate(pre.groups):
            if any(reqs[b].prompt_logprobs is not None for b in rows):
                known[g] = pre.known(g, k)
            if len(rows) > 1 and g in known:
                h = len(known[g])
                shared[g] = len(jobs)
                jobs.append((pre.states(rows[0])[h : n - 1], reqs[rows[0]].prompt[h + 1 : n]))
        own: dict[int, int] = {}  # row -> index in jobs
        for b, r in enumerate(reqs):
            if r.prompt_logprobs is not None and len(r.prompt) >= 2:
                g = pre.group_of[b]
                skip = pre.groups[g][0] - 1 if g in shared else len(known[g])
                own[b] = len(jobs)
                jobs.append((pre.states(b)[skip:-1], r.prompt[skip + 1 :]))
        scored = _pick_many(head, jobs, k, dev)
        # What each group keeps for later batches: its prefix's scores (a lone row: its own).
        full = {g: known[g] + scored[j] for g, j in shared.items()}
        for b, r in enumerate(reqs):
            if r.prompt_logprobs is None:
                continue
            g = pre.group_of[b]
            parts = full[g] if g in shared else known[g]
            if b in own:
                parts += scored[own[b]]
                if g not in shared:
                    full[g] = parts
            keep_k = r.prompt_logprobs
            # As computed where no row of the batch asked for more alternatives.
            prompt_lps[b] = parts if keep_k >= k else tuple(t.cut(keep_k) for t in parts)
        for g, kept in enumerate(pre.keeps):
            if kept is not None and g in full and (kept.scored is None or kept.scored[0] < k):
                kept.scored = (k, full[g])
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
                step = step.cut(r.top_logprobs)
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
            drop[0] = False  # a top_p that rounds to 0 in float32 still keeps the best token
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
        # ``tolist`` gives Python ints (ids) and floats (log-probabilities) already.
        return tuple(
            TokenLogprob(t, v, tuple(zip(ids, vals, strict=True)))
            for t, v, ids, vals in zip(toks, values, top_i.tolist(), top_v.tolist(), strict=True)
        )
    return tuple(TokenLogprob(t, v) for t, v in zip(toks, values, strict=True))


def _hits_stop(lm: LocalLM, tokens: Sequence[TokenLogprob], stop: Sequence[str]) -> bool:
    text = lm.decode([t.token for t in tokens])
    return any(s and s in text for s in stop)


class Cancel:
    """What stops a request's rows at their next step once its client goes away: set once, read
    by the engine between steps. Nothing waits on it, so it is a plain flag (a
    ``threading.Event`` costs a lock and a condition for every request)."""

    __slots__ = ("_set",)

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


@dataclass(eq=False)
class _Job:
    reqs: list[SequenceRequest]
    future: concurrent.futures.Future[list[SequenceResult]]
    on_step: StepCallback | None
    cancel: Cancel
    queued: float
    """When it was submitted (``time.monotonic``)."""
    stepped: bool = False
    """Whether an event has been passed to ``on_step``."""

    def cancel_row(self, b: int) -> bool:
        """Whether the client went away (every row of the request stops)."""
        return self.cancel.is_set()


def _forward(job: _Job, rows: list[int]) -> StepCallback:
    """``on_step`` for ``job`` run alone on its ``rows`` (batch index -> the job's row)."""

    def step(b: int, ev: TokenLogprob | PromptScored) -> None:
        if job.on_step is not None:
            job.stepped = True
            job.on_step(rows[b], ev)

    return step


class BatchEngine:
    """A worker thread that runs the rows of concurrent requests together (see module doc)."""

    def __init__(self, lm: LocalLM, batch_size: int = 32, gather: float = GATHER_SECONDS) -> None:
        self.lm = lm
        self.batch_size = batch_size
        self.gather = gather
        # Queued jobs, requests being read and the closing flag, under one condition. The
        # worker is woken only when it can act (the first job of a batch arrives, or the batch
        # it gathers is complete): a wake-up per request would take the interpreter lock from
        # the event loop while it reads the next ones.
        self._cond = threading.Condition()
        self._jobs: deque[_Job] = deque()
        self._rows = 0  # rows of the queued jobs
        self._arrivals: dict[int, float] = {}  # requests on their way: token -> until when
        self._latest: list[tuple[float, int]] = []  # (-until, token): a heap, latest first
        self._next_arrival = 0
        self._first: dict[object, int] = {}  # new connections' first requests: peer -> token
        self._expected = 0  # jobs the gathering worker waits for (see _work)
        self._free_until = 0.0  # when the worker stops waiting for them
        self._free_at = 0.0  # when the worker last became free
        self._missing = 0  # answered clients not back since then
        self._returns: deque[float] = deque(maxlen=RETURNS_KEPT)  # how long they took
        self._closing = False
        self._thread = threading.Thread(target=self._work, name="serve-model-engine", daemon=True)
        self._thread.start()

    def arriving(self, within: float | None = None) -> int:
        """Announce a request being read (or, with ``within``, one expected within that many
        seconds: a client that has just connected); returns the token to pass to
        :meth:`arrived`. While one is on its way, the worker waits for it to run it in the same
        batch, but not past ``within`` (default ``gather``) seconds from now: a stalled upload
        or a connection that sends nothing is no longer waited for."""
        with self._cond:
            self._next_arrival += 1
            wait = self.gather if within is None else within
            until = time.monotonic() + wait
            self._arrivals[self._next_arrival] = until
            heapq.heappush(self._latest, (-until, self._next_arrival))
            return self._next_arrival

    def connected(self, peer: object) -> None:
        """A client has connected from ``peer``: its first request is on its way for
        :data:`FIRST_REQUEST_SECONDS` (call from the event loop, as :meth:`first_request`)."""
        if peer is not None:
            self._first[peer] = self.arriving(FIRST_REQUEST_SECONDS)

    def first_request(self, peer: object) -> None:
        """The first request from ``peer`` has been announced with :meth:`arriving` or
        answered (or its connection closed)."""
        token = self._first.pop(peer, None)
        if token is not None:
            self.arrived(token)

    def arrived(self, token: int) -> None:
        """The request announced as ``token`` was read (or dropped)."""
        with self._cond:
            self._arrivals.pop(token, None)
            self._waited_until()  # drops it from the heap's top (a queue kept full never looks)
            if self._complete():
                self._cond.notify()

    def submit(
        self, reqs: list[SequenceRequest], on_step: StepCallback | None = None
    ) -> tuple[concurrent.futures.Future[list[SequenceResult]], Cancel]:
        """Queue one request's rows; returns their future and the flag that cancels them."""
        job = _Job(reqs, concurrent.futures.Future(), on_step, Cancel(), time.monotonic())
        with self._cond:
            self._jobs.append(job)
            self._rows += len(reqs)
            if self._missing:
                self._missing -= 1
                if not self._missing:  # the last of the answered clients is back
                    self._returns.append(job.queued - self._free_at)
            if len(self._jobs) == 1 or self._complete():
                self._cond.notify()
        return job.future, job.cancel

    def close(self) -> None:
        """Stop the worker once the queued work is done."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout=30)

    def _complete(self) -> bool:
        """Whether the queued jobs make a batch to run now (call holding the condition)."""
        return bool(self._jobs) and self._wake_at(time.monotonic()) is None

    def _wake_at(self, now: float) -> float | None:
        """When to look again at the queued jobs (``None``: run them now): a full batch runs;
        else the worker waits for requests on their way (each until it is in or its own time
        is up) and for the clients its last batch answered (until ``gather`` seconds after it
        became free), and no job waits more than ``gather`` seconds in the queue."""
        if self._closing or self._rows >= self.batch_size:
            return None
        latest = self._jobs[0].queued + self.gather
        if now >= latest:
            return None
        until = self._waited_until()
        if until > now:
            return min(until, latest)
        if len(self._jobs) < self._expected and now < self._free_until:
            return self._free_until
        return None

    def _return_wait(self) -> float:
        """How long to wait for the clients the last batch answered: twice the longest any
        took to come back lately, at least :data:`RETURN_WAIT_MIN` and at most ``gather`` (all
        of it until one has). Clients that stop (the end of an evaluation, an agent thinking)
        then hold the last requests back for about that, not the whole window."""
        if not self._returns:
            return self.gather
        return min(self.gather, max(RETURN_WAIT_MIN, 2 * max(self._returns)))

    def _waited_until(self) -> float:
        """When the last announced request stops being waited for (0: none is announced).

        Read on every submit and arrival: the latest deadline is kept on a heap (those that
        have arrived are dropped as they reach its top), not found by a pass over thousands of
        connections that have sent nothing yet."""
        latest = self._latest
        while latest and latest[0][1] not in self._arrivals:
            heapq.heappop(latest)
        return -latest[0][0] if latest else 0.0

    def _work(self) -> None:
        # Requests answered by the last batch, plus those that arrived while it ran: how many
        # to expect now. Closed-loop clients (lm-eval, a benchmark, an agent loop) send their
        # next request as soon as the last is answered; without waiting for them, 8 clients
        # fall into two groups taking turns, each batch half full. A lone client (1 + 0)
        # never waits.
        while True:
            with self._cond:
                # The answered clients' next requests come within a few milliseconds (the
                # answer is written, read, and the next request sent and parsed): the wait
                # for them counts from when the worker became free, and lasts about twice as
                # long as they have been taking (_return_wait). A request on its way is
                # waited for until it is in or its own time is up.
                self._free_at = time.monotonic()
                self._missing = max(self._expected - len(self._jobs), 0)
                self._free_until = self._free_at + self._return_wait()
                while True:
                    if not self._jobs:
                        if self._closing:
                            return
                        self._cond.wait()
                        continue
                    now = time.monotonic()
                    wake = self._wake_at(now)
                    if wake is None:
                        break
                    self._cond.wait(wake - now)  # nothing signals when a wait is over
                jobs: list[_Job] = []
                rows = 0
                while self._jobs and rows < self.batch_size:
                    job = self._jobs.popleft()
                    jobs.append(job)
                    rows += len(job.reqs)
                self._rows -= rows
            settle = self._run(jobs)
            # Counted before the answers go out: once they do, the answered clients' next
            # requests may be queued before this thread takes the lock again (the event loop
            # can hold the interpreter for a switch interval), and counting them twice would
            # have the worker wait for requests that never come.
            with self._cond:
                self._expected = min(len(jobs) + len(self._jobs), self.batch_size)
            settle()

    def _run(self, jobs: list[_Job]) -> Callable[[], None]:
        """Run the jobs' rows; returns the call that hands each job its results."""
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
                    j.stepped = True
                    j.on_step(i, tok)

            try:
                out = run_batch(
                    self.lm,
                    [j.reqs[i] for j, i in chunk],
                    step,
                    lambda b, chunk=chunk: chunk[b][0].cancel.is_set(),  # type: ignore[misc]
                )
            except Exception as exc:
                # One request's rows must not fail the others batched with it: each request
                # is run again alone, and only those that fail alone fail. A request that ran
                # alone is not run again, nor a streaming one that has had events (they would
                # be repeated).
                out = None
                failure = exc
            if out is not None:
                for (j, i), res in zip(chunk, out, strict=True):
                    results[id(j), i] = res
                continue
            together = list(dict.fromkeys(j for j, _ in chunk))
            for j in together:
                mine = [i for jj, i in chunk if jj is j]
                if len(together) == 1 or (j.on_step is not None and j.stepped):
                    failed[id(j)] = failure  # alone already, or its events already sent
                    continue
                try:
                    alone = run_batch(
                        self.lm, [j.reqs[i] for i in mine], _forward(j, mine), j.cancel_row
                    )
                except Exception as exc:
                    failed[id(j)] = exc
                    continue
                for i, res in zip(mine, alone, strict=True):
                    results[id(j), i] = res

        def settle() -> None:
            for j in jobs:
                if id(j) in failed:
                    j.future.set_exception(failed[id(j)])
                else:
                    j.future.set_result([results[id(j), i] for i in range(len(j.reqs))])

        return settle
