"""serve-model's engine policy (batches fill with closed-loop clients, a lone client never
waits) and its HTTP parsers (httptools when installed, h11 otherwise) answering malformed
requests with JSON."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from safescale.evals import LocalModelConfig, ModelServer, load_local_model
from safescale.evals import _server_engine as engine_module
from safescale.evals._server_engine import BatchEngine, SequenceRequest, SequenceResult


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Row counts of the batches the engine runs (the model is not called)."""
    sizes: list[int] = []

    def fake(lm: Any, reqs: Any, *args: Any, **kwargs: Any) -> list[SequenceResult]:
        sizes.append(len(reqs))
        time.sleep(0.005)  # a batch takes a little time, as a forward pass does
        return [SequenceResult(None, (), "length") for _ in reqs]

    monkeypatch.setattr(engine_module, "run_batch", fake)
    return sizes


def _closed_loop(engine: BatchEngine, clients: int, rounds: int) -> float:
    """``clients`` threads, each sending its next request as soon as the last is answered;
    returns the wall time."""

    def client() -> None:
        for _ in range(rounds):
            future, _ = engine.submit([SequenceRequest((1, 2, 3))])
            future.result(timeout=30)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def _one_request(engine: BatchEngine) -> float:
    """Seconds from submitting one request to its result."""
    t0 = time.perf_counter()
    future, _ = engine.submit([SequenceRequest((1, 2, 3))])
    future.result(timeout=30)
    return time.perf_counter() - t0


