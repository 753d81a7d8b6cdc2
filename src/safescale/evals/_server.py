"""``safescale serve-model``: a local checkpoint behind an OpenAI-compatible HTTP API.

A Starlette application under uvicorn (asyncio, one process), loopback by default:

* ``GET /v1/models``: the served name, with ``max_model_len``, ``root`` (the weights folder's
  name) and ``weights_sha256`` (the weights' identity, as
  :func:`~safescale.evals.model_dir_sha256` computes it for the folder), so that a client
  records evidence about the endpoint under the same model as about the folder (see
  :mod:`safescale.evals._identity`);
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
import errno
import gc
import hmac
import json
import logging
import socket
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any, Literal

from safescale._errors import Problem, UserError
from safescale.evals._lm import LocalLM
from safescale.evals._server_api import (
    ApiError,
    ChatRequest,
    CompletionRequest,
    parse,
)
from safescale.evals._server_engine import BatchEngine
from safescale.evals._server_jobs import (
    ServerState,
    answer,
    chat_job,
    completion_job,
    dumps,
    stream_events,
    submit,
)

API_VERSION = "v1"
MAX_BODY_BYTES = 16 * 2**20
"""Default request body limit (16 MiB: a full 128k-token prompt as token ids fits)."""
BACKLOG = 4096
"""Listen backlog: connections the kernel queues while the server is busy (capped by
``net.core.somaxconn``)."""

HttpParser = Literal["auto", "httptools", "h11"]
"""The HTTP/1.1 parser: ``httptools`` (C, uvicorn's fast one) when installed, else ``h11``."""

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
        weights_sha256: str | None = None,
        http: HttpParser = "auto",
    ) -> None:
        import uvicorn

        from safescale.evals._evidence import model_dir_sha256

        self._sock = sock if sock is not None else bind_socket(host, port, backlog)
        self.lm = lm
        self.name = name
        # The weights' identity, reported to clients: hashed here unless the caller has it.
        self.weights_sha256 = weights_sha256 or model_dir_sha256(lm.config.path)
        self.engine = BatchEngine(lm, batch_size or lm.config.batch_size)
        self.app = build_app(
            ServerState(lm, name, self.engine, api_key or None, max_body_bytes, self.weights_sha256)
        )
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            backlog=backlog,
            timeout_keep_alive=30,
            # Nothing here reads the client's address or scheme: no X-Forwarded-* rewriting
            # (a middleware layer on every request).
            proxy_headers=False,
            http=_http_protocol(http, self.engine),
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
        """Serve in this thread until interrupted (Ctrl-C or SIGTERM).

        The process is the server's own: what is loaded by now (the model, its tokenizer, the
        libraries: about half a million objects) lives as long as it does, so it is moved out
        of the cycle collector's reach. A full collection then no longer walks it (0.26 s on
        the benchmark's 4-layer model, a pause every request in flight would wait out).
        """
        gc.freeze()
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


def _http_protocol(parser: HttpParser = "auto", engine: BatchEngine | None = None) -> Any:
    """uvicorn's protocol for ``parser`` (``auto``: httptools when it is installed, else h11),
    answering a malformed request (``Content-Length: abc``) with a JSON 400 that says what was
    wrong, instead of a bare text line; a new connection's first request is announced to
    ``engine`` as on its way (:meth:`~safescale.evals._server_engine.BatchEngine.connected`)."""
    if parser != "h11":
        try:
            import httptools  # noqa: F401
        except ImportError:
            if parser == "httptools":
                raise UserError(
                    Problem(
                        "the httptools parser is not installed; pip install httptools, or use "
                        "the h11 parser",
                        field="--http",
                    )
                ) from None
        else:
            return _httptools_protocol(engine)
    return _h11_protocol(engine)


REQUEST_READ_SECONDS = 30.0
"""Longest a request may take to arrive, from its first byte (or the connection) to its last:
a client that stalls is answered 408 and disconnected, so that stalled connections cannot
pile up (each holds a file descriptor)."""


MAX_CONNECTIONS = 4096
"""Open connections beyond which a new one is answered 503 and closed at once: each holds a
file descriptor, and a flood of idle ones would otherwise leave none for real clients."""


def _closing_response(status: int, reason: bytes, message: str) -> bytes:
    body = json.dumps(ApiError(status, message).body()).encode()
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n" % (status, reason, len(body)) + body
    )


class _ConnectionHooks:
    """A timer on reading one request, and a new connection's first request announced to the
    engine (mixed into uvicorn's protocols)."""

    loop: Any
    transport: Any
    client: Any
    _read_timer: Any = None
    batch_engine: BatchEngine | None = None

    def _connected(self) -> None:
        if self.batch_engine is not None:
            self.batch_engine.connected(self.client)

    def _gone(self) -> None:
        if self.batch_engine is not None:
            self.batch_engine.first_request(self.client)

    def _arm(self) -> None:
        self._disarm()
        self._read_timer = self.loop.call_later(REQUEST_READ_SECONDS, self._read_timed_out)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if not self.transport.is_closing():
            message = f"the request did not arrive within {REQUEST_READ_SECONDS:g} s"
            self.transport.write(_closing_response(408, b"Request Timeout", message))
            self.transport.close()

    def _over_capacity(self, connections: set[Any]) -> bool:
        """Answer 503 and close when more than :data:`MAX_CONNECTIONS` are open."""
        if len(connections) <= MAX_CONNECTIONS:
            return False
        message = f"the server holds {MAX_CONNECTIONS} connections; retry shortly"
        self.transport.write(_closing_response(503, b"Service Unavailable", message))
        self.transport.close()
        return True


