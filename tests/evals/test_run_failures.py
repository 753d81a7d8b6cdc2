"""``eval run`` when the run itself cannot succeed: said in one line, before the run if it can
be known then, never a traceback.

Real parts: a real Inspect run of a task file whose solver raises, a real closed loopback port
and an unresolvable host name (``.invalid`` never resolves), a real tokenizer folder.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from safescale.cli import main

BOOM = """
from inspect_ai import Task, task
from inspect_ai.dataset import Sample
from inspect_ai.scorer import match
from inspect_ai.solver import solver


@solver
def boom():
    async def solve(state, generate):
        raise ValueError("boom in the solver")

    return solve


@task
def exploding():
    return Task(dataset=[Sample(input="1 + 1 =", target="2")], solver=boom(), scorer=match())
"""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends: nothing listens


def _one_line(err: str) -> str:
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_task_that_fails_inside_inspect_is_one_line_with_its_log(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = tmp_path / "exploding.py"
    task.write_text(BOOM)
    logs = tmp_path / "logs"
    code = main(["eval", "run", str(task), "-m", str(model_dir), "--json", "--log-dir", str(logs)])
    out, err = capsys.readouterr()
    line = _one_line(err)
    assert out == ""  # no half answer on stdout (without --json, Inspect shows its own panel)
    assert code == 1, line
    assert "the evaluation of exploding failed" in line and "boom in the solver" in line
    written = list(logs.glob("*.eval"))
    assert len(written) == 1 and str(written[0]) in line  # the log that holds the traceback


@pytest.mark.parametrize(
    ("tokenizer", "said"),
    [
        (None, "--tokenizer: log-likelihood scoring of openai-api-completions/local/tiny needs"),
        ("no-such-folder", "no-such-folder: no such folder; give a local tokenizer folder"),
        ("empty", "empty: cannot load the tokenizer"),
    ],
)
def test_an_endpoint_that_cannot_be_scored_is_refused_before_the_run(
    mc_small: Path,
    server: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tokenizer: str | None,
    said: str,
) -> None:
    """A multiple-choice task on an endpoint needs a tokenizer folder that loads: without one
    the run used to start and end in a traceback from inside Inspect's loop."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    argv = ["eval", "run", str(mc_small), "-m", "openai-api-completions/local/tiny",
            "--model-id", "m", "-M", "api_key=x", "-M", f"base_url={server.base_url}",
            "--log-dir", "logs"]  # fmt: skip
    if tokenizer is not None:
        argv += ["--tokenizer", tokenizer]
    code = main(argv)
    line = _one_line(capsys.readouterr().err)
    assert code == 2 and said in line, line
    assert not (tmp_path / "logs").exists()  # refused before any run


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "no-such-host.invalid"])
def test_an_endpoint_where_nothing_listens_is_one_line_not_a_retry_loop(
    mc_small: Path,
    model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    host: str,
) -> None:
    """Inspect would retry a refused connection for minutes; the identity lookup that comes
    first finds that nothing listens and stops there, with status 1 (the machine, not the
    input)."""
    monkeypatch.chdir(tmp_path)
    url = f"http://{host.format(port=_closed_port())}/v1"
    code = main(
        ["eval", "run", str(mc_small), "-m", "openai-api-completions/local/m",
         "--tokenizer", str(model_dir), "-M", f"base_url={url}", "-M", "api_key=x",
         "--log-dir", "logs"]
    )  # fmt: skip
    line = _one_line(capsys.readouterr().err)
    assert code == 1, line
    assert f"--model: nothing answers at {url}" in line and "(-M base_url=URL)" in line
    assert not (tmp_path / "logs").exists()


def test_a_red_team_target_where_nothing_listens_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same check serves every command that takes an Inspect model (here the address
    comes from the environment, as Inspect reads it)."""
    monkeypatch.chdir(tmp_path)
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    monkeypatch.setenv("LOCAL_BASE_URL", url)
    monkeypatch.setenv("LOCAL_API_KEY", "x")
    code = main(["redteam", "run", "--target", "openai-api/local/m", "--behaviours", "lab:2",
                 "--budget", "1", "--attacks", "role-play"])  # fmt: skip
    line = _one_line(capsys.readouterr().err)
    assert code == 1, line
    assert f"nothing answers at {url}" in line and "*_BASE_URL" in line


def test_a_server_that_goes_away_mid_run_ends_the_run(
    mc_small: Path,
    model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Past the check before the run (a server that dies after it), Inspect's retries are
    bounded for a server at a given address: the run ends in one line, not a hang (Inspect
    retries for ever by default). Here the bound is one retry, to keep the test short."""
    import time

    from safescale.evals import _models, _run

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(_models, "check_listening", lambda *a, **k: None)
    monkeypatch.setattr(_run, "SERVER_RETRIES", {"max_retries": 1, "timeout": 60})
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    t0 = time.monotonic()
    code = main(
        ["eval", "run", str(mc_small), "-m", "openai-api-completions/local/m", "--model-id",
         "m", "--tokenizer", str(model_dir), "-M", f"base_url={url}", "-M", "api_key=x",
         "--limit", "2", "--json", "--log-dir", "logs"]
    )  # fmt: skip
    line = _one_line(capsys.readouterr().err)
    assert code == 1 and "the evaluation of mc failed" in line, line
    assert time.monotonic() - t0 < 60
