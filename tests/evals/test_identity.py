"""One model identity, content-derived evidence ids, every task of a file, Inspect's options.

Real parts: the tiny Llama built by the fixtures, real Inspect runs, a real SQLite workspace.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from safescale._errors import UserError
from safescale.cli import main
from safescale.evals import model_dir_sha256, resolve_model_identity
from safescale.ledger import Workspace
from safescale.policy import ModelRecord


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    ws = Workspace.init(tmp_path / "ws")
    monkeypatch.setenv("SAFESCALE_HOME", str(ws.root))
    return ws


def _record(model_id: str, **kw: object) -> ModelRecord:
    return ModelRecord(id=model_id, flops=1e12, **kw)  # type: ignore[arg-type]


def test_same_weights_one_id_whatever_the_route(two_finals: tuple[Path, Path]) -> None:
    a, b = two_finals
    routes = [str(a), f"safescale/{a}", f"hf/{a}"]
    ids = {resolve_model_identity(r).id for r in routes}
    sha = model_dir_sha256(a)
    assert ids == {f"final-{sha[:12]}"}
    # Different weights under the same folder name never collide.
    assert resolve_model_identity(str(b)).id != resolve_model_identity(str(a)).id
    # Weights on record resolve to their record, by every route.
    records = [_record("lab-a", weights_sha256=sha, weights_ref=str(a))]
    assert {resolve_model_identity(r, records=records).id for r in routes} == {"lab-a"}
    assert resolve_model_identity(str(b), records=records).id.startswith("final-")


def test_model_id_is_chosen_once(two_finals: tuple[Path, Path]) -> None:
    a, b = two_finals
    records = [_record("lab-a", weights_sha256=model_dir_sha256(a))]
    with pytest.raises(UserError, match="on record as 'lab-a'"):
        resolve_model_identity(str(a), model_id="renamed", records=records)
    with pytest.raises(UserError, match="on record with other weights"):
        resolve_model_identity(str(b), model_id="lab-a", records=records)
    assert resolve_model_identity(str(a), model_id="lab-a", records=records).source == "given"


def test_an_endpoint_names_the_model_it_serves() -> None:
    endpoint = "openai-api-completions/local/m"
    assert resolve_model_identity(endpoint).id == endpoint
    assert resolve_model_identity(endpoint, model_id="lab-a").id == "lab-a"
    records = [_record("lab-a", weights_ref=endpoint)]
    found = resolve_model_identity(endpoint, records=records)
    assert (found.id, found.source, found.endpoint) == ("lab-a", "ledger", endpoint)


def test_runs_by_path_and_by_inspect_string_land_on_the_recorded_model(
    two_finals: tuple[Path, Path], mc_small: Path, tmp_path: Path, workspace: Workspace, capsys
) -> None:
    a, b = two_finals
    workspace.append_model(_record("lab-a", weights_sha256=model_dir_sha256(a)))
    for model in (str(a), f"safescale/{a}", str(b)):
        code = main(
            ["eval", "run", str(mc_small), "-m", model, "--limit", "3", "--json",
             "--log-dir", str(tmp_path / "logs")]
        )  # fmt: skip
        assert code == 0
    capsys.readouterr()
    models = [e.model for e in Workspace.open(workspace.root).evidence()]
    assert models[:6] == ["lab-a"] * 6
    assert set(models[6:]) == {f"final-{model_dir_sha256(b)[:12]}"}


LM_EVAL = {
    "results": {"tiny_mc": {"alias": "tiny_mc", "acc,none": 0.4, "acc_norm,none": 0.2}},
    "n-samples": {"tiny_mc": {"original": 5, "effective": 5}},
    "config": {"model": "local-completions", "model_args": "model=m,base_url=http://x/v1"},
    "lm_eval_version": "0.4.13",
}


def test_reimport_is_recognised_and_an_override_makes_new_ids(
    tmp_path: Path, workspace: Workspace, capsys
) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(LM_EVAL))
    assert main(["eval", "import", str(path), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(["eval", "import", str(path), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["evidence"] == first["evidence"]
    assert again["already_recorded"] == first["evidence"]
    ws = Workspace.open(workspace.root)
    assert len(ws.evidence()) == 2
    assert {e.model for e in ws.evidence()} == {"local-completions/m"}
    assert main(["eval", "import", str(path), "--model-id", "lab-a", "--json"]) == 0
    other = json.loads(capsys.readouterr().out)
    assert not set(other["evidence"]) & set(first["evidence"])
    evidence = Workspace.open(workspace.root).evidence()
    assert len(evidence) == 4 and len({e.id for e in evidence}) == 4
    assert main(["eval", "import", str(path)]) == 0
    assert "2 already recorded, not added again" in capsys.readouterr().out


TWO_TASKS = """
from inspect_ai import Task, task
from inspect_ai.dataset import Sample
from inspect_ai.scorer import includes
from inspect_ai.solver import generate