TOKENIZE_ON_LOOP_CHARS = 20_000
"""Requests with more text than this (characters over their prompts or messages) are tokenized
in a worker thread, so that the event loop goes on answering other clients meanwhile."""


def _text_chars(req: CompletionRequest | ChatRequest) -> int:
    """Characters of text the request asks to tokenize."""
    if isinstance(req, ChatRequest):
        return sum(len(m.content or "") for m in req.messages)
    p = req.prompt
    return len(p) if isinstance(p, str) else sum(len(x) for x in p if isinstance(x, str))


def _bad_request_body(detail: str) -> bytes:
    param = "Content-Length" if "content-length" in detail.lower() else None
    return json.dumps(ApiError(400, f"malformed HTTP request ({detail})", param).body()).encode()


def _httptools_protocol(engine: BatchEngine | None) -> Any:
    import httptools
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class Protocol(_ConnectionHooks, HttpToolsProtocol):  # type: ignore[misc]
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            if not self._over_capacity(self.connections):
                self._arm()  # a connection that never sends a request is closed too
                self._connected()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            self._gone()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def send_400_response(self, msg: str) -> None:
            # Called inside uvicorn's `except httptools.HttpParserError`: the error says what.
            exc = sys.exc_info()[1]
            detail = str(exc) if isinstance(exc, httptools.HttpParserError) else msg
            body = _bad_request_body(detail.rstrip("."))
            self.transport.write(
                b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body) + body
            )
            self.transport.close()

    Protocol.batch_engine = engine
    return Protocol


def _h11_protocol(engine: BatchEngine | None) -> Any:
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Protocol(_ConnectionHooks, H11Protocol):  # type: ignore[misc]
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            if not self._over_capacity(self.connections):
                self._arm()
                self._connected()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            self._gone()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is h11.DONE or self.transport.is_closing():
                self._disarm()  # the request is in (or the connection is going)
            elif self._read_timer is None:
                self._arm()

        def send_400_response(self, msg: str) -> None:
            # Called inside uvicorn's `except h11.RemoteProtocolError`: the error says what.
            exc = sys.exc_info()[1]
            body = _bad_request_body(str(exc) if exc is not None else msg)
            headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
            for event in (
                h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                h11.Data(data=body),
                h11.EndOfMessage(),
            ):
                self.transport.write(self.conn.send(event))
            self.transport.close()

    Protocol.batch_engine = engine
    return Protocol


def loads(data: bytes) -> Any:
    """A request body's JSON: orjson when installed (several times faster), the standard
    library for what orjson refuses (``NaN``, integers over 64 bits) and for the error
    message. A body that is not UTF-8 JSON, nests too deeply or holds a string with an
    unpaired surrogate (``"\\ud800"``, which no UTF-8 text can hold) is a 400."""
    try:
        import orjson
    except ImportError:
        pass
    else:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"the request body is not valid UTF-8 ({exc})") from None
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"the request body is not valid JSON ({exc})") from None
    except RecursionError:
        raise ApiError(400, "the request body nests too deeply to be a request") from None
    _no_surrogates(body)
    return body


def _no_surrogates(body: Any) -> None:
    # Walks the parsed body (without recursion: its depth is the client's choice) for strings
    # that are not Unicode text; the field is named as in validation errors.
    stack: list[tuple[Any, str]] = [(body, "")]
    while stack:
        value, where = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ApiError(
                    400, "holds an unpaired surrogate (\\ud800-\\udfff); send Unicode text",
                    where or None,
                ) from None  # fmt: skip
        elif isinstance(value, dict):
            for k, v in value.items():
                stack.append((k, where))
                stack.append((v, f"{where}.{k}" if where else str(k)))
        elif isinstance(value, list):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(value))


