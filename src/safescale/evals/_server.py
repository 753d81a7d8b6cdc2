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

import errno
import hmac
import json
import logging
import socket
import sys
import threading
import time
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
            http=_http_protocol(http),
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


def _http_protocol(parser: HttpParser = "auto") -> Any:
    """uvicorn's protocol for ``parser`` (``auto``: httptools when it is installed, else h11),
    answering a malformed request (``Content-Length: abc``) with a JSON 400 that says what was
    wrong, instead of a bare text line."""
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
            return _httptools_protocol()
    return _h11_protocol()


def _bad_request_body(detail: str) -> bytes:
    param = "Content-Length" if "content-length" in detail.lower() else None
    return json.dumps(ApiError(400, f"malformed HTTP request ({detail})", param).body()).encode()


def _httptools_protocol() -> Any:
    import httptools
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class Protocol(HttpToolsProtocol):  # type: ignore[misc]
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

    return Protocol


def _h11_protocol() -> Any:
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Protocol(H11Protocol):  # type: ignore[misc]
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

    return Protocol


def loads(data: bytes) -> Any:
    """A request body's JSON: orjson when installed (several times faster), the standard
    library for what orjson refuses (``NaN``, integers over 64 bits) and for the error
    message; a body that is not JSON is a 400."""
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
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON ({exc})") from None


def build_app(state: ServerState) -> Any:
    """The ASGI application for ``state``: Starlette's, the two generation routes called
    directly."""
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
        return loads(b"".join(chunks) or b"null")

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
        card: dict[str, Any] = {
            "id": state.name,
            "object": "model",
            "created": 0,
            "owned_by": "safescale",
        }
        # Fields beyond OpenAI's four, as vLLM adds them; clients ignore what they do not read.
        card["max_model_len"] = state.lm.max_length
        card["root"] = state.lm.config.path.resolve().name
        card["weights_sha256"] = state.weights_sha256
        return JSONResponse({"object": "list", "data": [card]})

    async def generate(
        request: Request, kind: type[CompletionRequest] | type[ChatRequest]
    ) -> Response:
        state.engine.expect()  # the engine may wait for this one to batch it with others
        try:
            authorize(request)
            req = parse(kind, await body(request))
            check_model(req.model)
            job = completion_job(state, req) if kind is CompletionRequest else chat_job(state, req)
            submitted = submit(state, job)
        except ApiError as exc:
            return error(exc)
        finally:
            state.engine.expect(-1)
        if req.stream:
            events = stream_events(state, job, submitted, req.include_usage)
            return StreamingResponse(events, media_type="text/event-stream")
        return Response(dumps(await answer(state, job, submitted)), media_type="application/json")

    async def completions(request: Request) -> Response:
        return await generate(request, CompletionRequest)

    async def chat(request: Request) -> Response:
        return await generate(request, ChatRequest)

    async def health(request: Request) -> Response:
        return Response(status_code=200)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error(ApiError(exc.status_code, str(exc.detail)))

    async def server_error(request: Request, exc: Exception) -> Response:
        # A failure in the model (out of memory, a device error): the client gets JSON too.
        log.error("request failed: %s: %s", type(exc).__name__, exc)
        return error(ApiError(500, f"the model failed: {type(exc).__name__}: {exc}"))

    app = Starlette(
        routes=[
            Route(f"/{API_VERSION}/models", models, methods=["GET"]),
            Route(f"/{API_VERSION}/completions", completions, methods=["POST"]),
            Route(f"/{API_VERSION}/chat/completions", chat, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )
    direct: dict[str, type[CompletionRequest] | type[ChatRequest]] = {
        f"/{API_VERSION}/completions": CompletionRequest,
        f"/{API_VERSION}/chat/completions": ChatRequest,
    }

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        # A POST to one of the two generation routes goes straight to its handler: Starlette's
        # middleware and router layers cost about as much per request as reading and
        # validating the body. What they would do here is done the same way: a failure is
        # answered by server_error (unless the answer has started) and raised for the log.
        kind = (
            direct.get(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        if kind is None:
            await app(scope, receive, send)
            return
        request = Request(scope, receive)
        started = False

        async def sender(message: Any) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            response = await generate(request, kind)
            await response(scope, receive, sender)
        except Exception as exc:
            if not started:
                await (await server_error(request, exc))(scope, receive, send)
            raise

    return asgi
