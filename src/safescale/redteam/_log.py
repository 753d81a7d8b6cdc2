"""A campaign as a standard Inspect log: one sample per attempt (``inspect view`` opens it).

Each attempt is a sample with the prompt as input, the behaviour as target, the response as
output, the judge's verdict as the ``attack_success`` score (``C`` or ``I``) and the attack,
recipe, round, tokens and layers in metadata; one model event per sample holds the exchange.
The results hold the per-attempt success rate through Inspect's ``accuracy`` and ``stderr``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Literal

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
)
from inspect_ai.model import ChatMessageUser, GenerateConfig, ModelOutput, ModelUsage
from inspect_ai.scorer import SampleScore, Score, accuracy, stderr

from safescale.evals._batched import new_log_id as _id
from safescale.evals._batched import write_log as _write
from safescale.redteam._campaign import CampaignResult

SCORER = "attack_success"


def write_campaign_log(
    result: CampaignResult,
    log_dir: Path,
    *,
    behaviours_path: str = "",
    log_format: Literal["eval", "json"] = "eval",
    metadata: dict[str, object] | None = None,
) -> EvalLog:
    """Write ``result`` as an Inspect log in ``log_dir`` (atomically); returns it, located."""
    model = result.target
    rows: list[EvalSample] = []
    scores: list[SampleScore] = []
    usage_in = usage_out = 0
    for a in result.attempts:
        sid = f"{a.attack}/{a.behaviour}/{a.index}"
        usage = ModelUsage(
            input_tokens=a.input_tokens,
            output_tokens=a.output_tokens,
            total_tokens=a.input_tokens + a.output_tokens,
        )
        usage_in += a.input_tokens
        usage_out += a.output_tokens
        output = ModelOutput.from_content(model, a.response)
        output.usage = usage
        score = Score(
            value="C" if a.success else "I",
            answer=a.response,
            explanation=a.reason,
            metadata={"score": a.score, "scored": a.scored, "model_success": a.model_success},
        )
        scores.append(SampleScore(score=score, sample_id=sid))
        rows.append(
            EvalSample(
                id=sid,
                epoch=1,
                input=a.prompt,
                target=a.behaviour,
                messages=[ChatMessageUser(content=a.prompt, source="input")],
                output=output,
                scores={SCORER: score},
                metadata={
                    "attack": a.attack,
                    "behaviour": a.behaviour,
                    "recipe": a.recipe,
                    "index": a.index,
                    "round": a.round,
                    "held_out": a.held_out,
                    "layers": a.layers,
                    "refused": a.refused,
                },
                events=[
                    ModelEvent(
                        model=model,
                        input=[ChatMessageUser(content=a.prompt)],
                        tools=[],
                        tool_choice="none",
                        config=GenerateConfig(temperature=0.0),
                        output=output,
                    )
                ],
                model_usage={model: usage},
            )
        )
    now = datetime.now(UTC)
    spec = EvalSpec(
        eval_id=_id(),
        run_id=_id(),
        created=now.isoformat(timespec="seconds"),
        task="redteam_campaign",
        task_id=_id(),
        task_version=0,
        dataset=EvalDataset(
            name="behaviours",
            location=behaviours_path,
            samples=len(rows),
            sample_ids=[r.id for r in rows],
            shuffled=False,
        ),
        model=model,
        config=EvalConfig(epochs=1, log_samples=True),
        packages={"inspect_ai": version("inspect_ai"), "safescale": version("safescale")},
        metadata={
            "safescale": {
                "runner": "redteam",
                "judge": result.judge,
                "budget": result.config.budget,
                "seed": result.config.seed,
                "held_out": list(result.config.held_out),
                "asr": result.overall.as_dict(),
                **(metadata or {}),
            }
        },
    )
    metrics = {
        "accuracy": EvalMetric(name="accuracy", value=float(accuracy()(scores))),  # type: ignore[arg-type]
        "stderr": EvalMetric(name="stderr", value=float(stderr()(scores))),  # type: ignore[arg-type]
    }
    log = EvalLog(
        eval=spec,
        plan=EvalPlan(name="plan", steps=[EvalPlanStep(solver="safescale/redteam", params={})]),
        status="success",
        results=EvalResults(
            total_samples=len(rows),
            completed_samples=len(rows),
            scores=[
                EvalScore(
                    name=SCORER,
                    scorer=SCORER,
                    scored_samples=len(rows),
                    unscored_samples=0,
                    metrics=metrics,
                )
            ],
        ),
        stats=EvalStats(
            started_at=now.isoformat(),
            completed_at=now.isoformat(),
            model_usage={
                model: ModelUsage(
                    input_tokens=usage_in,
                    output_tokens=usage_out,
                    total_tokens=usage_in + usage_out,
                )
            },
        ),
        samples=rows,
    )
    return _write(log, Path(log_dir), log_format)