@task
def first(n: int = 2):
    return Task(
        dataset=[Sample(input=f"The river of Zorbia is {i}", target="") for i in range(n)],
        solver=generate(),
        scorer=includes(),
    )


@task
def second():
    return Task(
        dataset=[Sample(input="The city of Quell", target="") for _ in range(2)],
        solver=generate(),
        scorer=includes(),
    )
"""


def test_every_task_of_a_file_is_run_and_recorded(
    model_dir: Path, tmp_path: Path, workspace: Workspace, capsys
) -> None:
    from inspect_ai.log import read_eval_log

    path = tmp_path / "two_tasks.py"
    path.write_text(TWO_TASKS)
    assert path.is_absolute()
    code = main(
        ["eval", "run", str(path), "-m", str(model_dir), "-T", "n=3", "--epochs", "2",
         "--max-tokens", "2", "--temperature", "0", "--model-id", "tiny", "--json",
         "--log-dir", str(tmp_path / "logs")]
    )  # fmt: skip
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["task"] for r in out] == ["first", "second"]
    # Three samples (-T n=3), each run twice: n counts samples, not sample-epochs.
    assert [r["metrics"][0]["n"] for r in out] == [3, 2]
    log = read_eval_log(out[0]["log"], header_only=True)
    assert log.eval.task_args == {"n": 3} and log.eval.config.epochs == 2
    assert log.plan.config.max_tokens == 2 and log.plan.config.temperature == 0
    evidence = Workspace.open(workspace.root).evidence()
    assert {e.subject for e in evidence} == {"first", "second"}
    assert {e.model for e in evidence} == {"tiny"}
    assert {e.elicitation for e in evidence} == {
        "epochs=2, max_tokens=2, task_args={'n': '3'}, temperature=0.0"
    }


def test_run_options_are_checked(model_dir: Path, mc_small: Path, run_cli) -> None:
    code, _, err = run_cli("eval", "run", str(mc_small), "-m", str(model_dir), "-T", "n=3")
    assert code == 2 and "-T: task arguments (-T) apply to Inspect .py task files only" in err
    code, _, err = run_cli("eval", "run", str(mc_small), "-m", str(model_dir), "--epochs", "0")
    assert code == 2 and "--epochs" in err
    code, _, err = run_cli("eval", "run", str(mc_small), "-m", str(model_dir), "--scorer", "nope")
    assert code == 2 and "unknown scorer 'nope'" in err and "opening" in err


def test_several_task_arguments_are_each_run_and_recorded(
    model_dir: Path, mc_small: Path, tmp_path: Path, workspace: Workspace, capsys
) -> None:
    gen = tmp_path / "gen.jsonl"
    gen.write_text(json.dumps({"input": "The river of Zorbia is", "target": "red"}) + "\n")
    code = main(
        ["eval", "run", str(mc_small), str(gen), "-m", str(model_dir), "--limit", "2",
         "--max-tokens", "2", "--json", "--log-dir", str(tmp_path / "logs")]
    )  # fmt: skip
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["task"] for r in out] == ["mc", "gen"]
    assert {e.subject for e in Workspace.open(workspace.root).evidence()} == {"mc", "gen"}


ONE_TASK = """
from inspect_ai import Task, task
from inspect_ai.dataset import Sample
from inspect_ai.scorer import includes
from inspect_ai.solver import generate


@task
def zorbia():
    return Task(
        dataset=[Sample(input="The river of Zorbia is", target="red") for _ in range(2)],
        solver=generate(),
        scorer=includes(),
    )
