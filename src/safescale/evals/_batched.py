"""The batched runner: a multiple-choice task on a local model, scored in one pass, one Inspect log.

For log-likelihood multiple choice on a local folder, every request of the task is known before
it starts, and each sample's work is one forward pass over its context and choices. Inspect's
per-sample loop (a task state, a transcript, a solver, a ``generate`` call and a scorer for each
question) then costs more than the scoring itself: about 5 ms a sample on a small model,
against a fraction of that for the forward pass (``docs/evals.md``, "Speed").

This runner scores the whole task with the same engine in one batched pass and writes the same
evidence as a standard Inspect log, with Inspect's own log writer and metric functions:

* every sample with its input, choices, target, output (``ANSWER: X``), its score from
  :func:`~safescale.evals._mc.mc_score` (the scorer's own function), and its per-choice
  log-likelihoods and greedy flags in metadata (``loglikelihoods``, ``is_greedy``);
* one model event a sample, holding the exact request the solver would send (the
  ``safescale_loglikelihood`` message) and the provider's reply (:meth:`grouped_output`), with
  its token usage; the request was answered inside the batched pass, so the event's timing is
  the pass's, not a call of its own;
* the results, ``mean`` and ``stderr`` of ``acc``, ``acc_norm`` and ``acc_bytes``, computed by
  Inspect's ``mean()`` and ``stderr()`` metrics, named as the Inspect runner names them.

What the log does not have: per-sample spans, sample-init, state and score events, and
per-sample timings. The eval metadata says which runner wrote it (``safescale.runner``:
``batched``). ``safescale eval run --runner inspect`` runs the same task through Inspect's loop;
a test holds both runners to the same samples, scores and metrics.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal, cast

from inspect_ai.dataset import Sample
from inspect_ai.event import ModelEvent
from inspect_ai.log import (
    EvalConfig,
    EvalDataset,
    EvalLog,
    EvalMetric,
    EvalPlan,
    EvalPlanStep,
    EvalResults,
    EvalSample,
    EvalScore,
    EvalSpec,
    EvalStats,
    write_eval_log,
)
from inspect_ai.model import ChatMessageUser, ModelOutput, ModelUsage
from inspect_ai.scorer import SampleScore, Score, mean, stderr

from safescale.evals._backend import BatchScoring
from safescale.evals._mc import LL_CONFIG, MC_METRICS, TARGET_DELIMITER, ll_request, mc_score
from safescale.evals._models import redact_args

SCORER = "loglikelihood_scorer"
SOLVER = "safescale/loglikelihood_choice"


def mc_requests(samples: Sequence[Sample], template: str) -> list[tuple[str, list[str]]]:
    """Each question's (context, continuations), built as the solver builds them."""
    return [
        (template.format(question=s.input), [TARGET_DELIMITER + c for c in s.choices or []])
        for s in samples
    ]


