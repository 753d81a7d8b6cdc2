"""What a run against an endpoint writes, and what it refuses before it starts.

Real parts: ``serve-model``'s server on loopback (with a bearer key), real Inspect runs through
``openai-api-completions``, a real SQLite workspace, the ledger's own export.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from safescale.cli import main
from safescale.evals import model_dir_sha256
from safescale.evals._models import REDACTED, redact_args
from safescale.ledger import Workspace

KEY = "s3cret-KEY-0123456789"


@pytest.fixture
def keyed(model_dir: Path) -> Iterator[Any]:
    """The tiny model served as ``tiny`` behind the bearer key :data:`KEY`."""
    from safescale.evals import LocalModelConfig, ModelServer, load_local_model

    srv = ModelServer(
        load_local_model(LocalModelConfig(model_dir)), name="tiny", port=0, api_key=KEY
    ).start()
    yield srv
    srv.close()


def _workspace_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """A workspace the commands run in ``tmp_path`` find."""
    monkeypatch.chdir(tmp_path)
    ws = Workspace.init(tmp_path / "ws")
    monkeypatch.setenv("SAFESCALE_HOME", str(ws.root))
    return ws


def _run(keyed: Any, mc: Path, model_dir: Path, *extra: str) -> int:
    return main(
        ["eval", "run", str(mc), "-m", "openai-api-completions/local/tiny", "--tokenizer",
         str(model_dir), "-M", f"base_url={keyed.base_url}", "--limit", "4", "--json",
         "--log-dir", "logs", *extra]
    )  # fmt: skip


def test_the_api_key_is_in_no_log_evidence_or_ledger_entry(
    keyed: Any,
    mc_small: Path,
    model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A signed ledger cannot be edited afterwards: a key written into it would be handed to
    every outside reviewer of its export."""
    ws = _workspace_here(tmp_path, monkeypatch)
    assert _run(keyed, mc_small, model_dir, "-M", f"api_key={KEY}") == 0, capsys.readouterr()
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == f"{model_dir.name}-{model_dir_sha256(model_dir)[:12]}"
    evidence = Workspace.open(ws.root).evidence()
    assert evidence and all(e.details["model_args"]["api_key"] == REDACTED for e in evidence)
    assert main(["ledger", "export", "-o", str(tmp_path / "export.json")]) == 0
    written = [tmp_path / "export.json", *(tmp_path / "logs").iterdir()]
    written += [p for p in ws.root.rglob("*") if p.is_file()]
    for path in written:
        assert KEY.encode() not in path.read_bytes(), path
    # The log is a zip: its members are compressed, so read them too.
    import zipfile

    for log in (tmp_path / "logs").glob("*.eval"):
        with zipfile.ZipFile(log) as z:
            assert all(KEY.encode() not in z.read(n) for n in z.namelist()), log


