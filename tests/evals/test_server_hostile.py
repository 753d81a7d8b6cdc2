"""serve-model against hostile and careless clients: every such request is answered (a 4xx
naming the field, or a clean 500 for a model failure), no request harms the others batched
with it, and nothing a client sends or withholds holds the server."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from safescale.evals import LocalModelConfig, ModelServer, load_local_model
from safescale.evals._server_api import MAX_PROMPTS, MAX_ROWS, MAX_STOP, MAX_STOP_CHARS
from safescale.evals._server_engine import BatchEngine, SequenceRequest
from tests.evals.test_server import post, post_error, record_submits


@pytest.fixture(scope="module")
def server(model_dir: Path):
    lm = load_local_model(LocalModelConfig(model_dir))
    srv = ModelServer(lm, name="tiny", port=0, max_body_bytes=4_000_000).start()
    yield srv
    srv.close()


def _address(srv: ModelServer) -> tuple[str, int]:
    host, port = srv.base_url.split("//")[1].split("/")[0].rsplit(":", 1)
    return host, int(port)


def _send(srv: ModelServer, body: bytes, path: str = "/v1/completions") -> tuple[int, Any]:
    conn = http.client.HTTPConnection(*_address(srv), timeout=60)
    try:
        conn.request("POST", path, body, {"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


def _each_parser(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch, setting: str, value: float
) -> Iterator[ModelServer]:
    """A started server with each HTTP parser in turn, ``_server.<setting>`` set to ``value``
    (the caller closes each)."""
    from safescale.evals import _server

    monkeypatch.setattr(_server, setting, value)
    lm = load_local_model(LocalModelConfig(model_dir))
    for parser in ("httptools", "h11"):
        yield ModelServer(lm, name="tiny", port=0, http=parser).start()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("body", "says", "param"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nests too deeply", None),
        (b'{"prompt": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nests too deeply", None),
        (b'{"prompt": "a\\ud800b"}', "unpaired surrogate", "prompt"),
        (b'{"prompt": "a\xed\xa0\x80b"}', "not valid UTF-8", None),
        (json.dumps({"prompt": "a", "max_tokens": 1}).encode("utf-16"), "not valid UTF-8", None),
    ],
    ids=["nested-list", "nested-prompt", "surrogate-escape", "surrogate-bytes", "utf-16"],
)
def test_bodies_that_are_not_json_text_are_400(
    server: ModelServer, body: bytes, says: str, param: str | None
) -> None:
    status, answer = _send(server, body)
    assert status == 400 and says in answer["error"]["message"], answer
    assert answer["error"]["param"] == param
    chat = b'{"messages": [{"role": "user", "content": "\\udc00"}]}'
    status, answer = _send(server, chat, "/v1/chat/completions")
    assert status == 400 and answer["error"]["param"] == "messages[0].content"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": ["a"] * (MAX_PROMPTS + 1), "max_tokens": 0}, "prompt"),
        ({"prompt": [[1]] * 100, "n": MAX_ROWS // 100 + 1, "max_tokens": 0}, "prompt"),
        ({"prompt": "a", "stop": [f"s{i}" for i in range(MAX_STOP + 1)]}, "stop"),
        ({"prompt": "a", "stop": "x" * (MAX_STOP_CHARS + 1)}, "stop"),
        ({"prompt": "a", "response_format": {"type": "json_object"}}, "response_format"),
        ({"prompt": "a", "n": True}, "n"),
        ({"prompt": "a", "stream": "yes"}, "stream"),
    ],
    ids=["prompts", "rows", "stop-count", "stop-length", "response-format", "bool-n", "str-stream"],
)
def test_sizes_types_and_unimplemented_fields_are_refused(
    server: ModelServer, body: dict[str, Any], param: str
) -> None:
    status, err = post_error(server, "/completions", body)
    assert status == 400 and err["param"] == param, err
    neutral = post(server, "/completions", {"prompt": "a", "max_tokens": 1,
                                            "response_format": {"type": "text"}})  # fmt: skip
    assert neutral["choices"]


def test_a_text_far_over_the_context_is_refused_before_it_is_tokenized(
    server: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    lm = server.lm
    seen: list[int] = []
    encode = lm.encode
    monkeypatch.setattr(lm, "encode", lambda text: seen.append(len(text)) or encode(text))
    huge = "The river of Zorbia is red. " * 100_000  # 2.8 MB
    status, err = post_error(server, "/completions", {"prompt": huge, "max_tokens": 1})
    assert status == 400 and err["code"] == "context_length_exceeded" and err["param"] == "prompt"
    chat = {"messages": [{"role": "user", "content": huge}], "max_tokens": 1}
    status, err = post_error(server, "/chat/completions", chat)
    assert status == 400 and err["param"] == "messages[0].content"
    assert not seen or max(seen) < len(huge)  # neither was tokenized


def test_vanishing_temperature_and_top_p_and_the_largest_seeds_are_served(
    server: ModelServer,
) -> None:
    greedy = post(server, "/completions", {"prompt": "The river", "max_tokens": 5})
    for t in (1e-40, 5e-324, 1e-6):
        got = post(server, "/completions", {"prompt": "The river", "max_tokens": 5,
                                             "temperature": t})  # fmt: skip
        assert got["choices"][0]["text"] == greedy["choices"][0]["text"]
    one = post(server, "/completions", {"prompt": "The river", "max_tokens": 5, "temperature": 1,
                                        "top_p": 5e-324})  # fmt: skip
    assert one["choices"][0]["text"] == greedy["choices"][0]["text"]  # the best token only
    body = {"prompt": "The river", "max_tokens": 4, "temperature": 1, "n": 3}
    for seed in (2**64 - 1, -(2**63), 2**63 - 2):
        first = post(server, "/completions", {**body, "seed": seed})
        assert len(first["choices"]) == 3
        assert post(server, "/completions", {**body, "seed": seed})["choices"] == first["choices"]


def test_one_failing_request_does_not_fail_those_batched_with_it(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safescale.evals import _server_engine

    poison = 7
    real = _server_engine.run_batch
    batches: list[int] = []

    def fragile(lm: Any, reqs: Any, *args: Any, **kwargs: Any) -> Any:
        batches.append(len(reqs))
        if any(r.prompt[0] == poison for r in reqs):
            raise RuntimeError("poisoned row")
        return real(lm, reqs, *args, **kwargs)

    monkeypatch.setattr(_server_engine, "run_batch", fragile)
    lm = load_local_model(LocalModelConfig(model_dir))
    engine = BatchEngine(lm, batch_size=16)
    try:
        with engine._cond:  # queue all four before the worker looks: one batch
            jobs = [
                engine.submit([SequenceRequest((first, 5, 6), 2)]) for first in (3, poison, 4, 5)
            ]
        outcomes = []
        for future, _ in jobs:
            try:
                outcomes.append(len(future.result(timeout=60)[0].tokens))
            except RuntimeError as exc:
                outcomes.append(str(exc))
        lone, _ = engine.submit([SequenceRequest((poison, 5, 6), 2)])
        with pytest.raises(RuntimeError, match="poisoned row"):
            lone.result(timeout=60)
    finally:
        engine.close()
    # batched together, then each of the four alone; the lone poisoned request is run once
    assert batches == [4, 1, 1, 1, 1, 1]
    assert outcomes == [2, "poisoned row", 2, 2]


def test_a_model_failure_keeps_the_connection(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safescale.evals import _server_engine

    lm = load_local_model(LocalModelConfig(model_dir))
    srv = ModelServer(lm, name="tiny", port=0).start()
    conn = http.client.HTTPConnection(*_address(srv), timeout=60)
    try:
        real = _server_engine.run_batch
        monkeypatch.setattr(_server_engine, "run_batch", lambda *a, **k: 1 / 0)
        body = json.dumps({"prompt": "a", "max_tokens": 1})
        conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
        r = conn.getresponse()
        assert r.status == 500 and "ZeroDivisionError" in json.loads(r.read())["error"]["message"]
        monkeypatch.setattr(_server_engine, "run_batch", real)
        conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
        r = conn.getresponse()  # the same connection: it was not closed after the 500
        assert r.status == 200 and json.loads(r.read())["choices"]
    finally:
        conn.close()
        srv.close()


def test_a_chat_template_that_refuses_the_conversation_is_400(model_dir: Path) -> None:
    lm = load_local_model(LocalModelConfig(model_dir))
    lm.tokenizer.chat_template = (
        "{% for m in messages %}{% if loop.index0 > 0 and m['role'] == messages[loop.index0 - 1]"
        "['role'] %}{{ raise_exception('Conversation roles must alternate') }}{% endif %}"
        "{{ m['content'] }}{% endfor %}"
    )
    srv = ModelServer(lm, name="tiny", port=0).start()
    try:
        two = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
        status, err = post_error(srv, "/chat/completions", {"messages": two, "max_tokens": 1})
        assert status == 400 and err["param"] == "messages" and "alternate" in err["message"]
        one = {"messages": two[:1], "max_tokens": 1}
        assert post(srv, "/chat/completions", one)["choices"]
    finally:
        srv.close()


def test_the_api_key_guards_every_route(model_dir: Path) -> None:
    lm = load_local_model(LocalModelConfig(model_dir))
    srv = ModelServer(lm, name="tiny", port=0, api_key="s3cret").start()
    conn = http.client.HTTPConnection(*_address(srv), timeout=30)
    try:
        for method, path in (("GET", "/health"), ("GET", "/v1/nothing"), ("PUT", "/v1/models"),
                             ("POST", "/v1/completions/"), ("GET", "/v1/models")):  # fmt: skip
            conn.request(method, path)
            r = conn.getresponse()
            assert r.status == 401 and json.loads(r.read())["error"]["code"] == "invalid_api_key"
        key = {"Authorization": "Bearer s3cret"}
        for path, status in (("/health", 200), ("/v1/nothing", 404), ("/v1/completions/", 404)):
            conn.request("GET" if path == "/health" else "POST", path, b"{}", key)
            r = conn.getresponse()
            r.read()
            assert r.status == status, path
    finally:
        conn.close()
        srv.close()


def test_stalled_requests_are_answered_408_and_closed(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for srv in _each_parser(model_dir, monkeypatch, "REQUEST_READ_SECONDS", 0.5):
        try:
            head = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
            for sent in (b"", b"GET /v1/models HTTP/1.1\r\n",
                         head + b"Content-Length: 100\r\n\r\n{\"prompt\": "):  # fmt: skip
                with socket.create_connection(_address(srv), timeout=10) as s:
                    s.sendall(sent)
                    t0 = time.monotonic()
                    out = b""
                    while chunk := s.recv(65536):
                        out += chunk
                    assert out.startswith(b"HTTP/1.1 408"), (sent, out)
                    assert time.monotonic() - t0 < 5
            # a stalled upload does not make every batch wait for it
            with socket.create_connection(_address(srv), timeout=10) as s:
                s.sendall(head + b"Content-Length: 100\r\n\r\n{")
                assert post(srv, "/completions", {"prompt": "a", "max_tokens": 1})["choices"]
        finally:
            srv.close()


def test_an_arrival_older_than_the_gather_window_is_not_waited_for(model_dir: Path) -> None:
    lm = load_local_model(LocalModelConfig(model_dir))
    engine = BatchEngine(lm, gather=0.05)
    try:
        token = engine.arriving()
        with engine._cond:
            assert engine._waited_until() > time.monotonic()
        time.sleep(0.1)
        with engine._cond:
            assert engine._waited_until() <= time.monotonic()
        engine.arrived(token)
        assert not engine._arrivals
    finally:
        engine.close()


def test_a_client_leaving_a_plain_request_stops_its_generation(
    server: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    futures = record_submits(server, monkeypatch)
    body = {"prompt": "The", "max_tokens": 240, "n": 8}
    whole = post(server, "/completions", body)  # left alone, every row runs to its length
    assert {c["finish_reason"] for c in whole["choices"]} == {"length"}
    conn = http.client.HTTPConnection(*_address(server), timeout=30)
    conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    deadline = time.monotonic() + 30
    while not (futures[1:] and futures[1].running()):
        assert time.monotonic() < deadline
        time.sleep(0.005)
    conn.close()  # gone while its rows are being generated
    results = futures[1].result(timeout=60)
    assert all(r.finish_reason == "stop" and len(r.tokens) < 240 for r in results)
    assert post(server, "/completions", {"prompt": "a", "max_tokens": 1})["choices"]


def test_connections_over_the_cap_are_answered_503_and_the_server_serves_on(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for srv in _each_parser(model_dir, monkeypatch, "MAX_CONNECTIONS", 3):
        idle = [socket.create_connection(_address(srv), timeout=10) for _ in range(3)]
        try:
            time.sleep(0.3)  # the server has accepted them
            with socket.create_connection(_address(srv), timeout=10) as s:
                out = b""
                while chunk := s.recv(65536):
                    out += chunk
            assert out.startswith(b"HTTP/1.1 503") and b"retry shortly" in out, out
            for s in idle:
                s.close()
            time.sleep(0.3)
            assert post(srv, "/completions", {"prompt": "a", "max_tokens": 1})["choices"]
        finally:
            for s in idle:
                s.close()
            srv.close()


def test_a_long_text_is_tokenized_off_the_event_loop(
    server: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safescale.evals import _server

    lm = server.lm
    encode = lm.encode
    started = []

    monkeypatch.setattr(_server, "TOKENIZE_ON_LOOP_CHARS", 500)  # the tiny model's context

    def slow(text: str) -> list[int]:
        if len(text) > 600:
            started.append(time.monotonic())
            time.sleep(2.0)  # a tokenizer busy with a long text
        return encode(text)

    monkeypatch.setattr(lm, "encode", slow)
    long_text = "Zorbia " * 100
    conn = http.client.HTTPConnection(*_address(server), timeout=30)
    body = json.dumps({"prompt": long_text, "max_tokens": 1})
    conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    deadline = time.monotonic() + 10
    while not started:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    t0 = time.monotonic()
    models = http.client.HTTPConnection(*_address(server), timeout=30)
    models.request("GET", "/v1/models")
    assert models.getresponse().status == 200
    assert time.monotonic() - t0 < 1.5  # answered while the long text was being tokenized
    models.close()
    r = conn.getresponse()
    r.read()
    assert r.status in (200, 400)  # served, or over the context: either way answered
    conn.close()


def test_unknown_fields_are_answered_and_named_once_in_the_log(
    server: ModelServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # OpenAI clients send fields of newer API versions: refusing them would break the
    # clients, so they are ignored, but never silently: the log names each once.
    from safescale.evals import _server_api

    monkeypatch.setattr(_server_api, "_noted", set())
    monkeypatch.setattr(_server_api, "MAX_NOTED", 3)
    base = {"prompt": "a b", "max_tokens": 1, "temperature": 0}
    with caplog.at_level("WARNING", logger="safescale.serve"):
        for extra in ({"frobnicate": 1}, {"frobnicate": 2, "user": "u"}, {"x\x1b[31m": 1},
                      {"a": 1, "b": 2, "c": 3}):  # fmt: skip
            status, answer = _send(server, json.dumps({**base, **extra}).encode())
            assert status == 200 and answer["choices"][0]["text"] is not None
    said = [r.getMessage() for r in caplog.records if "not implemented" in r.getMessage()]
    assert len(said) == 3 and "'frobnicate'" in said[0], said  # once each, at most MAX_NOTED
    assert "'x\\x1b[31m'" in said[1] and not any("\x1b" in m or "'user'" in m for m in said)


@pytest.mark.parametrize("encoding", ["gzip", "br", "deflate"])
def test_a_compressed_body_is_refused_not_misread(server: ModelServer, encoding: str) -> None:
    """A gzip body was answered as bytes that are not UTF-8, and a plain body marked gzip as
    if plain: either way the server would have guessed. Now 415, naming the header."""
    import gzip

    plain = json.dumps({"model": "tiny", "prompt": "Hi", "max_tokens": 1}).encode()
    for body in (gzip.compress(plain), plain):
        conn = http.client.HTTPConnection(*_address(server), timeout=60)
        try:
            conn.request("POST", "/v1/completions", body,
                         {"Content-Type": "application/json", "Content-Encoding": encoding})  # fmt: skip
            r = conn.getresponse()
            answer = json.loads(r.read())
        finally:
            conn.close()
        assert r.status == 415, answer
        assert answer["error"]["param"] == "Content-Encoding"
        assert (
            f"'{encoding}' is not accepted; send the body uncompressed"
            in answer["error"]["message"]
        )


def test_a_wrong_method_is_405_with_allow(server: ModelServer) -> None:
    conn = http.client.HTTPConnection(*_address(server), timeout=60)
    try:
        conn.request("DELETE", "/v1/models")
        r = conn.getresponse()
        r.read()
    finally:
        conn.close()
    assert r.status == 405 and "GET" in (r.getheader("Allow") or "")


def test_the_latest_arrival_is_found_among_thousands() -> None:
    # Silent connections each hold an announced first request: the deadline the engine waits
    # for is the latest of those still on their way, whatever order they come and go in.
    engine = BatchEngine(object(), gather=60.0)  # type: ignore[arg-type]  # no batch is run
    try:
        tokens = [engine.arriving(within=float(w)) for w in (30, 50, 10, 40) * 1000]
        with engine._cond:
            assert engine._waited_until() == max(engine._arrivals.values())
        for t in tokens[1::4]:  # every 50 s one gone: the 40 s ones are the latest now
            engine.arrived(t)
        with engine._cond:
            assert engine._waited_until() == max(engine._arrivals.values())
            assert engine._waited_until() - time.monotonic() < 41
        for _ in range(1000):  # requests that come and go leave nothing behind
            engine.arrived(engine.arriving())
        assert len(engine._latest) <= len(engine._arrivals) + 1
        for t in tokens:
            engine.arrived(t)
        with engine._cond:
            assert engine._waited_until() == 0.0
        assert not engine._arrivals and not engine._latest
    finally:
        engine.close()
