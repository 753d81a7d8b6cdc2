"""Log-likelihood backends chosen by capability; a model behind an endpoint assessed for real
(serve-model on loopback, Inspect's openai-api-completions, a real SQLite workspace); scorers
from one registry."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from safescale._errors import UserError
from safescale.cli import main
from safescale.evals import (
    SCORERS,
    GroupedScoring,
    ModelServer,
    ScoredText,
    run_suite,
    select_backend,
)
from safescale.evals._backend import GroupedBackend, PromptLogprobsBackend
from safescale.ledger import Workspace


class _Api:
    """A model API of no particular class."""


class _GroupingApi:
    """An outside provider that scores grouped requests: it has the capability, not the class."""

    async def score_text(self, context: str, continuations: Sequence[str]) -> ScoredText:
        raise NotImplementedError


class _Model:
    def __init__(self, api: object) -> None:
        self.api = api

    def __str__(self) -> str:
        return "outside/model"


class _TokenIdApi(_Api):
    """An outside provider whose requests carry token ids as the prompt, and says so."""

    takes_token_ids = True


def test_backend_is_chosen_by_capability_not_class() -> None:
    assert isinstance(_GroupingApi(), GroupedScoring) and not isinstance(_Api(), GroupedScoring)
    assert isinstance(select_backend(_Model(_GroupingApi())), GroupedBackend)
    assert isinstance(select_backend(_Model(_TokenIdApi()), tokenizer="tok"), PromptLogprobsBackend)
    with pytest.raises(UserError, match="--tokenizer: log-likelihood scoring of outside/model"):
        select_backend(_Model(_TokenIdApi()))
    # A chat endpoint takes messages: it cannot score a continuation, tokenizer or not.
    with pytest.raises(UserError, match=r"--model: .* needs a completions endpoint"):
        select_backend(_Model(_Api()), tokenizer="tok")


def test_multiple_choice_on_a_chat_endpoint_is_refused_before_the_run(
    server: Any, mc_small: Path, model_dir: Path, tmp_path: Path, capsys: Any
) -> None:
    """It used to start, and end in a dump of the request and the server's 400."""
    code = main(
        ["eval", "run", str(mc_small), "-m", "openai-api/local/tiny", "--tokenizer",
         str(model_dir), "-M", f"base_url={server.base_url}", "-M", "api_key=x",
         "--log-dir", str(tmp_path / "logs")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "use openai-api-completions/... or vllm-completions/..." in err, err
    assert not (tmp_path / "logs").exists()


POLICY = """schema: safescale/policy/v1
framework: {id: served, name: Served model policy, developer: tests, version: "1",
            effective: 2025-01-01, source: {url: https://example.org/p}}
risk_domains: [{id: cbrn, name: CBRN, status: tracked}]
evaluations:
  - {id: mc, name: Tiny multiple choice, metric: acc, suite: SUITE}
capability_thresholds:
  - id: T1
    name: Tiny threshold
    domain: cbrn
    definition: Tiny.
    evaluations: [{evaluation: mc, rule_out: 0.01, alert: 0.02, threshold: 0.99}]
    required_safeguards: {all_of: [S]}
safeguard_standards: [{id: S, name: Safeguard, category: security}]
assessment_triggers: [{id: c4, kind: effective_compute, ratio: 4}]
decisions: [{id: d, about: capability, decided_by: [RSO]}]
governance: {roles: [{id: RSO, name: Responsible Scaling Officer}]}
planned_scale_up: 4
"""


def test_assess_evaluates_a_model_behind_an_endpoint(
    server: ModelServer, model_dir: Path, mc_small: Path, tmp_path: Path, run_cli
) -> None:
    policy = tmp_path / "served.yaml"
    policy.write_text(POLICY.replace("SUITE", str(mc_small)))
    ws = Workspace.init(tmp_path / "ws")
    root = str(ws.root)
    endpoint = "openai-api-completions/local/tiny"
    code, _, err = run_cli(
        "--workspace", root, "compute", "add", "--model", "served", "--flops", "1e18",
        "--weights", endpoint,
    )  # fmt: skip
    assert code == 0, err
    code, out, err = run_cli(
        "--workspace", root, "assess", "--policy", str(policy), "--model", "served",
        "--tokenizer", str(model_dir), "-M", f"base_url={server.base_url}", "-M", "api_key=x",
        "--limit", "8", "--json",
    )  # fmt: skip
    assert code == 0, err
    (det,) = json.loads(out)
    (t1,) = det["thresholds"]
    assert t1["n"] == 8 and t1["status"] != "no_evidence"
    evidence = Workspace.open(ws.root).evidence("served")
    acc = next(e for e in evidence if e.metric == "acc")
    assert acc.details["endpoint"] == endpoint and acc.model == "served"
    # The endpoint's numbers are the in-process numbers.
    local = run_suite(str(mc_small), str(model_dir), log_dir=tmp_path / "local", limit=8)
    assert acc.value == next(m.value for m in local.metrics if m.name == "acc")
    assert t1["metric"] == acc.value


def test_scorers_come_from_one_registry(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inspect_ai.scorer import CORRECT, INCORRECT, Score, Target, accuracy, scorer, stderr

    @scorer(metrics=[accuracy(), stderr()])
    def nonempty():  # type: ignore[no-untyped-def]
        async def score(state, target: Target) -> Score:  # type: ignore[no-untyped-def]
            ok = bool(state.output.completion.strip())
            return Score(value=CORRECT if ok else INCORRECT)

        return score

    # What an outside package's ``safescale.scorer`` entry point adds.
    monkeypatch.setitem(SCORERS._items, "nonempty", nonempty)
    gen = tmp_path / "gen.jsonl"
    gen.write_text(
        "\n".join(json.dumps({"input": f"The river of {n} is", "target": "zzz"}) for n in "ABC")
    )
    result = run_suite(str(gen), str(model_dir), log_dir=tmp_path / "logs", scorer="nonempty")
    from inspect_ai.log import read_eval_log

    log = read_eval_log(str(result.log_path), header_only=True)
    assert [s.name for s in log.eval.scorers or []] == ["nonempty"]
    assert result.metrics[0].n == 3
    assert "nonempty" in SCORERS.names() and "opening" in SCORERS.names()


@pytest.fixture(scope="module")
def short_server(model_dir: Path):  # type: ignore[no-untyped-def]
    """The tiny model served with a context of 24 tokens: most of ``mc_small``'s prompts are
    longer."""
    from safescale.evals import LocalModelConfig, load_local_model

    lm = load_local_model(LocalModelConfig(model_dir, max_length=24))
    srv = ModelServer(lm, name="tiny", port=0).start()
    yield srv
    srv.close()


def test_prompts_over_the_servers_context_are_cut_as_lm_eval_cuts_them(
    short_server: ModelServer, model_dir: Path
) -> None:
    """They were refused by the server (400), which stopped the run."""
    import asyncio

    from inspect_ai.model import get_model

    from safescale.evals import ContextWarning, LocalModelConfig, LoglikelihoodGroup
    from safescale.evals import load_local_model as load

    model = get_model(
        "openai-api-completions/local/tiny", base_url=short_server.base_url, api_key="x",
        memoize=False,
    )  # fmt: skip
    backend = select_backend(model, str(model_dir))
    assert isinstance(backend, PromptLogprobsBackend) and backend.context == 24
    context, choices = (
        "Question: Which place lies near the bridge of Zorbia?\nAnswer:",
        [
            " Ulm",
            " the mill",
        ],
    )
    with pytest.warns(ContextWarning, match="longer than the server's context of 24 tokens"):
        got = asyncio.run(backend.loglikelihoods(context, choices)).values
    # The same prompts, cut to 23 tokens from the left, scored in process.
    lm = load(LocalModelConfig(model_dir))
    want = []
    for c in choices:
        ctx, cont = lm.encode_pair(context, c)
        assert len(ctx) + len(cont) > 23
        ctx = ctx[len(ctx) + len(cont) - 23 :]
        (score,) = lm.loglikelihood([LoglikelihoodGroup(tuple(ctx), (tuple(cont),))])[0]
        want.append(score.logprob)
    assert got == pytest.approx(want, abs=1e-4)
    # A choice that leaves no token of context cannot be scored: one line says so.
    with pytest.raises(UserError, match=r"a continuation of .* tokens does not fit the server's"):
        asyncio.run(backend.loglikelihoods(context, [" the river" * 12]))


def test_an_endpoint_run_over_long_prompts_completes_with_a_warning(
    short_server: ModelServer, model_dir: Path, mc_small: Path, tmp_path: Path, run_cli
) -> None:
    code, out, err = run_cli(
        "eval", "run", str(mc_small), "-m", "openai-api-completions/local/tiny", "--tokenizer",
        str(model_dir), "-M", f"base_url={short_server.base_url}", "-M", "api_key=x",
        "--limit", "4", "--log-dir", str(tmp_path / "logs"), "--json",
    )  # fmt: skip
    assert code == 0, err
    # one line, not Python's warning with a source path and line
    (line,) = [x for x in err.splitlines() if "cut from the left" in x]
    assert line.startswith("warning: prompts longer than the server's context of 24 tokens")
    assert "serve-model --max-length" in line
    served = {m["name"]: m for m in json.loads(out)["metrics"]}
    assert served["acc"]["n"] == 4
    # A local model keeps max_length + 1 tokens (its last token is never fed), the server
    # limit - 1 (one new token): at max_length 22 the two cut every prompt alike.
    local = run_suite(
        str(mc_small), str(model_dir), log_dir=tmp_path / "local", limit=4,
        model_args={"max_length": 22},
    )  # fmt: skip
    for m in local.metrics:
        assert served[m.name]["value"] == m.value, m.name
    from inspect_ai.log import read_eval_log

    def lls(log: str) -> list[float]:
        samples = read_eval_log(log).samples or []
        return [x for s in samples for x in s.metadata["loglikelihoods"]]

    assert lls(json.loads(out)["log"]) == pytest.approx(lls(str(local.log_path)), abs=1e-4)
