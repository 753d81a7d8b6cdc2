"""serve-model over real HTTP on loopback: the OpenAI shapes, validation, limits, load.

The engine's fast path is checked against the simple versions (``LocalLM.generate`` and
``LocalLM.loglikelihood``); the HTTP answers against the engine and the OpenAI definitions.
Clients of other projects are in ``test_server_clients.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from safescale.evals import LocalModelConfig, LoglikelihoodGroup, ModelServer, load_local_model
from safescale.evals._server_engine import SequenceRequest, run_batch

PROMPTS = ["The river of Zorbia is", "Quell has", "The tower of Marnot is red and lies near", "A"]


@pytest.fixture(scope="module")
def server(model_dir: Path):
    lm = load_local_model(LocalModelConfig(model_dir))
    srv = ModelServer(lm, name="tiny", port=0, max_body_bytes=64_000).start()
    yield srv
    srv.close()


def post(srv: ModelServer, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    req = urllib.request.Request(
        srv.base_url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def post_error(srv: ModelServer, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(urllib.error.HTTPError) as exc:
        post(srv, path, body)
    return exc.value.code, json.loads(exc.value.read())["error"]


def raw(srv: ModelServer, request: bytes) -> bytes:
    """Send bytes on a fresh connection; read until the server closes it or the JSON ends."""
    host, port = srv.base_url.split("//")[1].split("/")[0].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request)
        out = b""
        while not out.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    return out


def sse(srv: ModelServer, path: str, body: Any) -> list[Any]:
    req = urllib.request.Request(
        srv.base_url + path,
        data=json.dumps({**body, "stream": True}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        lines = [ln for ln in r.read().decode().split("\n\n") if ln]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(ln.removeprefix("data: ")) for ln in lines[:-1]]


# -- the engine against the simple versions ---------------------------------------------------


def test_engine_matches_generate_and_loglikelihood(model_dir: Path) -> None:
    lm = load_local_model(LocalModelConfig(model_dir))
    prompts = [lm.encode(t) for t in PROMPTS]
    res = run_batch(
        lm, [SequenceRequest(tuple(p), 10, prompt_logprobs=3, top_logprobs=3) for p in prompts]
    )
    assert [[t.token for t in r.tokens] for r in res] == lm.generate(prompts, 10)
    groups = [LoglikelihoodGroup((p[0],), (tuple(p[1:]),)) for p in prompts[:3]]
    for r, (score,) in zip(res, lm.loglikelihood(groups), strict=False):
        assert r.prompt_logprobs is not None
        assert [t.logprob for t in r.prompt_logprobs] == pytest.approx(
            list(score.token_logprobs), abs=1e-5
        )
    for r in res:  # greedy: the chosen token is the best of its alternatives
        for t in r.tokens:
            assert t.top[0] == (t.token, pytest.approx(t.logprob, abs=1e-6))
            assert [v for _, v in t.top] == sorted((v for _, v in t.top), reverse=True)


# -- completions ------------------------------------------------------------------------------


def test_echo_with_one_new_token_is_what_lm_eval_reads(server: ModelServer) -> None:
    lm = server.lm
    text = "The river of Zorbia is blue"
    ids = lm.encode(text)
    out = post(
        server, "/completions", {"prompt": text, "max_tokens": 1, "echo": True, "logprobs": 1}
    )
    lp = out["choices"][0]["logprobs"]
    # OpenAI's definition: the prompt's tokens first (the first one's log-probability null),
    # then the generated one; lm-eval sums token_logprobs[ctxlen:-1].
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == len(ids) + 1
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    assert lp["tokens"][: len(ids)] == lm.token_strings(ids)
    (score,) = lm.loglikelihood([LoglikelihoodGroup((ids[0],), (tuple(ids[1:]),))])[0]
    assert lp["token_logprobs"][1 : len(ids)] == pytest.approx(list(score.token_logprobs), abs=1e-4)
    assert out["choices"][0]["text"].startswith(text)
    assert len(lp["text_offset"]) == len(lp["tokens"]) and lp["text_offset"][0] == 0
    assert out["usage"] == {"prompt_tokens": len(ids), "completion_tokens": 1,
                            "total_tokens": len(ids) + 1}  # fmt: skip
    # echo with max_tokens=0: the prompt only
    zero = post(
        server, "/completions", {"prompt": ids, "max_tokens": 0, "echo": True, "logprobs": 0}
    )
    assert zero["choices"][0]["logprobs"]["token_logprobs"] == lp["token_logprobs"][:-1]


def test_logprobs_of_generated_tokens_and_top_logprobs(server: ModelServer) -> None:
    out = post(server, "/completions", {"prompt": PROMPTS[0], "max_tokens": 5, "logprobs": 3})
    choice = out["choices"][0]
    lp = choice["logprobs"]
    assert len(lp["tokens"]) == 5 and "".join(lp["tokens"]) == choice["text"]
    for tok, value, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"], strict=True):
        assert 3 <= len(top) <= 4 and top[tok] == value  # the k best, and the chosen one
        assert value == pytest.approx(max(top.values()))  # greedy
    # each generated token's log-probability is the prompt score of the text it extends
    ids = server.lm.encode(PROMPTS[0])
    echoed = post(
        server,
        "/completions",
        {"prompt": ids + [server.lm.encode(choice["text"])[0]], "max_tokens": 0, "echo": True,
         "logprobs": 0},
    )  # fmt: skip
    assert echoed["choices"][0]["logprobs"]["token_logprobs"][-1] == pytest.approx(
        lp["token_logprobs"][0], abs=1e-4
    )


def test_n_choices_seeds_and_prompt_lists(server: ModelServer) -> None:
    body = {"prompt": PROMPTS[:2], "max_tokens": 6, "n": 3, "temperature": 1.0, "seed": 7}
    out = post(server, "/completions", body)
    assert [c["index"] for c in out["choices"]] == list(range(6))
    again = post(server, "/completions", body)
    assert [c["text"] for c in again["choices"]] == [c["text"] for c in out["choices"]]
    assert len({c["text"] for c in out["choices"][:3]}) > 1  # three samples, not one
    greedy = post(server, "/completions", {"prompt": PROMPTS[0], "max_tokens": 6, "n": 2})
    assert greedy["choices"][0]["text"] == greedy["choices"][1]["text"]


def test_stop_strings_end_generation(server: ModelServer) -> None:
    full = post(server, "/completions", {"prompt": PROMPTS[0], "max_tokens": 12})["choices"][0]
    word = full["text"].split()[1]
    cut = post(server, "/completions", {"prompt": PROMPTS[0], "max_tokens": 12, "stop": [word]})
    assert cut["choices"][0]["text"] == full["text"][: full["text"].index(word)]
    assert cut["choices"][0]["finish_reason"] == "stop"


def test_streaming_gives_the_same_text(server: ModelServer) -> None:
    body = {"prompt": PROMPTS[2], "max_tokens": 8, "n": 2, "logprobs": 2}
    whole = post(server, "/completions", body)
    chunks = sse(server, "/completions", body)
    for choice in whole["choices"]:
        mine = [c["choices"][0] for c in chunks if c["choices"][0]["index"] == choice["index"]]
        assert "".join(c["text"] for c in mine) == choice["text"]
        assert mine[-1]["finish_reason"] == choice["finish_reason"] == "length"
        tokens = [t for c in mine if c["logprobs"] for t in c["logprobs"]["token_logprobs"]]
        assert tokens == pytest.approx(choice["logprobs"]["token_logprobs"])
    echo = sse(server, "/completions", {"prompt": PROMPTS[0], "max_tokens": 2, "echo": True})
    assert "".join(c["choices"][0]["text"] for c in echo).startswith(PROMPTS[0])


# -- chat -------------------------------------------------------------------------------------


def test_chat_logprobs_and_streaming(server: ModelServer) -> None:
    messages = [{"role": "user", "content": PROMPTS[0]}]
    out = post(
        server,
        "/chat/completions",
        {"messages": messages, "max_tokens": 5, "logprobs": True, "top_logprobs": 2},
    )
    choice = out["choices"][0]
    content = choice["logprobs"]["content"]
    assert "".join(c["token"] for c in content) == choice["message"]["content"]
    for c in content:
        assert len(c["top_logprobs"]) == 2 and c["top_logprobs"][0]["logprob"] == c["logprob"]
        assert bytes(c["bytes"]).decode() == c["token"]
    # the same tokens as the completions endpoint on the same text (no chat template)
    plain = post(server, "/completions", {"prompt": PROMPTS[0], "max_tokens": 5})
    assert choice["message"]["content"] == plain["choices"][0]["text"]
    chunks = sse(
        server,
        "/chat/completions",
        {"messages": messages, "max_tokens": 5, "stream_options": {"include_usage": True}},
    )
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == choice["message"]["content"]
    assert chunks[-1]["usage"]["completion_tokens"] == 5
    no_lp = post(server, "/chat/completions", {"messages": messages, "max_tokens": 2})
    assert no_lp["choices"][0]["logprobs"] is None


# -- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/completions", {"prompt": "a", "max_tokens": -5}, "max_tokens"),
        ("/completions", {"prompt": "a", "temperature": -1}, "temperature"),
        ("/completions", {"prompt": "a", "n": 0}, "n"),
        ("/completions", {"prompt": "a", "logprobs": 50}, "logprobs"),
        ("/completions", {"prompt": []}, "prompt"),
        ("/completions", {"prompt": [[1, 2], "x"]}, "prompt"),
        ("/completions", {"prompt": [999999]}, "prompt"),
        ("/completions", {"prompt": "a", "frequency_penalty": 0.5}, "frequency_penalty"),
        ("/completions", {}, "prompt"),
        ("/chat/completions", {"messages": [{"role": "user", "content": {"a": 1}}]},
         "messages[0].content"),
        ("/chat/completions", {"messages": []}, "messages"),
        ("/chat/completions", {"messages": [{"role": "wizard", "content": "hi"}]},
         "messages[0].role"),
        ("/chat/completions", {"messages": [{"role": "user", "content": "a"}], "top_logprobs": 2},
         "top_logprobs"),
        ("/chat/completions", {"messages": [{"role": "user", "content": "a"}], "max_tokens": 0},
         "max_tokens"),
    ],
)  # fmt: skip
def test_bad_requests_are_400_naming_the_field(
    server: ModelServer, path: str, body: dict[str, Any], param: str
) -> None:
    status, err = post_error(server, path, body)
    assert status == 400
    assert err["param"] == param and err["message"].startswith(param + ": ")
    assert err["type"] == "invalid_request_error"


def test_prompts_over_the_context_are_refused_not_cut(server: ModelServer) -> None:
    limit = server.lm.max_length
    ids = [5] * (limit - 3)
    assert post(server, "/completions", {"prompt": ids, "max_tokens": 3})["choices"]
    status, err = post_error(server, "/completions", {"prompt": ids, "max_tokens": 4})
    assert status == 400 and err["param"] == "prompt" and err["code"] == "context_length_exceeded"
    assert f"context of {limit}" in err["message"] and "--max-length" in err["message"]
    status, err = post_error(
        server, "/chat/completions", {"messages": [{"role": "user", "content": "Zorbia " * limit}]}
    )
    assert status == 400 and err["code"] == "context_length_exceeded"


def test_other_model_name_and_unknown_path(server: ModelServer) -> None:
    status, err = post_error(server, "/completions", {"model": "gpt-4", "prompt": "a"})
    assert status == 404 and err["code"] == "model_not_found"
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(server.base_url + "/nothing", timeout=10)
    assert exc.value.code == 404 and "error" in json.loads(exc.value.read())


def test_malformed_http_gets_an_answer_not_a_dropped_connection(server: ModelServer) -> None:
    head = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    out = raw(server, head + b"Content-Length: abc\r\n\r\n{}")
    assert out.startswith(b"HTTP/1.1 400") and b'"param": "Content-Length"' in out
    out = raw(server, head + b"Content-Length: 99999999999999\r\n\r\n{}")
    assert out.startswith(b"HTTP/1.1 413") and b"over the limit" in out
    big = b"x" * 70_000
    out = raw(
        server,
        head + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % len(big) + big + b"\r\n0\r\n\r\n",
    )
    assert out.startswith(b"HTTP/1.1 413")
    out = raw(server, head + b"Content-Length: 5\r\n\r\n{abc}")
    assert out.startswith(b"HTTP/1.1 400") and b"not valid JSON" in out


def test_bearer_token(model_dir: Path) -> None:
    lm = load_local_model(LocalModelConfig(model_dir))
    srv = ModelServer(lm, name="tiny", port=0, api_key="s3cret").start()
    try:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            with pytest.raises(urllib.error.HTTPError) as exc:
                post(srv, "/completions", {"prompt": "a", "max_tokens": 1}, headers)
            assert exc.value.code == 401
        ok = post(srv, "/completions", {"prompt": "a", "max_tokens": 1},
                  {"Authorization": "Bearer s3cret"})  # fmt: skip
        assert ok["choices"]
    finally:
        srv.close()


def test_200_concurrent_clients_all_answered(server: ModelServer) -> None:
    import aiohttp

    async def main() -> list[Any]:
        # One connection per client, all opened at once (no pooling on the client side).
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

            async def one(i: int) -> Any:
                body = {"prompt": f"The river of {i} is", "max_tokens": 1, "echo": True,
                        "logprobs": 1}  # fmt: skip
                async with session.post(server.base_url + "/completions", json=body) as r:
                    return r.status, await r.json()

            return await asyncio.gather(*(one(i) for i in range(200)), return_exceptions=True)

    results = asyncio.run(main())
    failures = [r for r in results if not isinstance(r, tuple) or r[0] != 200]
    assert failures == []
    first = [r[1]["choices"][0]["logprobs"]["token_logprobs"] for r in results[:2]]
    alone = [
        post(server, "/completions", {"prompt": f"The river of {i} is", "max_tokens": 1,
                                      "echo": True, "logprobs": 1})
        for i in range(2)
    ]  # fmt: skip
    for batched, single in zip(first, alone, strict=True):
        assert batched[1:] == pytest.approx(single["choices"][0]["logprobs"]["token_logprobs"][1:],
                                            abs=1e-4)  # fmt: skip


# -- the command ------------------------------------------------------------------------------


def test_busy_port_is_one_line_and_exit_2(
    model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from safescale.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        assert main(["serve-model", str(model_dir), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"port {port}" in err[0] and "--port" in err[0]


@pytest.mark.slow
def test_command_serves_with_the_api_key_from_the_environment(model_dir: Path) -> None:
    code = "import sys; from safescale.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "SAFESCALE_API_KEY": "k3y", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "serve-model", str(model_dir), "--port", "0",
         "--max-length", "64", "--name", "m"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "API key required" in line and "context 64 tokens" in line, line
        url = line.split(" at ")[1].split()[0]

        def call(headers: dict[str, str]) -> int:
            req = urllib.request.Request(url + "/models", headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    assert json.loads(r.read())["data"][0]["id"] == "m"
                    return r.status
            except urllib.error.HTTPError as exc:
                return exc.code

        assert call({}) == 401
        assert call({"Authorization": "Bearer k3y"}) == 200
    finally:
        proc.terminate()
        t0 = time.monotonic()
        proc.wait(timeout=30)
        assert time.monotonic() - t0 < 30


def _scoring_rows(lm) -> list[SequenceRequest]:  # type: ignore[no-untyped-def]
    """lm-eval's scoring requests (echo, one new token) for two questions' choices."""
    rows = []
    for q in ("What colour is the river of Zorbia, which lies near Quell?", "Where is Marnot?"):
        question = lm.encode(f"Question: {q}\nAnswer:")
        for c in (" red", " blue sky", " green", " near the tower of Marnot"):
            rows.append(SequenceRequest(tuple(question + lm.encode(c)), 1, 0.0, 1.0, None, 2, 2))
    rows.append(SequenceRequest(rows[0].prompt, 0, prompt_logprobs=1))  # scoring only
    return rows


def _same(a: list[Any], b: list[Any]) -> None:
    for x, y in zip(a, b, strict=True):
        assert [t.token for t in x.tokens] == [t.token for t in y.tokens]
        assert x.prompt_logprobs is not None and y.prompt_logprobs is not None
        for u, v in zip(x.prompt_logprobs + x.tokens, y.prompt_logprobs + y.tokens, strict=True):
            assert u.logprob == pytest.approx(v.logprob, abs=1e-5)
            assert [t for t, _ in u.top] == [t for t, _ in v.top]


def test_shared_prefixes_are_computed_once_with_the_same_results(model_dir: Path) -> None:
    from safescale.evals._server_prefill import _share_prefixes

    lm = load_local_model(LocalModelConfig(model_dir))
    question = lm.encode(
        "Question: What colour is the river of Zorbia, which lies near Quell?\nAnswer:"
    )
    rows = [tuple(question + lm.encode(c)) for c in [" red", " blue sky", " green"]]
    rows += [tuple(lm.encode(PROMPTS[2])), tuple(question[:5])]  # one unrelated, one shorter
    groups = _share_prefixes(rows)
    assert sorted(len(r) for _, r in groups) == [1, 1, 3]  # the three choices share a pass
    reqs = [SequenceRequest(r, 6, prompt_logprobs=2, top_logprobs=2) for r in rows]
    shared = run_batch(lm, reqs)
    alone = [run_batch(lm, [r])[0] for r in reqs]  # one row: no sharing
    _same(shared, alone)
    assert [[t.token for t in a.tokens] for a in shared] == lm.generate([list(r) for r in rows], 6)


def test_scoring_batches_share_prefixes_within_and_across_batches(model_dir: Path) -> None:
    from safescale.evals import _server_prefill as engine

    lm = load_local_model(LocalModelConfig(model_dir))
    rows = _scoring_rows(lm)
    alone = [run_batch(lm, [r])[0] for r in rows]  # one row a batch: nothing shared
    cache = engine._PREFIX_CACHES[lm] = engine.PrefixCache(engine.PREFIX_CACHE_BYTES)
    engine._VERDICTS[lm] = {}
    # Concurrent clients split a question's choices over batches: 3, then 3 more, then 3.
    split = [res for s in range(0, len(rows), 3) for res in run_batch(lm, rows[s : s + 3])]
    _same(split, alone)
    # Both ways were compared with the two-pass states once, and agreed.
    assert engine._VERDICTS[lm] == {"packed": True, "cached": True}
    assert len(cache) >= 2 and 0 < cache.used <= cache.budget
    hit, n = cache.longest(rows[3].prompt, len(rows[3].prompt) - 1)
    assert hit is not None and n >= len(lm.encode("Question: What colour"))
    _same([res for s in range(0, len(rows), 4) for res in run_batch(lm, rows[s : s + 4])], alone)


def test_bfloat16_scoring_agrees_with_the_in_process_path(model_dir: Path) -> None:
    # Machines differ in their bf16 arithmetic (AMX or not): the server's packed passes and
    # kept prompts must hold in bf16 too, within bf16's rounding, through HTTP as in process.
    from safescale.evals import _server_prefill as engine

    lm = load_local_model(LocalModelConfig(model_dir, dtype="bfloat16"))
    rows = _scoring_rows(lm)
    engine._VERDICTS[lm] = {}
    engine._PREFIX_CACHES[lm] = engine.PrefixCache(engine.PREFIX_CACHE_BYTES)
    split = [res for s in range(0, len(rows), 3) for res in run_batch(lm, rows[s : s + 3])]
    alone = [run_batch(lm, [r])[0] for r in rows]
    assert set(engine._VERDICTS[lm]) == {"packed", "cached"}  # each way compared once
    exact = [run_batch(load_local_model(LocalModelConfig(model_dir)), [r])[0] for r in rows[:2]]

    # 1.2e-3 between split and alone, 1.9e-2 from fp32, on the AMD EPYC of RESULTS.md; the
    # engine trusts a packed pass in bf16 within 5e-2 of the two-pass one.
    def lps(res: Any) -> list[float]:
        assert res.prompt_logprobs is not None
        return [t.logprob for t in res.prompt_logprobs]

    for x, y in zip(split, alone, strict=True):
        assert lps(x) == pytest.approx(lps(y), abs=0.05)
    for x, z in zip(split, exact, strict=False):  # the first two rows
        assert lps(x) == pytest.approx(lps(z), abs=0.1)
    srv = ModelServer(lm, name="tiny", port=0).start()
    try:
        for r in rows[:4]:
            ids = list(r.prompt)
            out = post(srv, "/completions",
                       {"prompt": ids, "max_tokens": 1, "echo": True, "logprobs": 1})  # fmt: skip
            got = out["choices"][0]["logprobs"]["token_logprobs"][1 : len(ids)]
            (score,) = lm.loglikelihood([LoglikelihoodGroup((ids[0],), (tuple(ids[1:]),))])[0]
            assert got == pytest.approx(list(score.token_logprobs), abs=0.05)
            assert sum(got) == pytest.approx(score.logprob, abs=0.15)
    finally:
        srv.close()


def test_kept_prompts_carry_their_scores_to_later_batches(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A question's later choices, in a later batch, take the question's log-probabilities from
    # the batch that scored it: only what follows it goes through the output layer again.
    from safescale.evals import _server_engine
    from safescale.evals import _server_prefill as engine

    lm = load_local_model(LocalModelConfig(model_dir))
    rows = _scoring_rows(lm)[:4]  # one question's four choices
    question = lm.encode("Question: What colour is the river of Zorbia, which lies near Quell?")
    alone = [run_batch(lm, [r])[0] for r in rows]
    engine._PREFIX_CACHES[lm] = engine.PrefixCache(engine.PREFIX_CACHE_BYTES)
    engine._VERDICTS[lm] = {}
    projected: list[int] = []
    pick = _server_engine._pick_many

    def counting(head: Any, jobs: Any, k: int, device: Any) -> Any:
        projected.append(sum(len(t) for _, t in jobs))
        return pick(head, jobs, k, device)

    monkeypatch.setattr(_server_engine, "_pick_many", counting)
    first = run_batch(lm, rows[:1])  # the first choice alone: all its prompt scored, and kept
    later = run_batch(lm, rows[1:])  # the other three, the question's scores from the cache
    _same(first + later, alone)
    assert projected[0] == len(rows[0].prompt) - 1
    assert projected[1] < len(question) - 1, projected
    # A later batch asking for more alternatives than were kept scores the question again.
    more = [SequenceRequest(r.prompt, 1, prompt_logprobs=4, top_logprobs=2) for r in rows[1:]]
    again = run_batch(lm, more)
    assert projected[2] > len(question) and all(
        len(t.top) == 4 for res in again for t in res.prompt_logprobs or ()
    )


def test_a_long_packed_pass_is_spread_over_sequences_of_whole_groups() -> None:
    from safescale.evals._server_prefill import _spread

    share = 5.9e-4  # the 4x256 model's: 16 questions in one sequence pay a quarter in attention
    rows = _spread([43] * 16, [0] * 16, share)
    assert sorted(g for row in rows for g in row) == list(range(16))
    assert len(rows) > 1 and len({len(row) for row in rows}) == 1  # balanced: no padding
    assert _spread([43, 45], [0, 0], share) == [[0, 1]]  # short: one sequence, as before
    # A long group beside short ones: they share a sequence no longer than it.
    rows = _spread([120, 30, 30, 30, 30], [0] * 5, share)
    assert [0] in rows and all(sum([120, 30, 30, 30, 30][g] for g in row) <= 120 for row in rows)
    assert _spread([40], [0], share) == [[0]]


def test_spread_sequences_give_the_states_of_rows_alone(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safescale.evals import _server_prefill as engine

    lm = load_local_model(LocalModelConfig(model_dir))
    rows = []
    for i in range(6):  # six questions, four choices each, of different lengths
        question = lm.encode(f"Question {i}: where is the tower of Marnot{'?' * i}\nAnswer:")
        rows += [SequenceRequest(tuple(question + lm.encode(c)), 1, 0.0, 1.0, None, 2, 2)
                 for c in (" red", " near Quell", " blue", " in Zorbia by the river")]  # fmt: skip
    alone = [run_batch(lm, [r])[0] for r in rows]
    monkeypatch.setattr(engine, "_attention_share", lambda lm: 0.05)  # attention dear: spread
    engine._PREFIX_CACHES[lm] = engine.PrefixCache(engine.PREFIX_CACHE_BYTES)
    engine._VERDICTS[lm] = {}
    spread = []
    calls = []
    packed = engine._packed
    monkeypatch.setattr(engine, "_packed", lambda *a, **k: calls.append(p := packed(*a, **k)) or p)
    for s in (slice(0, 10), slice(10, 17), slice(17, 24)):  # questions split: kept prefixes
        spread += run_batch(lm, rows[s])
    _same(spread, alone)
    assert engine._VERDICTS[lm] == {"packed": True, "cached": True, "spread": True}
    # Batches ran several sequences, over prompts kept by an earlier batch too.
    assert [(hits, spread_used) for _, hits, spread_used in calls] == [
        (False, True),
        (True, True),
        (True, False),  # the last: a kept question's 3 choices, 4 new
    ]


def test_a_model_ignoring_packed_masks_falls_back_to_two_passes(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safescale.evals import _server_prefill as engine

    lm = load_local_model(LocalModelConfig(model_dir))
    rows = _scoring_rows(lm)
    alone = [run_batch(lm, [r])[0] for r in rows]
    engine._PREFIX_CACHES.pop(lm, None)
    engine._VERDICTS[lm] = {}
    base = lm.model.base_model
    forward = base.forward

    def causal_only(*args: Any, **kwargs: Any) -> Any:  # attention code that drops 4-D masks
        mask = kwargs.get("attention_mask")
        if mask is not None and mask.dim() == 4:
            kwargs["attention_mask"] = None
        return forward(*args, **kwargs)

    monkeypatch.setattr(base, "forward", causal_only)
    _same(run_batch(lm, rows), alone)  # right numbers, from the two-pass path
    assert engine._VERDICTS[lm]["packed"] is False
    _same(run_batch(lm, rows[::-1])[::-1], alone)


def test_prefix_cache_keeps_the_most_recently_used_within_its_budget() -> None:
    import torch

    from safescale.evals._server_prefill import MIN_SHARED, PrefixCache, _Kept

    def kept(start: int) -> _Kept:
        tokens = tuple(range(start, start + MIN_SHARED + 4))
        t = torch.zeros(1, len(tokens), 2)
        return _Kept(tokens, [t], [t], torch.zeros(len(tokens), 2), 100)

    cache = PrefixCache(250)
    a, b, c = kept(0), kept(100), kept(200)
    cache.add(a)
    cache.add(b)
    assert cache.longest((*a.tokens[:-2], 7, 7), 99) == (a, len(a.tokens) - 2)  # a used last
    cache.add(c)  # over budget: b, least recently used, goes
    assert len(cache) == 2 and cache.used == 200
    assert cache.longest(b.tokens, 99) == (None, 0)
    assert cache.longest(c.tokens, 5) == (None, 0)  # fewer than MIN_SHARED tokens: no use
    assert cache.longest(c.tokens, 99)[0] is c


def test_a_model_failure_is_a_json_500(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safescale.evals import _server_engine

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("out of memory")

    lm = load_local_model(LocalModelConfig(model_dir))
    srv = ModelServer(lm, name="tiny", port=0).start()
    try:
        monkeypatch.setattr(_server_engine, "run_batch", broken)
        with pytest.raises(urllib.error.HTTPError) as exc:
            post(srv, "/completions", {"prompt": "a", "max_tokens": 1})
        assert exc.value.code == 500
        assert "out of memory" in json.loads(exc.value.read())["error"]["message"]
        monkeypatch.undo()
        assert post(srv, "/completions", {"prompt": "a", "max_tokens": 1})["choices"]
    finally:
        srv.close()


def record_submits(server: ModelServer, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The futures of the jobs the server's engine is given from now on, in order."""
    futures: list[Any] = []
    submit = server.engine.submit

    def recording(*args: Any, **kwargs: Any) -> Any:
        future, cancel = submit(*args, **kwargs)
        futures.append(future)
        return future, cancel

    monkeypatch.setattr(server.engine, "submit", recording)
    return futures