def test_closed_loop_clients_fill_batches(
    batches: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The wait for the answered clients is twice their slowest recent return, at least 10 ms:
    # on a loaded machine a client thread can take longer to wake, and its batch runs without
    # it (a split, not an error). Here the least wait is the window, so only the policy counts.
    monkeypatch.setattr(engine_module, "RETURN_WAIT_MIN", 2.0)
    engine = BatchEngine(object(), batch_size=64, gather=2.0)  # type: ignore[arg-type]
    try:
        _closed_loop(engine, clients=6, rounds=10)
    finally:
        engine.close()
    assert sum(batches) == 60
    # Once every client has been answered once, the engine waits for the answered ones to
    # come back: most batches hold all six (without the wait they split into groups taking
    # turns, [1, 5, 1, 5, ...]). The first and last hold fewer: a client that went first
    # also finishes first.
    assert batches.count(6) >= 7 and len(batches) <= 13, batches


def test_clients_back_before_the_engine_counts_them_are_not_waited_for(
    batches: list[int],
) -> None:
    # The fastest clients: each sends its next request from its answer's callback, which runs
    # on the engine's thread as the answer is handed out, before the engine counts what to
    # wait for. Counted then, they would be expected twice (the answered ones and the same
    # ones queued again) and every batch would wait out the window (5 s).
    engine = BatchEngine(object(), batch_size=64, gather=5.0)  # type: ignore[arg-type]
    done = threading.Event()
    left = {"requests": 4 * 6}

    def send(_: Any = None) -> None:
        if left["requests"] == 0:
            done.set()
            return
        left["requests"] -= 1
        future, _ = engine.submit([SequenceRequest((1, 2, 3))])
        future.add_done_callback(send)

    try:
        t0 = time.perf_counter()
        for _ in range(4):
            send()
        assert done.wait(timeout=30)
        wall = time.perf_counter() - t0
    finally:
        engine.close()
    assert wall < 4.0, (wall, batches)
    assert batches.count(4) >= 4, batches


def test_a_lone_client_never_waits(batches: list[int]) -> None:
    engine = BatchEngine(object(), batch_size=64, gather=5.0)  # type: ignore[arg-type]
    try:
        wall = _closed_loop(engine, clients=1, rounds=10)
    finally:
        engine.close()
    assert batches == [1] * 10
    assert wall < 5.0  # one wait of the window would take 5 s


def test_a_request_after_a_pause_runs_at_once(batches: list[int]) -> None:
    engine = BatchEngine(object(), batch_size=64, gather=0.5)  # type: ignore[arg-type]
    try:
        _closed_loop(engine, clients=4, rounds=3)  # the engine now expects 4
        time.sleep(0.6)  # past the window: the clients are gone
        assert _one_request(engine) < 0.4
    finally:
        engine.close()


def test_clients_that_stop_hold_the_last_request_briefly_not_for_the_window(
    batches: list[int],
) -> None:
    # After closed-loop rounds the engine has seen its clients come back within milliseconds:
    # when all but one stop (the end of an evaluation), the last request waits about twice
    # that, not the whole window (3 s here).
    engine = BatchEngine(object(), batch_size=64, gather=3.0)  # type: ignore[arg-type]
    try:
        _closed_loop(engine, clients=4, rounds=5)
        waited = _one_request(engine)
    finally:
        engine.close()
    assert waited < 1.0, (waited, batches)


def test_requests_on_their_way_hold_a_queued_one_at_most_the_window(batches: list[int]) -> None:
    # A flood of announced requests that never arrive (stalled uploads, silent connections),
    # a new one every 10 ms: each is waited for, but the queued request runs once it has
    # waited the window (0.3 s here), not as long as the flood lasts.
    engine = BatchEngine(object(), batch_size=64, gather=0.3)  # type: ignore[arg-type]
    stop = threading.Event()

    def flood() -> None:
        while not stop.is_set():
            engine.arriving()
            time.sleep(0.01)

    thread = threading.Thread(target=flood)
    thread.start()
    try:
        time.sleep(0.05)
        waited = _one_request(engine)
    finally:
        stop.set()
        thread.join()
        engine.close()
    assert 0.25 < waited < 2.0, waited


def _address(srv: ModelServer) -> tuple[str, int]:
    host, port = srv.base_url.split("//")[1].split("/")[0].rsplit(":", 1)
    return host, int(port)


def _started(model_dir: Path, http: str = "auto") -> ModelServer:
    """A server on the tiny model whose queued requests may wait up to 5 s (its window)."""
    lm = load_local_model(LocalModelConfig(model_dir))
    srv = ModelServer(lm, name="tiny", port=0, http=http)  # type: ignore[arg-type]
    srv.engine.gather = 5.0
    return srv.start()


_SCORE = json.dumps({"prompt": [1, 2, 3], "max_tokens": 1}).encode()
_REQUEST = (
    b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(_SCORE) + _SCORE
)


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_clients_that_connect_together_are_batched_together(
    model_dir: Path, batches: list[int], monkeypatch: pytest.MonkeyPatch, http: str
) -> None:
    # Each client sends its first request once connected; the first to arrive waits for those
    # connected with it (up to FIRST_REQUEST_SECONDS, 2 s here, and the engine's window)
    # instead of running alone.
    if http == "httptools":
        pytest.importorskip("httptools")
    monkeypatch.setattr(engine_module, "FIRST_REQUEST_SECONDS", 2.0)
    srv = _started(model_dir, http)
    conns = []
    try:
        conns = [socket.create_connection(_address(srv), timeout=30) for _ in range(4)]
        time.sleep(0.2)  # all four accepted
        for c in conns:
            c.sendall(_REQUEST)
            time.sleep(0.1)  # far apart: without the wait, each would run alone
        for c in conns:
            assert c.recv(65536).startswith(b"HTTP/1.1 200")
    finally:
        for c in conns:
            c.close()
        srv.close()
    assert batches == [4]


def test_a_connection_that_sends_nothing_holds_others_back_briefly(
    model_dir: Path, batches: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "FIRST_REQUEST_SECONDS", 0.5)
    srv = _started(model_dir)
    try:
        with socket.create_connection(_address(srv), timeout=30):
            time.sleep(0.05)
            t0 = time.perf_counter()
            out = _raw(srv, _REQUEST.replace(b"Host: x", b"Host: x\r\nConnection: close"))
            waited = time.perf_counter() - t0
    finally:
        srv.close()
    assert out.startswith(b"HTTP/1.1 200")
    # Held back until the silent connection's half second was up, and no longer.
    assert 0.3 < waited < 3.0, waited


def _raw(srv: ModelServer, request: bytes) -> bytes:
    with socket.create_connection(_address(srv), timeout=10) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_malformed_http_is_a_json_400_with_either_parser(model_dir: Path, http: str) -> None:
    if http == "httptools":
        pytest.importorskip("httptools")
    lm = load_local_model(LocalModelConfig(model_dir))
    srv = ModelServer(lm, name="tiny", port=0, http=http).start()  # type: ignore[arg-type]
    try:
        head = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        for bad, param in (
            (b"Content-Length: abc\r\n\r\n{}", "Content-Length"),
            (b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", "Content-Length"),
        ):
            out = _raw(srv, head + bad)
            status, _, body = out.partition(b"\r\n\r\n")
            assert status.startswith(b"HTTP/1.1 400") and b"application/json" in status.lower()
            err = json.loads(body)["error"]
            assert err["param"] == param and err["message"].startswith("Content-Length: ")
        out = _raw(srv, b"NOT HTTP AT ALL\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 400")
        assert (
            "malformed HTTP request"
            in json.loads(out.partition(b"\r\n\r\n")[2])["error"]["message"]
        )
        # The same server still answers a well-formed request.
        body = json.dumps({"prompt": "a", "max_tokens": 1}).encode()
        out = _raw(srv, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                   b"Content-Length: %d\r\n\r\n" % len(body) + body)  # fmt: skip
        assert (
            out.startswith(b"HTTP/1.1 200") and json.loads(out.partition(b"\r\n\r\n")[2])["choices"]
        )
    finally:
        srv.close()


def test_missing_httptools_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from safescale._errors import UserError
    from safescale.evals._server import _http_protocol

    real = builtins.__import__

    def no_httptools(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "httptools":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_httptools)
    assert _http_protocol("auto").__name__ == "Protocol"  # h11's, silently
    assert any("h11_impl" in c.__module__ for c in _http_protocol("auto").__mro__)
    with pytest.raises(UserError, match="httptools"):
        _http_protocol("httptools")
