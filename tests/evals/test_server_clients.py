"""Other projects' clients against serve-model on loopback, each matching the in-process numbers.

lm-evaluation-harness (``local-completions`` for log-likelihood multiple choice,
``local-chat-completions`` for generation), Inspect AI (``openai-api`` and
``openai-api-completions``) and the ``openai`` package: log-likelihoods within 1e-4 of the
in-process engine and the same answers.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from safescale.evals import (
    LocalModelConfig,
    LoglikelihoodGroup,
    ModelServer,
    encode_pair,
    load_local_model,
    run_suite,
)
from tests.evals._lmeval import (
    lm_eval_end_to_end,
    lm_eval_sample_loglikelihoods,
    write_lm_eval_task,
)

QUESTIONS = [
    "The river of Zorbia is",
    "Quell has",
    "The tower of Marnot is red and lies near",
    "The city of Vesh",
]

GEN_TASK_YAML = """task: safescale_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
  cache_dir: {cache}
test_split: test
output_type: generate_until
doc_to_text: "{{{{input}}}}"
doc_to_target: "{{{{target}}}}"
generation_kwargs:
  until: ["."]
  max_gen_toks: 8
  temperature: 0
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""


@pytest.fixture(scope="module")
def server(model_dir: Path):
    lm = load_local_model(LocalModelConfig(model_dir))
    srv = ModelServer(lm, name="tiny", port=0).start()
    yield srv
    srv.close()


def _in_process_answer(server: ModelServer, text: str, max_new: int, stop: str) -> str:
    lm = server.lm
    (new,) = lm.generate([lm.encode(text)], max_new)
    answer = lm.decode(new)
    return answer[: answer.index(stop)] if stop in answer else answer


# -- lm-evaluation-harness --------------------------------------------------------------------


def test_lm_eval_local_completions_matches_hf(
    server: ModelServer, model_dir: Path, mc_small: Path, tmp_path: Path
) -> None:
    import lm_eval
    from lm_eval.tasks import TaskManager

    logging.getLogger("lm_eval").setLevel(logging.WARNING)
    task_dir = write_lm_eval_task(tmp_path / "tasks", mc_small)
    ref = lm_eval_end_to_end(model_dir, task_dir, include_defaults=False)
    remote = lm_eval.simple_evaluate(
        model="local-completions",
        model_args=f"base_url={server.base_url}/completions,model=tiny,tokenizer={model_dir},"
        "tokenizer_backend=huggingface,num_concurrent=4",
        tasks=["safescale_mc"],
        task_manager=TaskManager(include_path=str(task_dir), include_defaults=False),
    )
    a = lm_eval_sample_loglikelihoods(ref)
    b = lm_eval_sample_loglikelihoods(remote)
    assert len(a) == len(b) == 24
    for x, y in zip(a, b, strict=True):
        assert x == pytest.approx(y, abs=1e-4)
        assert max(range(4), key=x.__getitem__) == max(range(4), key=y.__getitem__)
    for metric in ("acc,none", "acc_norm,none"):
        assert remote["results"]["safescale_mc"][metric] == ref["results"]["safescale_mc"][metric]


def test_lm_eval_local_chat_completions_same_answers(server: ModelServer, tmp_path: Path) -> None:
    import lm_eval
    from lm_eval.tasks import TaskManager

    logging.getLogger("lm_eval").setLevel(logging.WARNING)
    data = tmp_path / "gen.jsonl"
    data.write_text("\n".join(json.dumps({"input": q, "target": "red"}) for q in QUESTIONS))
    task_dir = tmp_path / "tasks"
    task_dir.mkdir()
    (task_dir / "safescale_gen.yaml").write_text(
        GEN_TASK_YAML.format(data=data.resolve(), cache=(task_dir / "hf").resolve())
    )
    out = lm_eval.simple_evaluate(
        model="local-chat-completions",
        model_args=f"base_url={server.base_url}/chat/completions,model=tiny",
        tasks=["safescale_gen"],
        apply_chat_template=True,
        task_manager=TaskManager(include_path=str(task_dir), include_defaults=False),
    )
    samples = sorted(out["samples"]["safescale_gen"], key=lambda s: s["doc_id"])
    got = [s["resps"][0][0] for s in samples]
    want = [_in_process_answer(server, q, 8, ".") for q in QUESTIONS]
    assert got == want
    assert any(want)  # the model says something, so equal answers mean something


# -- Inspect AI -------------------------------------------------------------------------------


def test_inspect_openai_api_completions_scores_as_in_process(
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


def test_inspect_openai_api_same_answers_as_in_process(
    server: ModelServer, model_dir: Path, tmp_path: Path
) -> None:
    from inspect_ai import Task, eval
    from inspect_ai.dataset import Sample
    from inspect_ai.scorer import match
    from inspect_ai.solver import generate

    task = Task(
        dataset=[Sample(input=q, target="red") for q in QUESTIONS],
        solver=generate(),
        scorer=match(),
    )
    outputs = []
    for model, url, args in [
        (f"safescale/{model_dir}", None, {}),
        ("openai-api/local/tiny", server.base_url, {"api_key": "none"}),
    ]:
        (log,) = eval(
            task, model=model, model_base_url=url, model_args=args, max_tokens=12,
            log_dir=str(tmp_path), display="none",
        )  # fmt: skip
        assert log.status == "success" and log.samples is not None
        outputs.append([s.output.completion for s in log.samples])
    assert outputs[0] == outputs[1]
    assert outputs[1] == [_in_process_answer(server, q, 12, "\0") for q in QUESTIONS]


# -- the openai package -----------------------------------------------------------------------


def test_openai_package_scores_and_generates_as_in_process(server: ModelServer) -> None:
    import openai

    client = openai.OpenAI(base_url=server.base_url, api_key="none")
    lm = server.lm
    context, choices = "Question: What colour is the river of Zorbia?\nAnswer:", [" red", " blue"]
    for choice in choices:
        ctx, cont = encode_pair(lm.tokenizer, context, choice)
        out = client.completions.create(
            model="tiny", prompt=ctx + cont, max_tokens=1, echo=True, logprobs=1, temperature=0
        )
        logprobs = out.choices[0].logprobs
        assert logprobs is not None and logprobs.token_logprobs is not None
        remote = sum(logprobs.token_logprobs[len(ctx) : -1])
        (score,) = lm.loglikelihood([LoglikelihoodGroup(tuple(ctx), (tuple(cont),))])[0]
        assert remote == pytest.approx(score.logprob, abs=1e-4)
    chat = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": QUESTIONS[0]}],
        max_tokens=10,
        logprobs=True,
        top_logprobs=3,
    )
    assert chat.choices[0].message.content == _in_process_answer(server, QUESTIONS[0], 10, "\0")
    assert chat.choices[0].logprobs is not None and chat.choices[0].logprobs.content
    streamed = "".join(
        c.choices[0].text
        for c in client.completions.create(
            model="tiny", prompt=QUESTIONS[1], max_tokens=10, stream=True
        )
    )
    assert streamed == _in_process_answer(server, QUESTIONS[1], 10, "\0")
    many = client.completions.create(model="tiny", prompt=QUESTIONS[2], max_tokens=4, n=3)
    assert sorted(c.index for c in many.choices) == [0, 1, 2]
    # models.retrieve is GET /v1/models/NAME; a name the server does not serve is a 404.
    card = client.models.retrieve("tiny")
    assert card.id == "tiny" and card.created > 1_700_000_000
    assert [m.id for m in client.models.list()] == ["tiny"]
    with pytest.raises(openai.NotFoundError, match="this server serves 'tiny', not 'other'"):
        client.models.retrieve("other")
