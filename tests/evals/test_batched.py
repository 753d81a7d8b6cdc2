"""The batched runner writes the log Inspect's own loop writes, minus the per-sample loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from safescale._errors import UserError
from safescale.evals import evidence_from_log, run_suite


@pytest.fixture(scope="module")
def both(model_dir: Path, mc_small: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    logs = tmp_path_factory.mktemp("logs")
    return {
        runner: run_suite(str(mc_small), str(model_dir), log_dir=logs / runner, runner=runner)
        for runner in ("batched", "inspect")
    }


def test_same_samples_scores_and_metrics_as_inspects_loop(both: dict) -> None:
    from inspect_ai.log import read_eval_log

    batched, inspect = (read_eval_log(str(both[r].log_path)) for r in ("batched", "inspect"))
    assert batched.status == inspect.status == "success"
    assert batched.eval.metadata["safescale"]["runner"] == "batched"
    assert inspect.eval.metadata["safescale"]["runner"] == "inspect"
    assert (batched.eval.task, batched.eval.model) == (inspect.eval.task, inspect.eval.model)
    assert batched.eval.dataset.sample_ids == inspect.eval.dataset.sample_ids
    assert [s.solver for s in batched.plan.steps] == [s.solver for s in inspect.plan.steps]
    ours = {s.id: s for s in batched.samples}
    theirs = {s.id: s for s in inspect.samples}
    assert ours.keys() == theirs.keys() and len(ours) == 24
    for sid, a in ours.items():
        b = theirs[sid]
        assert (a.input, a.choices, a.target) == (b.input, b.choices, b.target)
        assert a.metadata["loglikelihoods"] == pytest.approx(b.metadata["loglikelihoods"], abs=1e-6)
        assert a.metadata["is_greedy"] == b.metadata["is_greedy"]
        assert a.scores["loglikelihood_scorer"].value == b.scores["loglikelihood_scorer"].value
        assert a.scores["loglikelihood_scorer"].answer == b.scores["loglikelihood_scorer"].answer
        assert a.output.completion == b.output.completion
        assert a.model_usage == b.model_usage
        # one model event a sample, with the request the solver sends and the provider's reply
        (event,) = [e for e in a.events if e.event == "model"]
        (theirs_event,) = [e for e in b.events if e.event == "model"]
        assert event.input[0].text == theirs_event.input[0].text
        assert event.input[0].metadata == theirs_event.input[0].metadata
        assert event.output.metadata["is_greedy"] == theirs_event.output.metadata["is_greedy"]
        assert event.output.usage == theirs_event.output.usage
        assert event.config == theirs_event.config
    # the results, by Inspect's own metric functions on both sides
    assert len(batched.results.scores) == len(inspect.results.scores) == 3
    for a, b in zip(batched.results.scores, inspect.results.scores, strict=True):
        assert (a.name, a.scorer, a.scored_samples) == (b.name, b.scorer, b.scored_samples)
        for name in ("mean", "stderr"):
            assert a.metrics[name].value == pytest.approx(b.metrics[name].value, abs=1e-12)
    assert batched.stats.model_usage == inspect.stats.model_usage


def test_same_evidence_and_the_log_reads_back_as_evidence(both: dict) -> None:
    a, b = both["batched"], both["inspect"]
    assert [(m.name, m.value, m.lo, m.hi, m.n) for m in a.metrics] == [
        (m.name, m.value, m.lo, m.hi, m.n) for m in b.metrics
    ]
    assert a.evidence[0].producer == "safescale" and b.evidence[0].producer == "inspect-ai"
    assert a.evidence[0].details["runner"] == "batched"
    again = evidence_from_log(a.log_path)  # what `safescale eval import` reads
    assert [(x.id, x.value, x.n) for x in again] == [(x.id, x.value, x.n) for x in a.evidence]


def test_the_log_is_where_inspect_looks_and_nothing_partial_is_left(both: dict) -> None:
    from inspect_ai.log import list_eval_logs, read_eval_log

    path = both["batched"].log_path
    (info,) = list_eval_logs(str(path.parent))
    assert Path(info.name.removeprefix("file://")).name == path.name and info.task == "mc"
    header = read_eval_log(info, header_only=True)
    assert header.results is not None and header.results.total_samples == 24
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_limit_and_json_format(model_dir: Path, mc_small: Path, tmp_path: Path) -> None:
    from inspect_ai.log import read_eval_log

    result = run_suite(str(mc_small), str(model_dir), log_dir=tmp_path, limit=5, log_format="json")
    log = read_eval_log(str(result.log_path))
    assert result.log_path.suffix == ".json" and len(log.samples) == 5
    assert log.eval.config.limit == 5 and result.metrics[0].n == 5


def test_batched_runner_refuses_what_it_cannot_run(model_dir: Path, tmp_path: Path) -> None:
    gen = tmp_path / "gen.jsonl"
    gen.write_text('{"input": "The river of Zorbia is", "target": "red"}\n')
    with pytest.raises(UserError, match="batched runner takes a multiple-choice task"):
        run_suite(str(gen), str(model_dir), log_dir=tmp_path / "logs", runner="batched")
    assert not (tmp_path / "logs").exists()


def test_a_failed_write_leaves_no_log(
    model_dir: Path, mc_small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import safescale.evals._batched as batched

    def fail_midway(log: object, location: str, format: str) -> None:
        Path(location).write_bytes(b"PK\x03\x04 half a zip")  # then the disk fills up
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(batched, "write_eval_log", fail_midway)
    with pytest.raises(OSError, match="No space left"):
        run_suite(str(mc_small), str(model_dir), log_dir=tmp_path / "logs", limit=3)
    assert list((tmp_path / "logs").iterdir()) == []
