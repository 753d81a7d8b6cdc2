"""Requests of ``serve-model`` as engine rows, and the rows' results as OpenAI answers.

A validated request becomes a :class:`Job`: one :class:`SequenceRequest` per choice (``n`` per
prompt), checked against the context first. Its results become the JSON answer, or a stream of
server-sent events whose text is released as tokens arrive (held back while it could still turn
into a stop string or an incomplete character).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import random
import time
import weakref
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, chain
from typing import Any

from safescale._errors import UserError
from safescale.evals._lm import LocalLM
from safescale.evals._server_api import (
    MAX_ROWS,
    MAX_SEED,
    SAMPLING_EPS,
    ApiError,
    ChatRequest,
    CompletionRequest,
)
from safescale.evals._server_engine import (
    BatchEngine,
    Cancel,
    PromptScored,
    SequenceRequest,
    SequenceResult,
    TokenLogprob,
)

CHAT_MAX_TOKENS = 256
"""New tokens of a chat reply when the request sets none (the in-process provider's default),
at most what the context leaves."""

log = logging.getLogger("safescale.serve")


def dumps(obj: Any) -> bytes:
    """``obj`` as JSON bytes: orjson when installed (several times faster on answers with
    per-token log-probabilities), else the standard library. Both write floats as the
    shortest text that reads back to the same value."""
    try:
        import orjson
    except ImportError:
        return json.dumps(obj).encode()
    return orjson.dumps(obj)


@dataclass
class ServerState:
    """What every request handler of one server needs: the model, its name, the engine, the
    API key (``None``: none required), the body limit and the weights' sha256."""

    lm: LocalLM
    name: str
    engine: BatchEngine
    api_key: str | None
    max_body_bytes: int
    weights_sha256: str | None = None

    @property
    def fingerprint(self) -> str | None:
        """``system_fingerprint`` of every completion (the OpenAI API's name for "the backend
        configuration that answered"): :data:`FINGERPRINT_PREFIX` and the weights' sha256, so
        that a client can tell, answer by answer, which weights answered."""
        return None if self.weights_sha256 is None else FINGERPRINT_PREFIX + self.weights_sha256


FINGERPRINT_PREFIX = "weights-sha256:"
"""How ``serve-model``'s ``system_fingerprint`` starts; the weights' sha256 follows."""


# -- jobs: a request's rows and how its answer is shaped --------------------------------------


@dataclass
class Row:
    """One choice: its sequence request, and the text shaping of its answer."""

    seq: SequenceRequest
    index: int
    prompt_text: str
    echo: bool = False


@dataclass
class Job:
    """One HTTP request as engine rows, with what shapes its answer."""

    chat: bool
    req: CompletionRequest | ChatRequest
    rows: list[Row]
    logprobs: int | None
    """Completions: the ``logprobs`` value; chat: ``top_logprobs`` when logprobs is true."""
    prompt_tokens: int
    vllm_prompt_logprobs: bool = False
    id: str = field(default_factory=lambda: f"{random.getrandbits(96):024x}")  # not a secret
    created: int = field(default_factory=lambda: int(time.time()))


def _fits(state: ServerState, ids: Sequence[int], max_new: int, param: str) -> None:
    limit = state.lm.max_length
    if len(ids) + max_new > limit:
        log.warning(
            "refused a prompt of %d tokens (+%d new): over the context of %d",
            len(ids),
            max_new,
            limit,
        )
        raise ApiError(
            400,
            f"the prompt is {len(ids)} tokens and {max_new} new tokens were asked for: "
            f"{len(ids) + max_new} tokens, over the model's context of {limit} "
            "(serve-model --max-length); shorten the prompt or ask for fewer tokens",
            param,
            "context_length_exceeded",
        )


def _fits_text(state: ServerState, text: str, param: str) -> None:
    # A text far longer than any prompt the context holds is refused before it is tokenized
    # (tokenizing megabytes holds the event loop for seconds): no token is longer than the
    # tokenizer's longest, so such a text has more tokens than the context; the factor 4
    # leaves room for normalisation that shortens text.
    bound = 4 * state.lm.max_length * _longest_token(state.lm)
    if len(text) > bound:
        raise ApiError(
            400,
            f"the prompt is {len(text)} characters, far over the model's context of "
            f"{state.lm.max_length} tokens (serve-model --max-length); shorten it",
            param,
            "context_length_exceeded",
        )


_LONGEST: weakref.WeakKeyDictionary[LocalLM, int] = weakref.WeakKeyDictionary()


def _longest_token(lm: LocalLM) -> int:
    """Characters of the tokenizer's longest token, as stored (at least as long as its text)."""
    n = _LONGEST.get(lm)
    if n is None:
        vocab = lm.tokenizer.get_vocab()
        n = _LONGEST[lm] = max((len(t) for t in vocab), default=1) or 1
    return n


def _sequence(
    req: CompletionRequest | ChatRequest,
    ids: Sequence[int],
    max_new: int,
    choice: int,
    top_logprobs: int,
    prompt_logprobs: int | None,
) -> SequenceRequest:
    # Choice i of a seeded request samples with seed + i: n choices differ, and repeat exactly.
    temperature = req.temperature or 0.0
    return SequenceRequest(
        prompt=tuple(ids),
        max_new_tokens=max_new,
        temperature=temperature if temperature >= SAMPLING_EPS else 0.0,
        top_p=req.top_p if req.top_p is not None else 1.0,
        seed=None if req.seed is None else (req.seed + choice) % MAX_SEED,
        top_logprobs=top_logprobs,
        prompt_logprobs=prompt_logprobs,
        stop=req.stops,
    )


def completion_job(state: ServerState, req: CompletionRequest) -> Job:
    """The rows of a ``/v1/completions`` request: ``n`` per prompt; each prompt checked against
    the vocabulary and the context (:class:`ApiError` naming the prompt otherwise)."""
    lm = state.lm
    prompts: list[tuple[list[int], str | None]]
    p = req.prompt
    texts = [p] if isinstance(p, str) else [x for x in p if isinstance(x, str)]
    for i, x in enumerate(texts):
        _fits_text(state, x, "prompt" if isinstance(p, str) else f"prompt[{i}]")
    if isinstance(p, str):
        prompts = [(lm.encode(p), p)]
    elif p and isinstance(p[0], int):
        prompts = [([int(t) for t in p], None)]  # type: ignore[union-attr]
    else:
        prompts = [
            (lm.encode(x), x) if isinstance(x, str) else ([int(t) for t in x], None)  # type: ignore[union-attr]
            for x in p
        ]
    if len(prompts) * req.n > MAX_ROWS:
        raise ApiError(
            400,
            f"{len(prompts)} prompts x n {req.n} = {len(prompts) * req.n} sequences, over the "
            f"limit of {MAX_ROWS} a request; send fewer prompts or a smaller n",
            "prompt",
        )
    max_new = 16 if req.max_tokens is None else req.max_tokens
    k = req.logprobs
    echo_k = k if req.echo and k is not None else None
    rows = []
    for i, (ids, text) in enumerate(prompts):
        field_name = "prompt" if len(prompts) == 1 else f"prompt[{i}]"
        if not ids:
            raise ApiError(400, "is empty", field_name)
        try:
            lm.check_ids(ids, field_name)
        except UserError as exc:
            raise ApiError(400, str(exc).partition(": ")[2], field_name) from None
        _fits(state, ids, max_new, field_name)
        want = req.prompt_logprobs if req.prompt_logprobs is not None else echo_k
        for c in range(req.n):
            seq = _sequence(req, ids, max_new, c, k or 0, want)
            shown = text if text is not None else (lm.decode(ids) if req.echo else "")
            rows.append(Row(seq, i * req.n + c, shown, req.echo))
    return Job(
        chat=False,
        req=req,
        rows=rows,
        logprobs=k,
        prompt_tokens=sum(len(ids) for ids, _ in prompts),
        vllm_prompt_logprobs=req.prompt_logprobs is not None,
    )


def chat_job(state: ServerState, req: ChatRequest) -> Job:
    """The rows of a ``/v1/chat/completions`` request, its prompt built as in process."""
    lm = state.lm
    messages = [{"role": m.role, "content": m.content or ""} for m in req.messages]
    tok = lm.tokenizer
    # The same prompt the in-process provider builds: the chat template when the tokenizer has
    # one; else one message as is, a conversation as "role: text" lines.
    for i, m in enumerate(messages):
        _fits_text(state, m["content"], f"messages[{i}].content")
    if getattr(tok, "chat_template", None):
        try:
            text = str(
                tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            )
        except Exception as exc:  # a template may refuse a conversation (roles that repeat)
            raise ApiError(
                400, f"the model's chat template refused the conversation: {exc}", "messages"
            ) from None
    elif len(messages) == 1:
        text = messages[0]["content"]
    else:
        text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
    ids = lm.encode(text)
    if not ids:
        raise ApiError(400, "the conversation is empty", "messages")
    asked = req.max_completion_tokens or req.max_tokens
    field_name = "max_completion_tokens" if req.max_completion_tokens else "max_tokens"
    if asked is None:  # as many as the context leaves, up to the in-process default
        asked = max(1, min(CHAT_MAX_TOKENS, lm.max_length - len(ids)))
        field_name = "messages"
    _fits(state, ids, asked, field_name)
    k = (req.top_logprobs or 0) if req.logprobs else None
    rows = [Row(_sequence(req, ids, asked, c, k or 0, None), c, text) for c in range(req.n)]
    return Job(chat=True, req=req, rows=rows, logprobs=k, prompt_tokens=len(ids))


# -- answers ----------------------------------------------------------------------------------


class _Text:
    """A choice's generated text as tokens arrive: stop strings cut it; streaming holds back
    what could still turn into a stop string or an incomplete character."""

    def __init__(self, lm: LocalLM, stops: tuple[str, ...]) -> None:
        self.lm = lm
        self.stops = stops
        self.tokens: list[TokenLogprob] = []
        self.sent_chars = 0
        self.sent_tokens = 0
        self.stopped = False

    def add(self, tok: TokenLogprob) -> None:
        if not self.stopped:
            self.tokens.append(tok)

    def text(self) -> str:
        """The text so far, cut at the first stop string."""
        if len(self.tokens) == 1:  # one new token (scoring): its remembered text
            text = _tok(self.lm, self.tokens[0].token)
        else:
            text = self.lm.decode([t.token for t in self.tokens])
        cut = min((text.index(s) for s in self.stops if s and s in text), default=None)
        if cut is not None:
            self.stopped = True
            return text[:cut]
        return text

    def kept_tokens(self, text: str) -> list[TokenLogprob]:
        """The tokens that make up ``text`` (a stop string's tokens fall away)."""
        if not self.stopped:
            return self.tokens
        for m in range(len(self.tokens) + 1):
            if len(self.lm.decode([t.token for t in self.tokens[:m]])) >= len(text):
                return self.tokens[:m]
        return self.tokens

    def delta(self, final: bool) -> tuple[str, list[TokenLogprob]]:
        """New text and tokens since the last call (all of them when ``final``)."""
        text = self.text()
        ready = len(text)
        if not final and not self.stopped:
            hold = max((len(s) - 1 for s in self.stops), default=0)
            ready = max(self.sent_chars, len(text) - hold)
            while ready > self.sent_chars and text[ready - 1] == "\ufffd":
                ready -= 1  # a multi-byte character still arriving
        kept = self.kept_tokens(text) if final or self.stopped else self.tokens
        out = text[self.sent_chars : ready], list(kept[self.sent_tokens :])
        self.sent_chars = max(self.sent_chars, ready)
        self.sent_tokens = max(self.sent_tokens, len(kept))
        return out


_TOKEN_TEXT: weakref.WeakKeyDictionary[LocalLM, dict[int, str]] = weakref.WeakKeyDictionary()


def _tok(lm: LocalLM, token: int) -> str:
    """One token's text, remembered: answers with log-probabilities name every token, and a
    tokenizer's ``decode`` costs a Python round trip each time."""
    table = _TOKEN_TEXT.setdefault(lm, {})
    text = table.get(token)
    if text is None:
        text = table[token] = lm.decode([token])
    return text


def _names(lm: LocalLM, ids: Iterable[int]) -> dict[int, str]:
    """The model's table of token texts, holding at least ``ids`` (each decoded once)."""
    table = _TOKEN_TEXT.setdefault(lm, {})
    for t in set(ids).difference(table):
        table[t] = lm.decode([t])
    return table


def _completion_logprobs(
    lm: LocalLM,
    tokens: Sequence[TokenLogprob],
    prompt: tuple[int, ...] | None,
    prompt_lps: Sequence[TokenLogprob] | None,
    start: int,
) -> dict[str, Any]:
    scored = [*(prompt_lps or ()), *tokens] if prompt is not None else list(tokens)
    ids = [*(prompt or ()), *(t.token for t in tokens)]
    names = _names(lm, chain(ids, (i for t in scored for i, _ in t.top)))
    strings = [names[t] for t in ids]
    tops: list[dict[str, float] | None] = []
    add = tops.append
    for t in scored:
        # OpenAI's completions shape: the k best and the chosen token, by decoded text.
        if len(t.top) == 1:  # logprobs=1, lm-eval's setting: no dict comprehension
            ((i, v),) = t.top
            top = {names[i]: v}
        else:
            top = {names[i]: v for i, v in t.top}
        top.setdefault(names[t.token], t.logprob)
        add(top)
    values: list[float | None] = [t.logprob for t in scored]
    if prompt is not None:  # the first prompt token has no log-probability
        values.insert(0, None)
        tops.insert(0, None)
    return {
        "tokens": strings,
        "token_logprobs": values,
        "top_logprobs": tops,
        "text_offset": list(accumulate(map(len, strings[:-1]), initial=start)) if strings else [],
    }


def _chat_logprobs(lm: LocalLM, tokens: Sequence[TokenLogprob]) -> dict[str, Any]:
    def entry(t: int, lp: float) -> dict[str, Any]:
        s = _tok(lm, t)
        return {"token": s, "logprob": lp, "bytes": list(s.encode())}

    return {
        "content": [
            {**entry(t.token, t.logprob), "top_logprobs": [entry(i, v) for i, v in t.top]}
            for t in tokens
        ]
    }


def _vllm_prompt_logprobs(
    lm: LocalLM, prompt: tuple[int, ...], lps: Sequence[TokenLogprob]
) -> list[Any]:
    # vLLM's shape: None for the first token, then {id: {logprob, rank, decoded_token}} with the
    # prompt token first (readers such as Inspect's take the first entry), then the k best.
    out: list[Any] = [None]
    for tok_id, p in zip(prompt[1:], lps, strict=True):
        rank = 1 + sum(v > p.logprob for _, v in p.top)
        entry = {
            str(tok_id): {"logprob": p.logprob, "rank": rank, "decoded_token": _tok(lm, tok_id)}
        }
        for r, (t, v) in enumerate(p.top, start=1):
            entry.setdefault(str(t), {"logprob": v, "rank": r, "decoded_token": _tok(lm, t)})
        out.append(entry)
    return out


@dataclass
class Submitted:
    """A job in the engine: its future, what cancels it, and (streaming) its token events."""

    future: concurrent.futures.Future[list[SequenceResult]]
    cancel: Cancel
    events: asyncio.Queue[tuple[int, TokenLogprob | PromptScored] | None] | None = None


def submit(state: ServerState, job: Job) -> Submitted:
    """Queue the job's rows in the engine (call from the event loop); streaming jobs get their
    token events on an asyncio queue."""
    events: asyncio.Queue[tuple[int, TokenLogprob | PromptScored] | None] | None = None
    on_step = None
    if job.req.stream:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[int, TokenLogprob | PromptScored] | None] = asyncio.Queue()
        events = queue

        def on_step(i: int, ev: TokenLogprob | PromptScored) -> None:  # the engine's thread
            loop.call_soon_threadsafe(queue.put_nowait, (i, ev))

    future, cancel = state.engine.submit([r.seq for r in job.rows], on_step)
    return Submitted(future, cancel, events)


