"""The HTTP path, for real: serve-model on loopback, Inspect's own HTTP providers against it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safescale.evals import LocalModelConfig, ModelServer, load_local_model, run_suite


@pytest.fixture
def server(model_dir: Path):
    lm = load_local_model(LocalModelConfig(model_dir))
    srv = ModelServer(lm, name="tiny", port=0).start()
    yield srv
    srv.close()


def test_completions_over_http_match_in_process(
    server: ModelServer, model_dir: Path, mc_small: Path, tmp_path: Path
) -> None:
    from inspect_ai.log import read_eval_log

    local = run_suite(str(mc_small), str(model_dir), log_dir=tmp_path / "a", limit=8)
    remote = run_suite(
        str(mc_small),
        "openai-api-completions/local/tiny",
        model_args={"base_url": server.base_url, "api_key": "none"},
        tokenizer=str(model_dir),
        log_dir=tmp_path / "b",
        limit=8,
    )
    a = [s.metadata["loglikelihoods"] for s in read_eval_log(str(local.log_path)).samples]
    b = [s.metadata["loglikelihoods"] for s in read_eval_log(str(remote.log_path)).samples]
    assert len(a) == len(b) == 8
    for x, y in zip(a, b, strict=True):
        assert x == pytest.approx(y, abs=1e-4)
    assert [m.value for m in local.metrics] == [m.value for m in remote.metrics]


def test_chat_completions_over_http(server: ModelServer, tmp_path: Path) -> None:
    gen = tmp_path / "gen.jsonl"
    gen.write_text(
        "\n".join(
            json.dumps({"input": f"The river of {n} is", "target": "red"})
            for n in ["Zorbia", "Quell"]
        )
    )
    r = run_suite(
        str(gen),
        "openai-api/local/tiny",
        model_args={"base_url": server.base_url, "api_key": "none"},
        log_dir=tmp_path / "logs",
    )
    assert r.metrics[0].n == 2


def test_bad_request_is_400(server: ModelServer) -> None:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(
        server.base_url + "/completions",
        data=b'{"prompt": [999999], "prompt_logprobs": 1}',
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, timeout=10)
    assert exc.value.code == 400
