"""``safescale serve-model``: a local checkpoint behind an OpenAI-compatible HTTP API.

A Starlette application under uvicorn (asyncio, one process), loopback by default:

* ``GET /v1/models``;
* ``POST /v1/completions``: a text or token-id prompt (or a list of them), ``n`` choices each,
  ``stream`` (server-sent events), ``stop``, ``seed``; ``logprobs=k`` gives every returned
  token's log-probability and its ``k`` most likely alternatives (the chosen token always among
  them), as OpenAI's completions API defines it; with ``echo`` the prompt comes back first,
  its first token's log-probability ``null``, so ``echo`` + ``max_tokens=1`` (how
  lm-evaluation-harness's ``local-completions`` scores) returns every prompt token and then the
  new one. vLLM's ``prompt_logprobs`` is answered in vLLM's shape (Inspect's
  ``openai-api-completions`` and ``vllm-completions`` send it);
* ``POST /v1/chat/completions``: ``logprobs`` / ``top_logprobs``, ``n``, ``stream``.

A prompt that, with ``max_tokens``, does not fit the context (``--max-length``, default the
model's) is refused with 400; nothing is cut. A malformed request gets a 4xx naming the field;
bodies over ``max_body_bytes`` get 413; with an API key, requests without
``Authorization: Bearer KEY`` get 401. An omitted ``temperature`` means greedy decoding, as in
the in-process provider (OpenAI's default is 1).

Concurrent requests are batched by :class:`~safescale.evals._server_engine.BatchEngine`; the
socket listens with a large backlog so that bursts of connections wait rather than fail.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import hmac
import json
import logging
import random
import socket
import threading
import time
import weakref
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from safescale._errors import Problem, UserError
from safescale.evals._lm import LocalLM
from safescale.evals._server_api import (
    ApiError,
    ChatRequest,
    CompletionRequest,
    parse,
)
from safescale.evals._server_engine import (
    BatchEngine,
    PromptScored,
    SequenceRequest,
    SequenceResult,
    TokenLogprob,
)

API_VERSION = "v1"
MAX_BODY_BYTES = 16 * 2**20
"""Default request body limit (16 MiB: a full 128k-token prompt as token ids fits)."""
BACKLOG = 4096
"""Listen backlog: connections the kernel queues while the server is busy (capped by
``net.core.somaxconn``)."""
CHAT_MAX_TOKENS = 256
"""New tokens of a chat reply when the request sets none (the in-process provider's default),
at most what the context leaves."""

log = logging.getLogger("safescale.serve")


class ModelServer:
    """Serves one loaded :class:`LocalLM` on ``host:port`` (port 0: any free port).

    The port is bound on construction, so a busy port is a :class:`UserError` before anything
    is served.
    """

    def __init__(
        self,
        lm: LocalLM,
        name: str,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        api_key: str | None = None,
        batch_size: int | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        backlog: int = BACKLOG,
        sock: socket.socket | None = None,
    ) -> None:
        import uvicorn

        self._sock = sock if sock is not None else bind_socket(host, port, backlog)
        self.lm = lm
        self.name = name
        self.engine = BatchEngine(lm, batch_size or lm.config.batch_size)
        self.app = build_app(_State(lm, name, self.engine, api_key or None, max_body_bytes))
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            backlog=backlog,
            timeout_keep_alive=30,
            http=_http_protocol(),
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @staticmethod
    def bind(host: str = "127.0.0.1", port: int = 8000, backlog: int = BACKLOG) -> socket.socket:
        """Listen on ``host:port`` now, before a model is loaded (pass it back as ``sock``); a
        busy port is a one-line :class:`UserError`."""
        return bind_socket(host, port, backlog)

    @property
    def base_url(self) -> str:
        """``http://host:port/v1``."""
        host, port = self._sock.getsockname()[:2]
        host = f"[{host}]" if ":" in str(host) else str(host)
        return f"http://{host}:{port}/{API_VERSION}"

    def start(self) -> ModelServer:
        """Serve in a background thread (for tests and embedding); returns once listening."""
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started and self._thread.is_alive():
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start within 30 s")
            time.sleep(0.01)
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (Ctrl-C or SIGTERM)."""
        try:
            self._server.run(sockets=[self._sock])
        finally:
            self._shutdown()

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._shutdown()

    def _shutdown(self) -> None:
        self.engine.close()
        self._sock.close()


def bind_socket(host: str, port: int, backlog: int = BACKLOG) -> socket.socket:
    """A listening TCP socket on ``host:port``; a busy port is a one-line :class:`UserError`."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise UserError(
            Problem(f"cannot resolve {host!r}: {exc.strerror}", field="--host")
        ) from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UserError(
                Problem(
                    f"port {port} on {host} is already in use; stop what holds it or choose "
                    "another --port",
                    field="--port",
                )
            ) from None
        raise UserError(
            Problem(f"cannot listen on {host}:{port}: {exc.strerror}", field="--host")
        ) from None
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def _http_protocol() -> Any:
    """uvicorn's h11 protocol, answering a malformed request (``Content-Length: abc``) with a
    JSON 400 that says what was wrong, instead of a bare text line."""
    import sys

    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Protocol(H11Protocol):  # type: ignore[misc]
        def send_400_response(self, msg: str) -> None:
            # Called inside uvicorn's `except h11.RemoteProtocolError`: the error says what.
            exc = sys.exc_info()[1]
            detail = str(exc) if exc is not None else msg
            param = "Content-Length" if "content-length" in detail.lower() else None
            body = json.dumps(ApiError(400, f"malformed HTTP request ({detail})", param).body())
            headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
            for event in (
                h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                h11.Data(data=body.encode()),
                h11.EndOfMessage(),
            ):
                self.transport.write(self.conn.send(event))
            self.transport.close()

    return Protocol