"""


def test_evidence_through_serve_model_lands_on_the_folders_record(
    two_finals: tuple[Path, Path],
    tmp_path: Path,
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
    capsys,
) -> None:
    """Evidence about ``a/final`` reached by path and through ``serve-model`` lands on one
    record; ``b/final`` (other weights, same folder and served names) on another."""
    from safescale.evals import LocalModelConfig, ModelServer, load_local_model, served_weights

    a, b = two_finals
    task = tmp_path / "zorbia.py"
    task.write_text(ONE_TASK)
    servers = {
        p: ModelServer(load_local_model(LocalModelConfig(p)), name="m", port=0).start()
        for p in (a, b)
    }
    try:
        card = json.loads(urllib.request.urlopen(servers[a].base_url + "/models").read())
        assert card["data"][0]["weights_sha256"] == model_dir_sha256(a)
        assert card["data"][0]["root"] == "final" and card["data"][0]["id"] == "m"
        monkeypatch.setenv("LOCAL_API_KEY", "none")

        def run(model: str, url: str | None = None) -> list[str]:
            if url is not None:  # Inspect's way to an openai-api/local/... server
                monkeypatch.setenv("LOCAL_BASE_URL", url)
            code = main(
                ["eval", "run", str(task), "-m", model, "--max-tokens", "2", "--json",
                 "--log-dir", str(tmp_path / "logs")]
            )  # fmt: skip
            assert code == 0, capsys.readouterr()
            out = json.loads(capsys.readouterr().out)  # one task: one object
            return [r["model"] for r in (out if isinstance(out, list) else [out])]

        derived_a, derived_b = (f"final-{model_dir_sha256(p)[:12]}" for p in (a, b))
        # Nothing on record: the served weights get the id their folder gets.
        assert run("openai-api/local/m", servers[a].base_url) == [derived_a]
        assert run(str(a)) == [derived_a]
        assert run("openai-api-completions/local/m", servers[b].base_url) == [derived_b]
        # On record: every route to a's weights lands on the record, b's never does.
        workspace.append_model(_record("lab-a", weights_sha256=model_dir_sha256(a)))
        assert run("openai-api/local/m", servers[a].base_url) == ["lab-a"]
        assert run(str(a)) == ["lab-a"]
        assert run("openai-api/local/m", servers[b].base_url) == [derived_b]
        evidence = Workspace.open(workspace.root).evidence()
        by_model: dict[str, set[str]] = {}
        for e in evidence:
            by_model.setdefault(e.model, set()).add(str(e.details.get("weights_sha256")))
        assert by_model == {
            derived_a: {model_dir_sha256(a)},
            derived_b: {model_dir_sha256(b)},
            "lab-a": {model_dir_sha256(a)},
        }
        # A record naming the endpoint is its record unless it holds other weights.
        at_b = {"base_url": servers[b].base_url, "api_key": "none"}
        endpoint = "openai-api/local/m"
        named = [_record("served", weights_ref=endpoint)]
        assert (
            resolve_model_identity(endpoint, records=named, model_args=at_b, ask_server=True).id
            == "served"
        )
        other = [_record("served", weights_ref=endpoint, weights_sha256=model_dir_sha256(a))]
        assert (
            resolve_model_identity(endpoint, records=other, model_args=at_b, ask_server=True).id
            == derived_b
        )
        # A log or results file read later does not ask its server (it may be gone by then).
        assert resolve_model_identity(endpoint, model_args=at_b).id == endpoint
        # --model-id may not give the served weights another record's name.
        code = main(["eval", "run", str(task), "-m", "openai-api/local/m", "--model-id",
                     "lab-a", "--log-dir", str(tmp_path / "logs")])  # fmt: skip
        assert code == 2 and "on record with other weights" in capsys.readouterr().err
    finally:
        for srv in servers.values():
            srv.close()
    # A server that is gone: the endpoint is known by its model string, as before.
    assert served_weights("openai-api/local/m") is None
    gone = resolve_model_identity("openai-api/local/m", ask_server=True)
    assert gone.id == "openai-api/local/m" and gone.source == "model-string"


def test_an_import_checks_the_model_id_against_the_weights_the_run_recorded(
    two_finals: tuple[Path, Path], tmp_path: Path, workspace: Workspace, capsys
) -> None:
    """``eval import`` used to take any --model-id for a log whose run recorded its weights:
    another record's name, or a new id for weights already on record."""
    a, b = two_finals
    task = tmp_path / "zorbia.py"
    task.write_text(ONE_TASK)
    logs = tmp_path / "logs"
    argv = ["eval", "run", str(task), "-m", str(a), "--max-tokens", "2", "--log-dir", str(logs)]
    assert main(argv) == 0
    (log,) = logs.glob("*.eval")
    capsys.readouterr()
    workspace.append_model(_record("lab-a", weights_sha256=model_dir_sha256(a)))
    workspace.append_model(_record("lab-b", weights_sha256=model_dir_sha256(b)))
    before = len(Workspace.open(workspace.root).evidence())
    assert main(["eval", "import", str(log), "--model-id", "other-id"]) == 2
    assert "these weights are on record as 'lab-a'" in capsys.readouterr().err
    assert main(["eval", "import", str(log), "--model-id", "lab-b"]) == 2
    assert "model 'lab-b' is on record with other weights" in capsys.readouterr().err
    assert len(Workspace.open(workspace.root).evidence()) == before
    # Without an id, the results go to the record of the weights the run recorded (the run
    # itself, before the record existed, named them by their derived id).
    assert main(["eval", "import", str(log), "--json"]) == 0
    imported = json.loads(capsys.readouterr().out)
    assert {r["model"] for r in (imported if isinstance(imported, list) else [imported])} == {
        "lab-a"
    }