async def _wait(sub: Submitted) -> list[SequenceResult]:
    try:
        return await asyncio.wrap_future(sub.future)
    except asyncio.CancelledError:
        sub.cancel.set()  # the client went away: its rows stop at their next step
        raise


def _usage(job: Job, results: Sequence[SequenceResult]) -> dict[str, int]:
    new = sum(len(r.tokens) for r in results)
    return {
        "prompt_tokens": job.prompt_tokens,
        "completion_tokens": new,
        "total_tokens": job.prompt_tokens + new,
    }


async def answer(state: ServerState, job: Job, sub: Submitted) -> dict[str, Any]:
    """The whole JSON answer, once every row is done."""
    lm = state.lm
    results = await _wait(sub)
    choices = []
    for row, res in zip(job.rows, results, strict=True):
        shaped = _Text(lm, row.seq.stop)
        for t in res.tokens:
            shaped.add(t)
        text, tokens = shaped.delta(final=True)
        finish = "stop" if shaped.stopped else res.finish_reason
        if job.chat:
            choices.append(
                {
                    "index": row.index,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": _chat_logprobs(lm, tokens) if job.logprobs is not None else None,
                    "finish_reason": finish,
                }
            )
            continue
        choice: dict[str, Any] = {"index": row.index, "text": text, "finish_reason": finish}
        scores = res.prompt_logprobs
        if row.echo:
            choice["text"] = row.prompt_text + text
        if job.logprobs is not None:
            choice["logprobs"] = _completion_logprobs(
                lm,
                tokens,
                row.seq.prompt if row.echo else None,
                scores,
                0,
            )
        else:
            choice["logprobs"] = None
        if job.vllm_prompt_logprobs and scores is not None:
            choice["prompt_logprobs"] = _vllm_prompt_logprobs(lm, row.seq.prompt, scores)
        choices.append(choice)
    return {
        "id": ("chatcmpl-" if job.chat else "cmpl-") + job.id,
        "object": "chat.completion" if job.chat else "text_completion",
        "created": job.created,
        "model": state.name,
        "system_fingerprint": state.fingerprint,
        "choices": choices,
        "usage": _usage(job, results),
    }