def test_a_client_leaving_a_stream_stops_its_generation(
    server: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import http.client

    futures = record_submits(server, monkeypatch)
    host, port = server.base_url.split("//")[1].split("/")[0].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    body = {"messages": [{"role": "user", "content": "The"}], "max_tokens": 240,
            "stream": True}  # fmt: skip
    conn.request("POST", "/v1/chat/completions", json.dumps(body),
                 {"Content-Type": "application/json"})  # fmt: skip
    response = conn.getresponse()
    assert response.status == 200
    seen = b""
    while not re.search(rb'"content": ?"[^"]', seen):  # a generated token: the job is running
        chunk = response.read1(256)
        assert chunk, seen
        seen += chunk
    assert seen.startswith(b"data: ")
    conn.close()  # gone mid-generation (before it starts, the queued job is simply dropped)
    (result,) = futures[0].result(timeout=60)
    assert result.finish_reason == "stop" and len(result.tokens) < 240
    # Left alone, the same request runs to its length: the early stop was the disconnect.
    whole = post(server, "/chat/completions", {**body, "stream": False})
    assert whole["choices"][0]["finish_reason"] == "length"


def test_the_benchmarks_load_generator_reads_what_aiohttp_reads(server: ModelServer) -> None:
    # benchmarks/bench_server.py's clients (keep-alive connections, httptools' parser) carry
    # the serve-model target: they must get the answers a real client library gets.
    from tests._scripts import BENCHMARKS, script_module

    with script_module("bench_server", BENCHMARKS) as bench:
        run_clients, connection = bench._run_clients, bench._Connection
    bodies = [{"prompt": p, "max_tokens": 2, "echo": True, "logprobs": 1, "temperature": 0}
              for p in PROMPTS * 3]  # fmt: skip
    lean = run_clients(server.base_url, bodies, 4)
    full = run_clients(server.base_url, bodies, 4, lean=False)
    assert len(lean["latencies"]) == len(bodies)
    for a, b in zip(lean["bodies"], full["bodies"], strict=True):
        assert a["choices"][0]["text"] == b["choices"][0]["text"]
        assert a["choices"][0]["logprobs"]["token_logprobs"][1:] == pytest.approx(
            b["choices"][0]["logprobs"]["token_logprobs"][1:], abs=1e-4
        )
    with pytest.raises(RuntimeError, match="answered 413"):  # over the server's body limit
        run_clients(server.base_url, [{"prompt": "x" * 70_000}], 1)

    # A server that closes the connection after an answer: the next request fails, not hangs.
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        await writer.drain()
        writer.close()

    async def against_one_answer() -> None:
        closing = await asyncio.start_server(once, "127.0.0.1", 0)
        port = closing.sockets[0].getsockname()[1]
        async with closing:
            loop = asyncio.get_running_loop()
            _, conn = await loop.create_connection(connection, "127.0.0.1", port)
            request = b"POST /v1/completions HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"
            assert await asyncio.wait_for(conn.send(request), 10) == (200, b"{}")
            await asyncio.sleep(0.3)  # the close has been seen
            await asyncio.wait_for(conn.send(request), 10)

    with pytest.raises(ConnectionError, match="closed the connection"):
        asyncio.run(against_one_answer())