def test_a_wrong_key_or_model_name_is_refused_before_the_run(
    keyed: Any,
    mc_small: Path,
    model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert _run(keyed, mc_small, model_dir, "-M", "api_key=wrong") == 2
    err = capsys.readouterr().err
    assert "refused the API key (HTTP 401)" in err and "-M api_key=KEY" in err
    code = main(
        ["eval", "run", str(mc_small), "-m", "openai-api-completions/local/m", "--tokenizer",
         str(model_dir), "-M", f"base_url={keyed.base_url}", "-M", f"api_key={KEY}",
         "--log-dir", "logs"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "serves 'tiny', not 'm'" in err, err
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ({"api_key": "k", "base_url": "http://u:p@h:8/v1", "n": 3},
         {"api_key": REDACTED, "base_url": "http://h:8/v1", "n": 3}),
        ({"Authorization": "Bearer x", "auth_token": "t", "dtype": "float32"},
         {"Authorization": REDACTED, "auth_token": REDACTED, "dtype": "float32"}),
        ("model=m,api_key=k,base_url=http://h/v1", "model=m,api_key=<redacted>,base_url=http://h/v1"),
        ({"base_url": "http://u:p@[::1]:99999/v1"}, {"base_url": "http://[::1]:99999/v1"}),
    ],
)  # fmt: skip
def test_provider_arguments_lose_their_secrets(given: Any, kept: Any) -> None:
    assert redact_args(given) == kept


class _Operator:
    """Serves weights under the name ``m`` on one port, and serves others there on demand (a
    server restarted by its operator between two requests of a run)."""

    def __init__(self, weights: Path) -> None:
        from safescale.evals import ModelServer

        self.server: ModelServer = self._serve(weights, 0)
        self.base_url = self.server.base_url
        self.port = int(self.base_url.rsplit(":", 1)[1].split("/")[0])

    @staticmethod
    def _serve(weights: Path, port: int, sha: str | None = None) -> Any:
        from safescale.evals import LocalModelConfig, ModelServer, load_local_model

        lm = load_local_model(LocalModelConfig(weights))
        return ModelServer(lm, name="m", port=port, weights_sha256=sha).start()

    def serve(self, weights: Path, sha: str | None = None) -> None:
        """Serve ``weights`` on the same port; ``sha``: what the server says they are."""
        self.server.close()
        self.server = self._serve(weights, self.port, sha)


def _eval_run_with_operator(
    operator: _Operator, task: Path, model_dir: Path, around: Any, monkeypatch: Any
) -> int:
    """``eval run`` of ``task`` (its first four questions) through ``serve-model``, each
    task's run wrapped by ``around(run, *args, **kwargs)`` (where the operator acts) unless
    ``around`` is ``None``."""
    from safescale.evals import _run as run_module

    if around is not None:
        original = run_module._run_one
        monkeypatch.setattr(
            run_module, "_run_one", lambda *args, **kwargs: around(original, *args, **kwargs)
        )
    try:
        return main(
            ["eval", "run", str(task), "-m", "openai-api-completions/local/m",
             "--tokenizer", str(model_dir), "-M", f"base_url={operator.base_url}", "-M",
             "api_key=x", "--limit", "4", "--json", "--log-dir", "logs"]
        )  # fmt: skip
    finally:
        operator.server.close()


def test_results_are_refused_when_the_server_changed_weights_during_the_run(
    two_finals: tuple[Path, Path],
    mc_small: Path,
    model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The server is restarted with other weights under the same name and port when the run
    ends (as an operator would, mid-evaluation): the evidence would name weights it was not
    all about, so nothing is recorded."""
    a, b = two_finals
    ws = _workspace_here(tmp_path, monkeypatch)
    operator = _Operator(a)

    def run_then_swap(run: Any, *args: Any, **kwargs: Any) -> Any:
        out = run(*args, **kwargs)
        operator.serve(b)
        return out

    code = _eval_run_with_operator(operator, mc_small, model_dir, run_then_swap, monkeypatch)
    err = capsys.readouterr().err
    assert code == 1, err
    assert f"served weights {model_dir_sha256(a)[:12]} when the run began" in err
    assert f"now serves {model_dir_sha256(b)[:12]}" in err and "none are recorded" in err
    assert Workspace.open(ws.root).evidence() == []


HOSTILE_SHA = "\x1b[2J\x1b[31m" + "f" * 60 + "\n\u202e"
"""What a hostile server might say its weights are: escapes that would clear and colour a
terminal, a newline and a right-to-left override."""


@pytest.mark.parametrize("says", [None, HOSTILE_SHA], ids=["other-weights", "hostile-fingerprint"])
def test_a_swap_and_a_swap_back_within_a_run_records_nothing(
    says: str | None,
    two_finals: tuple[Path, Path],
    mc_small: Path,
    model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The operator swaps in other weights under the same name and port once the run has
    checked the server, and swaps the first back before it ends: the checks at the start and
    the end see the first weights both times, but every answer names the weights that gave it
    (``system_fingerprint``), so the run is refused and nothing recorded."""
    a, b = two_finals
    ws = _workspace_here(tmp_path, monkeypatch)
    operator = _Operator(a)

    def swap_run_swap_back(run: Any, *args: Any, **kwargs: Any) -> Any:
        operator.serve(b, says)
        try:
            return run(*args, **kwargs)
        finally:
            operator.serve(a)

    code = _eval_run_with_operator(operator, mc_small, model_dir, swap_run_swap_back, monkeypatch)
    err = capsys.readouterr().err
    assert code == 1, err
    assert f"served weights {model_dir_sha256(a)[:12]} when the run began" in err
    who = (
        "a server that does not name its weights" if says else f"weights {model_dir_sha256(b)[:12]}"
    )
    assert f"answered by {who}" in err and "none are recorded" in err
    # one line, and nothing the server wrote reaches the terminal as a control character
    assert err.count("\n") == 1 and "\x1b" not in err and "\u202e" not in err
    assert Workspace.open(ws.root).evidence() == []


def test_a_swap_late_in_a_sample_is_seen(
    two_finals: tuple[Path, Path],
    model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Inspect logs only the first five answers of each sample by default; a run against a
    server that names its weights logs every one. An eight-choice question is eight answers:
    the last two come from the other weights, and are seen."""
    from safescale.evals._server_jobs import FINGERPRINT_PREFIX, ServerState

    a, b = two_finals
    ws = _workspace_here(tmp_path, monkeypatch)
    colours = ["red", "blue", "green", "white", "black", "grey", "pink", "brown"]
    task = tmp_path / "eight.jsonl"
    task.write_text(
        json.dumps({"question": "What colour is the sky?", "choices": colours, "answer": 1}) + "\n"
    )
    answered = [0]

    def late_swap(state: ServerState) -> str:
        answered[0] += 1  # the tokenizer check's probe first, then the eight choices
        return FINGERPRINT_PREFIX + model_dir_sha256(a if answered[0] <= 1 + 6 else b)

    monkeypatch.setattr(ServerState, "fingerprint", property(late_swap))
    code = _eval_run_with_operator(_Operator(a), task, model_dir, None, monkeypatch)
    err = capsys.readouterr().err
    assert answered[0] == 1 + 8, answered
    assert code == 1, err
    assert f"answered by weights {model_dir_sha256(b)[:12]}" in err
    assert Workspace.open(ws.root).evidence() == []


def test_every_answer_of_serve_model_names_its_weights(model_dir: Path) -> None:
    """``system_fingerprint`` on completions and chat completions, streamed or not, through
    the ``openai`` package, as the OpenAI API defines the field."""
    import openai

    from safescale.evals import LocalModelConfig, ModelServer, load_local_model

    want = "weights-sha256:" + model_dir_sha256(model_dir)
    server = ModelServer(load_local_model(LocalModelConfig(model_dir)), name="m", port=0).start()
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key="x")
        done = client.completions.create(model="m", prompt="a b", max_tokens=2)
        chat = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "a b"}], max_tokens=2
        )
        chunks = list(client.completions.create(model="m", prompt="a", max_tokens=2, stream=True))
    finally:
        server.close()
    assert done.system_fingerprint == chat.system_fingerprint == want
    assert chunks and all(c.system_fingerprint == want for c in chunks)


def test_a_record_named_by_its_endpoint_stays_with_the_weights_first_seen(
    two_finals: tuple[Path, Path],
    mc_small: Path,
    model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A record that names an endpoint and holds no hash is reached by whatever the server
    serves: results about other weights under the same name used to join the first weights'
    evidence on that record, and a determination read them together."""
    from safescale.evals import LocalModelConfig, ModelServer, load_local_model

    a, b = two_finals
    ws = _workspace_here(tmp_path, monkeypatch)
    endpoint = "openai-api-completions/local/m"
    assert main(["compute", "add", "--model", "ep1", "--flops", "1e18", "--weights", endpoint]) == 0

    def run(folder: Path) -> int:
        srv = ModelServer(load_local_model(LocalModelConfig(folder)), name="m", port=0).start()
        try:
            return main(
                ["eval", "run", str(mc_small), "-m", endpoint, "--tokenizer", str(model_dir),
                 "-M", f"base_url={srv.base_url}", "-M", "api_key=x", "--limit", "4",
                 "--log-dir", "logs"]
            )  # fmt: skip
        finally:
            srv.close()

    assert run(a) == 0
    capsys.readouterr()
    first = Workspace.open(ws.root).evidence()
    assert {e.model for e in first} == {"ep1"}
    assert {e.details["weights_sha256"] for e in first} == {model_dir_sha256(a)}
    assert run(b) == 2
    err = capsys.readouterr().err
    assert f"model 'ep1' has evidence about weights {model_dir_sha256(a)[:12]}" in err, err
    assert f"these results are about {model_dir_sha256(b)[:12]}" in err
    assert len(Workspace.open(ws.root).evidence()) == len(first)


def test_a_tokenizer_that_is_not_the_served_models_is_refused(
    server: Any,
    mc_small: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Another tokenizer split every choice into other ids: the run went through and gave
    another score (0.375 where the right one is 0.25), recorded as the served weights'."""
    from tests.evals._factory import build_model

    other = build_model(tmp_path / "other", hidden=32, layers=1, heads=2, vocab=400, seed=1,
                        steps=1)  # fmt: skip
    monkeypatch.chdir(tmp_path)
    code = main(
        ["eval", "run", str(mc_small), "-m", "openai-api-completions/local/tiny", "--tokenizer",
         str(other), "-M", f"base_url={server.base_url}", "-M", "api_key=x", "--log-dir", "logs"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"--tokenizer: the tokenizer in {other} is not the served model's" in err
    assert not (tmp_path / "logs").exists()


def test_a_base_url_without_its_api_path_is_named(
    server: Any, mc_small: Path, model_dir: Path, tmp_path: Path, capsys: Any
) -> None:
    """``http://host:port`` where the API answers under ``/v1``: every request of the run
    would have been a 404, reported as an endpoint that does not support completions."""
    root = server.base_url.removesuffix("/v1")
    code = main(
        ["eval", "run", str(mc_small), "-m", "openai-api-completions/local/tiny", "--tokenizer",
         str(model_dir), "-M", f"base_url={root}", "-M", "api_key=x",
         "--log-dir", str(tmp_path / "logs")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and f"the server at {root} answers under {root}/v1" in err, err


@pytest.mark.parametrize("form", ["texts", "pieces", "incremental", "wrong"])
def test_the_tokenizer_probe_accepts_each_way_a_server_names_tokens(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    """serve-model names a token by its decoded text, other servers by its vocabulary entry or
    by the text it adds (vLLM): all three are the same tokenizer; other text is not."""
    import io
    import urllib.request

    from safescale._errors import UserError
    from safescale.evals._mc import hf_tokenizer
    from safescale.evals._models import PROBE, check_tokenizer

    tok = hf_tokenizer(str(model_dir))
    ids = tok.encode(PROBE, add_special_tokens=False)
    texts = [tok.decode([i]) for i in ids]
    named = {
        "texts": texts,
        "pieces": tok.convert_ids_to_tokens(ids),
        # The same text cut elsewhere: one character moved from the second token to the first.
        "incremental": [texts[0] + texts[1][:1], texts[1][1:], *texts[2:]],
        "wrong": ["x", *texts[1:]],
    }[form]
    answer = {"choices": [{"logprobs": {"tokens": [*named, "!"]}}]}

    def urlopen(request: Any, timeout: float) -> Any:
        assert json.loads(request.data)["prompt"] == ids
        return io.BytesIO(json.dumps(answer).encode())

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    args = {"base_url": "http://127.0.0.1:1/v1", "api_key": "x"}
    if form == "wrong":
        with pytest.raises(UserError, match="names token 0"):
            check_tokenizer("openai-api-completions/local/m", args, tok, "tok/")
    else:
        check_tokenizer("openai-api-completions/local/m", args, tok, "tok/")


@pytest.mark.parametrize(
    ("reported", "context"),
    [(4096, 4096), (None, None), (True, None), (-5, None), (2, None), (2**40, None),
     ("4096", None), (4096.0, None)],
)  # fmt: skip
def test_a_servers_context_is_read_from_its_model_list(
    monkeypatch: pytest.MonkeyPatch, reported: object, context: int | None
) -> None:
    """vLLM and serve-model report ``max_model_len``; a card without it (a hosted API) or with
    a value that is no plausible length gives no context (the server then refuses long
    prompts itself)."""
    import io
    import urllib.request

    from safescale.evals import served_context

    card: dict[str, object] = {"id": "m", "object": "model"}
    if reported is not None:
        card["max_model_len"] = reported

    def urlopen(request: Any, timeout: float) -> Any:
        assert request.full_url == "http://127.0.0.1:1/v1/models"
        return io.BytesIO(json.dumps({"data": [card]}).encode())

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    args = {"base_url": "http://127.0.0.1:1/v1", "api_key": "x"}
    assert served_context("openai-api-completions/local/m", args) == context
    assert served_context("vllm-completions/m", args) == context