async def stream_events(
    state: ServerState, job: Job, sub: Submitted, include_usage: bool
) -> AsyncIterator[bytes]:
    """Server-sent events: one chunk per released piece of text, then ``[DONE]``."""
    lm = state.lm
    events = sub.events
    assert events is not None
    task = asyncio.ensure_future(_wait(sub))
    task.add_done_callback(lambda _: events.put_nowait(None))
    texts = [_Text(lm, r.seq.stop) for r in job.rows]
    kind = "chat.completion.chunk" if job.chat else "text_completion"
    ident = ("chatcmpl-" if job.chat else "cmpl-") + job.id

    def chunk(
        i: int, text: str, tokens: list[TokenLogprob], finish: str | None, first: bool = False
    ) -> bytes:
        row = job.rows[i]
        if job.chat:
            delta: dict[str, Any] = {"content": text}
            if first:
                delta["role"] = "assistant"
            logprobs = _chat_logprobs(lm, tokens) if job.logprobs is not None else None
            choice: dict[str, Any] = {"index": row.index, "delta": delta, "logprobs": logprobs}
        else:
            logprobs = (
                _completion_logprobs(lm, tokens, None, None, texts[i].sent_chars - len(text))
                if job.logprobs is not None
                else None
            )
            choice = {"index": row.index, "text": text, "logprobs": logprobs}
        choice["finish_reason"] = finish
        return event([choice])

    def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        payload = {
            "id": ident,
            "object": kind,
            "created": job.created,
            "model": state.name,
            "system_fingerprint": state.fingerprint,
            "choices": choices,
            **extra,
        }
        return b"data: " + dumps(payload) + b"\n\n"

    def echo(row: Row, logprobs: dict[str, Any] | None) -> bytes:
        return event(
            [
                {
                    "index": row.index,
                    "text": row.prompt_text,
                    "logprobs": logprobs,
                    "finish_reason": None,
                }
            ]
        )

    try:
        for i, row in enumerate(job.rows):
            if job.chat:
                yield chunk(i, "", [], None, first=True)
            elif row.echo and row.seq.prompt_logprobs is None:
                yield echo(row, None)
        while (item := await events.get()) is not None:
            i, ev = item
            row = job.rows[i]
            if isinstance(ev, PromptScored):
                if row.echo and not job.chat:
                    lps = _completion_logprobs(lm, [], row.seq.prompt, ev.logprobs, 0)
                    yield echo(row, lps)
                continue
            texts[i].add(ev)
            text, tokens = texts[i].delta(final=False)
            if text or tokens:
                yield chunk(i, text, tokens, None)
        results = await task
        for i, res in enumerate(results):
            text, tokens = texts[i].delta(final=True)
            finish = "stop" if texts[i].stopped else res.finish_reason
            yield chunk(i, text, tokens, finish)
        if include_usage:
            yield event([], usage=_usage(job, results))
        yield b"data: [DONE]\n\n"
    finally:
        if not task.done():
            task.cancel()