def run_batched(
    *,
    task_name: str,
    samples: Sequence[Sample],
    dataset_path: Path,
    api: BatchScoring,
    model: str,
    model_args: Mapping[str, Any],
    template: str,
    limit: int | None,
    log_dir: Path,
    metadata: Mapping[str, Any],
    log_format: Literal["eval", "json"],
    progress: Callable[[int, int], None] | None = None,
) -> EvalLog:
    """Score ``samples`` in one pass and write their Inspect log to ``log_dir`` (atomically).

    Returns the log as written, with its ``location`` set.
    """
    started = datetime.now(UTC)
    requests = mc_requests(samples, template)
    scored = api.score_requests(requests, progress)
    rows: list[EvalSample] = []
    per_metric: dict[str, list[SampleScore]] = {m: [] for m in MC_METRICS}
    total = 0
    for n, (sample, (context, continuations), result) in enumerate(
        zip(samples, requests, scored, strict=True), start=1
    ):
        reply = api.grouped_output(result)
        meta = reply.metadata or {}
        choices = list(sample.choices or [])
        score = mc_score(meta["loglikelihoods"], choices, str(sample.target))
        sid = sample.id if sample.id is not None else n
        values = cast(Mapping[str, float], score.value)  # mc_score's {metric: 0.0 or 1.0}
        for m in MC_METRICS:
            per_metric[m].append(SampleScore(score=Score(value=values[m]), sample_id=sid))
        usage = reply.usage or ModelUsage()
        total += usage.input_tokens
        event = ModelEvent(
            model=model,
            input=[ll_request(context, continuations)],
            tools=[],
            tool_choice="none",
            config=LL_CONFIG,
            output=reply,
        )
        rows.append(
            EvalSample(
                id=sid,
                epoch=1,
                input=sample.input,
                choices=choices,
                target=sample.target,
                messages=[ChatMessageUser(content=str(sample.input), source="input")],
                output=ModelOutput.from_content(model, f"ANSWER: {score.answer}"),
                scores={SCORER: score},
                metadata={**(sample.metadata or {}), **meta},
                events=[event],
                model_usage={model: usage},
            )
        )
    completed = datetime.now(UTC)
    spec = EvalSpec(
        eval_id=new_log_id(),
        run_id=new_log_id(),
        created=started.isoformat(timespec="seconds"),
        task=task_name,
        task_id=new_log_id(),
        task_version=0,
        dataset=EvalDataset(
            name=dataset_path.stem,
            location=str(dataset_path),
            samples=len(rows),
            sample_ids=[r.id for r in rows],
            shuffled=False,
        ),
        model=model,
        model_args=redact_args(dict(model_args)),
        config=EvalConfig(limit=limit, epochs=1, log_samples=True),
        packages={"inspect_ai": version("inspect_ai"), "safescale": version("safescale")},
        metadata=dict(metadata),
    )
    log = EvalLog(
        eval=spec,
        plan=EvalPlan(
            name="plan",
            steps=[EvalPlanStep(solver=SOLVER, params={"template": template, "tokenizer": None})],
        ),
        status="success",
        results=EvalResults(
            total_samples=len(rows),
            completed_samples=len(rows),
            scores=_scores(per_metric),
        ),
        stats=EvalStats(
            started_at=started.isoformat(),
            completed_at=completed.isoformat(),
            model_usage={
                model: ModelUsage(input_tokens=total, output_tokens=0, total_tokens=total)
            },
        ),
        samples=rows,
    )
    return write_log(log, log_dir, log_format)


def _scores(per_metric: Mapping[str, list[SampleScore]]) -> list[EvalScore]:
    """``mean`` and ``stderr`` of each metric, by Inspect's own metric functions."""
    return [
        EvalScore(
            name=name,
            scorer=SCORER,
            scored_samples=len(values),
            unscored_samples=0,
            metrics={m: EvalMetric(name=m, value=float(f()(values))) for m, f in _METRICS.items()},  # type: ignore[arg-type]
        )
        for name, values in per_metric.items()
    ]


_METRICS = {"mean": mean, "stderr": stderr}


def new_log_id() -> str:
    """A fresh id for an Inspect log's ``eval_id``, ``run_id`` or ``task_id`` (22 hex digits)."""
    return uuid.uuid4().hex[:22]


def log_name(spec: EvalSpec) -> str:
    """Inspect's default log file name: ``{created}_{task}_{task_id}`` (``:`` made ``-``)."""
    created = spec.created.replace(":", "-").replace("+", "-")
    task = "".join(c if c.isalnum() or c in "-." else "-" for c in spec.task)
    return f"{created}_{task}_{spec.task_id}"


def write_log(log: EvalLog, log_dir: Path, log_format: Literal["eval", "json"]) -> EvalLog:
    """Write ``log`` into ``log_dir`` under Inspect's default name (:func:`log_name`); its
    ``location`` is set to the file. The log is written beside its final name, then renamed:
    a crash leaves no half-written log."""
    log_dir.mkdir(parents=True, exist_ok=True)
    location = log_dir / f"{log_name(log.eval)}.{log_format}"
    partial = location.with_name(f".{location.name}.partial")
    try:
        write_eval_log(log, str(partial), format=log_format)
        os.replace(partial, location)
    finally:
        partial.unlink(missing_ok=True)
    log.location = str(location)
    return log