def build_app(state: ServerState) -> Any:
    """The ASGI application for ``state``: Starlette's, the two generation routes called
    directly."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    def error(exc: ApiError, headers: Mapping[str, str] | None = None) -> Response:
        if exc.status == 401:
            headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
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
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            # Read as it came, a gzip body was bytes that are not UTF-8; a plain body marked
            # gzip was read as plain. Neither is guessed at.
            raise ApiError(
                415, f"{encoding!r} is not accepted; send the body uncompressed", "Content-Encoding"
            )
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
        return loads(b"".join(chunks) or b"null")

    def check_model(name: str | None) -> None:
        if name and name != state.name:
            raise ApiError(
                404, f"this server serves {state.name!r}, not {name!r}", "model", "model_not_found"
            )

    created = int(time.time())  # when the model was loaded and served: the card's "created"

    def card() -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": state.name,
            "object": "model",
            "created": created,
            "owned_by": "safescale",
        }
        # Fields beyond OpenAI's four, as vLLM adds them; clients ignore what they do not read.
        out["max_model_len"] = state.lm.max_length
        out["root"] = state.lm.config.path.resolve().name
        out["weights_sha256"] = state.weights_sha256
        return out

    async def models(request: Request) -> Response:
        try:
            authorize(request)
        except ApiError as exc:
            return error(exc)
        return JSONResponse({"object": "list", "data": [card()]})

    async def model(request: Request) -> Response:
        # GET /v1/models/NAME (the openai package's models.retrieve).
        try:
            authorize(request)
            check_model(request.path_params["name"])
        except ApiError as exc:
            return error(exc)
        return JSONResponse(card())

    async def generate(
        request: Request, kind: type[CompletionRequest] | type[ChatRequest]
    ) -> Response:
        arrival = state.engine.arriving()  # the engine may wait to batch it with others
        state.engine.first_request(request.scope.get("client"))  # announced now, if it was
        try:
            authorize(request)
            req = parse(kind, await body(request))
            check_model(req.model)
            build = completion_job if kind is CompletionRequest else chat_job
            if _text_chars(req) > TOKENIZE_ON_LOOP_CHARS:  # long text: tokenized off the loop
                job = await asyncio.to_thread(build, state, req)
            else:
                job = build(state, req)
            submitted = submit(state, job)
        except ApiError as exc:
            return error(exc)
        finally:
            state.engine.arrived(arrival)
        if req.stream:
            events = stream_events(state, job, submitted, req.include_usage)
            return StreamingResponse(events, media_type="text/event-stream")
        if not any(r.seq.max_new_tokens > 1 for r in job.rows):
            # Scoring (lm-eval's echo + one token): one pass, over before a client could leave.
            answer_json = dumps(await answer(state, job, submitted))
            return Response(answer_json, media_type="application/json")
        # Generation runs for many steps: a client that goes away stops its rows.
        left = asyncio.ensure_future(_disconnected(request))
        answered = asyncio.ensure_future(answer(state, job, submitted))
        try:
            await asyncio.wait((left, answered), return_when=asyncio.FIRST_COMPLETED)
        finally:
            left.cancel()
        if not answered.done():
            submitted.cancel.set()
            submitted.future.cancel()
            answered.cancel()
            raise ClientDisconnect()
        return Response(dumps(answered.result()), media_type="application/json")

    async def completions(request: Request) -> Response:
        return await generate(request, CompletionRequest)

    async def chat(request: Request) -> Response:
        return await generate(request, ChatRequest)

    async def health(request: Request) -> Response:
        return Response(status_code=200)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)  # a 405 keeps its Allow header
        return error(ApiError(exc.status_code, str(exc.detail)), exc.headers)

    async def server_error(request: Request, exc: Exception) -> Response:
        # A failure in the model (out of memory, a device error): the client gets JSON too.
        log.error("request failed: %s: %s", type(exc).__name__, exc)
        return error(ApiError(500, f"the model failed: {type(exc).__name__}: {exc}"))

    async def _disconnected(request: Request) -> None:
        # The body has been read: the next message the server can receive is the disconnect.
        while (await request.receive())["type"] != "http.disconnect":
            pass

    app = Starlette(
        routes=[
            Route(f"/{API_VERSION}/models", models, methods=["GET"]),
            Route(f"/{API_VERSION}/models/{{name:path}}", model, methods=["GET"]),
            Route(f"/{API_VERSION}/completions", completions, methods=["POST"]),
            Route(f"/{API_VERSION}/chat/completions", chat, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )
    app.router.redirect_slashes = False  # /v1/completions/ is a 404, not a redirect
    direct: dict[str, type[CompletionRequest] | type[ChatRequest]] = {
        f"/{API_VERSION}/completions": CompletionRequest,
        f"/{API_VERSION}/chat/completions": ChatRequest,
    }

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        # A POST to one of the two generation routes goes straight to its handler: Starlette's
        # middleware and router layers cost about as much per request as reading and
        # validating the body. What they would do here is done the same way: a failure is
        # answered by server_error (unless the answer has started) and raised for the log.
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        request = Request(scope, receive)
        kind = direct.get(scope["path"]) if scope["method"] == "POST" else None
        if kind is None:  # a new connection's first request, if it is, is none for the engine
            state.engine.first_request(scope.get("client"))
        if state.api_key is not None:  # every route, unknown ones too, needs the key
            try:
                authorize(request)
            except ApiError as exc:
                state.engine.first_request(scope.get("client"))
                await error(exc)(scope, receive, send)
                return
        if kind is None:
            await app(scope, receive, send)
            return
        started = False

        async def sender(message: Any) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            response = await generate(request, kind)
            await response(scope, receive, sender)
        except ClientDisconnect:
            return  # the client went away: nobody to answer
        except Exception as exc:
            if started:
                raise  # the answer has begun: the connection is closed, the error logged
            # Answered with a JSON 500 (server_error logs it); the connection stays open for
            # the client's next request (raising would make the server close it after the 500).
            await (await server_error(request, exc))(scope, receive, send)

    return asgi