@dataclass
class _State:
    lm: LocalLM
    name: str
    engine: BatchEngine
    api_key: str | None
    max_body_bytes: int


def build_app(state: _State) -> Any:
    """The Starlette application for ``state``."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    def error(exc: ApiError) -> Response:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    def authorize(request: Request) -> None:
        if state.api_key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), state.api_key.encode()
        ):
            raise ApiError(
                401,
                "missing or wrong API key; send Authorization: Bearer KEY",
                code="invalid_api_key",
            )

    async def body(request: Request) -> Any:
        length = request.headers.get("content-length")
        if length is not None:
            if not length.strip().isdigit():
                raise ApiError(400, "is not a number of bytes", "Content-Length")
            if int(length) > state.max_body_bytes:
                raise ApiError(
                    413,
                    f"{int(length)} bytes is over the limit of {state.max_body_bytes}",
                    "Content-Length",
                )
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > state.max_body_bytes:
                raise ApiError(
                    413, f"the request body is over the limit of {state.max_body_bytes} bytes"
                )
            chunks.append(chunk)
        try:
            return json.loads(b"".join(chunks) or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"the request body is not valid JSON ({exc})") from None

    def check_model(name: str | None) -> None:
        if name and name != state.name:
            raise ApiError(
                404, f"this server serves {state.name!r}, not {name!r}", "model", "model_not_found"
            )

    async def models(request: Request) -> Response:
        try:
            authorize(request)
        except ApiError as exc:
            return error(exc)
        card = {"id": state.name, "object": "model", "created": 0, "owned_by": "safescale"}
        card["max_model_len"] = state.lm.max_length
        return JSONResponse({"object": "list", "data": [card]})

    async def completions(request: Request) -> Response:
        state.engine.expect()  # the engine may wait for this one to batch it with others
        try:
            authorize(request)
            req: CompletionRequest = parse(CompletionRequest, await body(request))
            check_model(req.model)
            job = _completion_job(state, req)
            submitted = _submit(state, job)
        except ApiError as exc:
            return error(exc)
        finally:
            state.engine.expect(-1)
        if req.stream:
            return StreamingResponse(
                _stream(state, job, submitted, req.include_usage), media_type="text/event-stream"
            )
        return JSONResponse(await _answer(state, job, submitted))

    async def chat(request: Request) -> Response:
        state.engine.expect()  # the engine may wait for this one to batch it with others
        try:
            authorize(request)
            req: ChatRequest = parse(ChatRequest, await body(request))
            check_model(req.model)
            job = _chat_job(state, req)
            submitted = _submit(state, job)
        except ApiError as exc:
            return error(exc)
        finally:
            state.engine.expect(-1)
        if req.stream:
            return StreamingResponse(
                _stream(state, job, submitted, req.include_usage), media_type="text/event-stream"
            )
        return JSONResponse(await _answer(state, job, submitted))

    async def health(request: Request) -> Response:
        return Response(status_code=200)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error(ApiError(exc.status_code, str(exc.detail)))

    async def server_error(request: Request, exc: Exception) -> Response:
        # A failure in the model (out of memory, a device error): the client gets JSON too.
        log.error("request failed: %s: %s", type(exc).__name__, exc)
        return error(ApiError(500, f"the model failed: {type(exc).__name__}: {exc}"))

    return Starlette(
        routes=[
            Route(f"/{API_VERSION}/models", models, methods=["GET"]),
            Route(f"/{API_VERSION}/completions", completions, methods=["POST"]),
            Route(f"/{API_VERSION}/chat/completions", chat, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )


# -- jobs: a request's rows and how its answer is shaped --------------------------------------


@dataclass
class _Row:
    """One choice: its sequence request, and the text shaping of its answer."""

    seq: SequenceRequest
    index: int
    prompt_text: str
    echo: bool = False


@dataclass
class _Job:
    chat: bool
    req: CompletionRequest | ChatRequest
    rows: list[_Row]
    logprobs: int | None
    """Completions: the ``logprobs`` value; chat: ``top_logprobs`` when logprobs is true."""
    prompt_tokens: int
    vllm_prompt_logprobs: bool = False
    id: str = field(default_factory=lambda: f"{random.getrandbits(96):024x}")  # not a secret
    created: int = field(default_factory=lambda: int(time.time()))


def _fits(state: _State, ids: Sequence[int], max_new: int, param: str) -> None:
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


def _completion_job(state: _State, req: CompletionRequest) -> _Job:
    lm = state.lm
    prompts: list[tuple[list[int], str | None]]
    p = req.prompt
    if isinstance(p, str):
        prompts = [(lm.encode(p), p)]
    elif p and isinstance(p[0], int):
        prompts = [([int(t) for t in p], None)]  # type: ignore[union-attr]
    else:
        prompts = [
            (lm.encode(x), x) if isinstance(x, str) else ([int(t) for t in x], None)  # type: ignore[union-attr]
            for x in p
        ]
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
            seq = SequenceRequest(
                prompt=tuple(ids),
                max_new_tokens=max_new,
                temperature=req.temperature or 0.0,
                top_p=req.top_p if req.top_p is not None else 1.0,
                seed=None if req.seed is None else req.seed + c,
                top_logprobs=k or 0,
                prompt_logprobs=want,
                stop=req.stops,
            )
            shown = text if text is not None else (lm.decode(ids) if req.echo else "")
            rows.append(_Row(seq, i * req.n + c, shown, req.echo))
    return _Job(
        chat=False,
        req=req,
        rows=rows,
        logprobs=k,
        prompt_tokens=sum(len(ids) for ids, _ in prompts),
        vllm_prompt_logprobs=req.prompt_logprobs is not None,
    )


def _chat_job(state: _State, req: ChatRequest) -> _Job:
    lm = state.lm
    messages = [{"role": m.role, "content": m.content or ""} for m in req.messages]
    tok = lm.tokenizer
    # The same prompt the in-process provider builds: the chat template when the tokenizer has
    # one; else one message as is, a conversation as "role: text" lines.
    if getattr(tok, "chat_template", None):
        text = str(tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
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
    rows = [
        _Row(
            SequenceRequest(
                prompt=tuple(ids),
                max_new_tokens=asked,
                temperature=req.temperature or 0.0,
                top_p=req.top_p if req.top_p is not None else 1.0,
                seed=None if req.seed is None else req.seed + c,
                top_logprobs=k or 0,
                stop=req.stops,
            ),
            c,
            text,
        )
        for c in range(req.n)
    ]
    return _Job(chat=True, req=req, rows=rows, logprobs=k, prompt_tokens=len(ids))


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


def _top(lm: LocalLM, tok: TokenLogprob) -> dict[str, float]:
    # OpenAI's completions shape: the k best and the chosen token, by decoded text.
    out = {_tok(lm, t): lp for t, lp in tok.top}
    out.setdefault(_tok(lm, tok.token), tok.logprob)
    return out


def _completion_logprobs(
    lm: LocalLM,
    tokens: Sequence[TokenLogprob],
    prompt: tuple[int, ...] | None,
    prompt_lps: Sequence[TokenLogprob] | None,
    start: int,
) -> dict[str, Any]:
    strings: list[str] = []
    values: list[float | None] = []
    tops: list[dict[str, float] | None] = []
    if prompt is not None:
        strings += [_tok(lm, t) for t in prompt]
        values.append(None)
        tops.append(None)
        for p in prompt_lps or ():
            values.append(p.logprob)
            tops.append(_top(lm, p))
    for t in tokens:
        strings.append(_tok(lm, t.token))
        values.append(t.logprob)
        tops.append(_top(lm, t))
    offsets, at = [], start
    for s in strings:
        offsets.append(at)
        at += len(s)
    return {
        "tokens": strings,
        "token_logprobs": values,
        "top_logprobs": tops,
        "text_offset": offsets,
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
class _Submitted:
    """A job in the engine: its future, what cancels it, and (streaming) its token events."""

    future: concurrent.futures.Future[list[SequenceResult]]
    cancel: threading.Event
    events: asyncio.Queue[tuple[int, TokenLogprob | PromptScored] | None] | None = None


def _submit(state: _State, job: _Job) -> _Submitted:
    events: asyncio.Queue[tuple[int, TokenLogprob | PromptScored] | None] | None = None
    on_step = None
    if job.req.stream:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[int, TokenLogprob | PromptScored] | None] = asyncio.Queue()
        events = queue

        def on_step(i: int, ev: TokenLogprob | PromptScored) -> None:  # the engine's thread
            loop.call_soon_threadsafe(queue.put_nowait, (i, ev))

    future, cancel = state.engine.submit([r.seq for r in job.rows], on_step)
    return _Submitted(future, cancel, events)


async def _wait(sub: _Submitted) -> list[SequenceResult]:
    try:
        return await asyncio.wrap_future(sub.future)
    except asyncio.CancelledError:
        sub.cancel.set()  # the client went away: its rows stop at their next step
        raise


def _usage(job: _Job, results: Sequence[SequenceResult]) -> dict[str, int]:
    new = sum(len(r.tokens) for r in results)
    return {
        "prompt_tokens": job.prompt_tokens,
        "completion_tokens": new,
        "total_tokens": job.prompt_tokens + new,
    }


async def _answer(state: _State, job: _Job, sub: _Submitted) -> dict[str, Any]:
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
        "choices": choices,
        "usage": _usage(job, results),
    }


async def _stream(
    state: _State, job: _Job, sub: _Submitted, include_usage: bool
) -> AsyncIterator[str]:
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
    ) -> str:
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

    def event(choices: list[dict[str, Any]], **extra: Any) -> str:
        payload = {
            "id": ident,
            "object": kind,
            "created": job.created,
            "model": state.name,
            "choices": choices,
            **extra,
        }
        return f"data: {json.dumps(payload)}\n\n"

    def echo(row: _Row, logprobs: dict[str, Any] | None) -> str:
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
        yield "data: [DONE]\n\n"
    finally:
        if not task.done():
            task.cancel()
