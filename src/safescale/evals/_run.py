"""Run a suite, a JSONL task or an Inspect task file on a model; return metrics and evidence."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from safescale._errors import Problem, UserError
from safescale._input import check_id
from safescale.evals._batched import mc_requests, run_batched
from safescale.evals._evidence import (
    META_KEY,
    evidence_from_eval_log,
    file_sha256,
    model_dir_sha256,
)
from safescale.evals._lm import check_model_dir
from safescale.evals._mc import DEFAULT_TEMPLATE
from safescale.evals._provider import LocalModelAPI
from safescale.evals._stats import MetricEstimate
from safescale.evals._suites import GenScorer, resolve_task
from safescale.policy import Evidence

DEFAULT_LOG_DIR = Path("logs")
FULL_COLLECTION_EVERY = 100
"""During a run, the collector's full pass comes after this many middle-generation passes
(CPython's default threshold is 10), about once per 1,000 Inspect samples; see :func:`_run_gc`."""


@dataclass(frozen=True)
class EvalRunResult:
    """What one evaluation run produced."""

    task: str
    """Task or suite name."""
    model: str
    """The model id used in evidence (a local folder's name, or the Inspect model string)."""
    log_path: Path
    """The Inspect log file."""
    metrics: tuple[MetricEstimate, ...]
    """Each metric with its n and 95% interval."""
    evidence: tuple[Evidence, ...]
    """One Evidence record per metric (not yet in any ledger)."""
    evaluation_id: str | None = None
    """The policy evaluation id the task feeds, when bound."""
    artifacts: dict[str, str] = field(default_factory=dict)
    """Artifact name -> sha256 of the files in ``files``."""
    files: tuple[Path, ...] = ()
    """Files to keep in the workspace's artifact store: the log, and the dataset file."""
    """Artifact name -> sha256 (log, dataset, weights)."""


def looks_like_path(model: str) -> bool:
    """A MODEL argument naming a folder (absolute, relative with ./, or an existing path)."""
    return model.startswith(("/", "./", "../", "~")) or Path(model).expanduser().exists()


@contextlib.contextmanager
def _run_gc() -> Iterator[None]:
    """Keep the cyclic garbage collector's full passes off objects that predate the run.

    A process that has imported torch, transformers and Inspect holds some 600,000 objects
    that live as long as it does. An Inspect run leaves a few hundred objects per sample in
    reference cycles, so CPython's full collections come every few hundred samples, and each
    walks every object in the process: 0.3-0.6 s apiece, 1-2.5 s of a 1,000-sample run. Here
    the objects alive at the start are frozen (:func:`gc.freeze`), so that a full pass walks
    only what the run created, and one comes after ``FULL_COLLECTION_EVERY`` middle-generation
    passes instead of 10 (the run's cycles are still freed as it goes). At the end the objects
    are unfrozen. If the run made more middle-generation passes than the usual threshold, so
    that CPython would have run a full collection during it, one full collection runs then: the
    process is left as after any full collection, and no deferred work falls on whatever runs
    next. A short run, which would not have had one, does not pay for one. Nothing is changed
    when the collector is disabled or something else has frozen objects.
    """
    if not gc.isenabled() or gc.get_freeze_count():
        yield
        return
    threshold = gc.get_threshold()
    middle_passes = gc.get_stats()[1]["collections"]
    gc.freeze()
    gc.set_threshold(threshold[0], threshold[1], max(threshold[2], FULL_COLLECTION_EVERY))
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()
        if gc.get_stats()[1]["collections"] - middle_passes > threshold[2]:
            gc.collect()


@_run_gc()
def run_suite(
    task: str,
    model: str,
    *,
    limit: int | None = None,
    log_dir: Path | None = None,
    data_dir: Path | None = None,
    model_args: dict[str, Any] | None = None,
    tokenizer: str | None = None,
    template: str = DEFAULT_TEMPLATE,
    scorer: GenScorer | None = None,
    model_id: str | None = None,
    display: str = "none",
    max_samples: int = 256,
    log_format: Literal["eval", "json"] = "eval",
    runner: Literal["auto", "batched", "inspect"] = "auto",
) -> EvalRunResult:
    """Evaluate ``model`` on ``task`` through Inspect and build the evidence.

    Args:
        task: A suite name (``lab/hazard_proxy``), a JSONL path, or an Inspect ``.py`` task file.
        model: A local Hugging Face folder (run by the ``safescale/`` provider) or any Inspect
            model string (``openai-api-completions/local/m``, ``vllm/...``, ``anthropic/...``).
        limit: Evaluate only the first ``limit`` samples.
        log_dir: Where Inspect writes its log (default ``./logs``).
        data_dir: Corpus folder for named suites.
        model_args: Provider arguments (``dtype``, ``device``, ``batch_size``, ``max_length``).
        tokenizer: Tokenizer folder for log-likelihood scoring through an HTTP model.
        template: Multiple-choice prompt with a ``{question}`` field.
        scorer: Scorer for a generative JSONL task (default: the suite's, else ``match``).
        model_id: Model id in evidence (default: the folder name or the model string).
        display: Inspect display (``none``, ``plain``, ``rich``, ``full``).
        max_samples: Samples in flight at once; the provider batches their requests.
        log_format: Inspect log format: ``eval`` (Inspect's compressed zip, about a fifth of
            the size) or ``json`` (one plain JSON file).
        runner: ``batched`` scores a multiple-choice task on a local folder in one pass and
            writes its Inspect log directly (see :mod:`safescale.evals._batched`); ``inspect``
            runs every sample through Inspect's solver, ``generate`` and scorer with its full
            transcript; ``auto`` (default) takes ``batched`` where it applies.
    """
    from inspect_ai.log import read_eval_log_sample_summaries
    from inspect_ai.model import get_model

    if limit is not None and limit < 1:
        raise UserError(Problem("must be at least 1", field="--limit"))
    resolved = resolve_task(
        task, data_dir=data_dir, template=template, tokenizer=tokenizer, scorer=scorer
    )
    meta: dict[str, Any] = {
        "evaluation_id": resolved.evaluation_id,
        "metric_names": dict(resolved.metric_names),
    }
    if resolved.data is not None:
        meta["dataset_sha256"] = resolved.data.sha256
    args = dict(model_args or {})
    if looks_like_path(model):
        path = Path(model).expanduser().resolve()
        check_model_dir(path)
        inspect_model = f"safescale/{path}"
        meta["weights_sha256"] = model_dir_sha256(path)
        meta["model_path"] = str(path)
        meta["model_id"] = model_id or path.name
    else:
        if "/" not in model:
            raise UserError(
                Problem(
                    "not a model folder nor an Inspect model string (provider/model)", source=model
                )
            )
        inspect_model = model
        meta["model_id"] = model_id or model
    # The id goes into the log, the evidence and the ledger: the id grammar holds it.
    check_id(meta["model_id"], "--model", what="model id (rename the folder, or pass model_id)")
    meta["model_args"] = {k: str(v) for k, v in args.items()}
    # Not memoized by Inspect: a local folder's weights are kept by load_local_model's own
    # cache (see unload_local_models), so Inspect's cache would only hold a second reference.
    model_obj = get_model(inspect_model, memoize=False, **args)
    api = model_obj.api
    local = api if isinstance(api, LocalModelAPI) else None
    data = resolved.data
    # Multiple choice on a local folder: every request is known before the run starts.
    mc_local = local is not None and data is not None and data.kind == "multiple_choice"
    if runner == "batched" and not mc_local:
        raise UserError(
            Problem(
                "the batched runner takes a multiple-choice task on a local model folder; "
                "use --runner inspect (or auto)",
                field="--runner",
            )
        )
    show = display != "none"
    if mc_local and runner != "inspect":
        assert local is not None and data is not None
        samples = data.samples[:limit]
        meta["runner"] = "batched"
        log = _with_progress(
            show,
            lambda progress: run_batched(
                task_name=getattr(resolved.task, "name", resolved.name),
                samples=samples,
                dataset_path=data.path,
                api=local,
                model=str(model_obj),
                model_args=args,
                template=template,
                limit=limit,
                log_dir=log_dir or DEFAULT_LOG_DIR,
                metadata={META_KEY: meta},
                log_format=log_format,
                progress=progress,
            ),
        )
    else:
        meta["runner"] = "inspect"
        log = _inspect_run(
            resolved.task,
            model_obj,
            local if mc_local else None,
            requests=mc_requests(data.samples[:limit], template) if mc_local and data else [],
            limit=limit,
            log_dir=log_dir,
            display=display,
            meta=meta,
            max_samples=max_samples,
            log_format=log_format,
        )
    log_path = Path(str(log.location))
    sha = file_sha256(log_path)
    # The scores are read back from the written log (what a reviewer will read), through its
    # sample summaries: the same scores as the full samples, without parsing every transcript.
    summaries = read_eval_log_sample_summaries(str(log_path))
    metrics, evidence = evidence_from_eval_log(log, sha, summaries=summaries)
    files = [log_path]
    artifacts = {"log": sha}
    if resolved.data is not None:
        # The dataset file is small and is what the numbers are about: keep it with the log.
        files.append(resolved.data.path)
        artifacts["dataset"] = resolved.data.sha256
        evidence = [
            e.model_copy(update={"artifacts": {**e.artifacts, "dataset": resolved.data.sha256}})
            for e in evidence
        ]
    return EvalRunResult(
        task=resolved.name,
        model=str(meta["model_id"]),
        log_path=log_path,
        metrics=tuple(metrics),
        evidence=tuple(evidence),
        evaluation_id=resolved.evaluation_id,
        artifacts=artifacts,
        files=tuple(files),
    )


def _inspect_run(
    task: Any,
    model: Any,
    local: LocalModelAPI | None,
    *,
    requests: list[tuple[str, list[str]]],
    limit: int | None,
    log_dir: Path | None,
    display: str,
    meta: dict[str, Any],
    max_samples: int,
    log_format: Literal["eval", "json"],
) -> Any:
    """Run ``task`` through Inspect's loop; with ``local``, its ``requests`` are scored first.

    Every request of a multiple-choice task is known before it starts, so they are scored in
    one batched pass (see LocalModelAPI.prefetch for why that is faster) and each sample's
    model call is answered from it. The texts are built exactly as the solver builds them; a
    text built otherwise would only miss the prefetched scores and be scored when asked.
    """
    from inspect_ai import eval as inspect_eval

    if local is not None:
        _with_progress(display != "none", lambda p: local.prefetch(requests, progress=p))
    try:
        logs = inspect_eval(
            task,
            model=model,
            limit=limit,
            log_dir=str(log_dir or DEFAULT_LOG_DIR),
            display=display,  # type: ignore[arg-type]
            metadata={META_KEY: meta},
            score_display=False,
            log_samples=True,
            log_realtime=False,
            log_format=log_format,
            max_samples=max_samples,
            log_buffer=max(100, max_samples),
        )
    finally:
        if local is not None:
            local.clear_prefetch()
    log = logs[0]
    if log.status != "success":
        message = log.error.message if log.error else f"status {log.status}"
        raise RuntimeError(f"the evaluation failed: {message} (log: {log.location})")
    return log


T = TypeVar("T")


def _with_progress(show: bool, work: Callable[[Callable[[int, int], None] | None], T]) -> T:
    """``work(progress)``, with a progress bar over the scoring pass when ``show``."""
    if not show:
        return work(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task("scoring choices", total=None)
        return work(lambda done, total: bar.update(task, completed=done, total=total))
