"""Run a suite, a JSONL task or an Inspect task file on a model; return metrics and evidence."""

from __future__ import annotations

import contextlib
import gc
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypedDict, TypeVar, Unpack

from safescale._errors import Problem, RunFailed, UserError
from safescale._input import check_id, is_sha256, quote
from safescale.evals._backend import select_backend, supports_prefetch
from safescale.evals._batched import mc_requests, run_batched
from safescale.evals._evidence import (
    META_KEY,
    evidence_from_eval_log,
    file_sha256,
)
from safescale.evals._identity import (
    endpoint_address,
    local_folder,
    looks_like_path,
    resolve_model_identity,
    served_weights,
)
from safescale.evals._lm import check_model_dir
from safescale.evals._mc import DEFAULT_TEMPLATE, hf_tokenizer
from safescale.evals._models import check_tokenizer, inspect_model, redact_args
from safescale.evals._stats import MetricEstimate
from safescale.evals._suites import ResolvedTask, resolve_task
from safescale.policy import Evidence, ModelRecord

DEFAULT_LOG_DIR = Path("logs")
FULL_COLLECTION_EVERY = 100
"""During a run, the collector's full pass comes after this many middle-generation passes
(CPython's default threshold is 10), about once per 1,000 Inspect samples; see :func:`_run_gc`."""


@dataclass(frozen=True)
class RunOptions:
    """Inspect's usual run options (``inspect eval -T ... --epochs ... --max-tokens ...``)."""

    task_args: Mapping[str, Any] = field(default_factory=dict)
    """Arguments of an Inspect task file's ``@task`` functions (``-T key=value``); each task
    receives the ones it accepts."""
    epochs: int | None = None
    """Times each sample is run; a sample's score is the mean over its epochs."""
    max_tokens: int | None = None
    """Generation cap (overrides a suite's own)."""
    temperature: float | None = None
    """Sampling temperature (0: greedy)."""

    def __post_init__(self) -> None:
        if self.epochs is not None and self.epochs < 1:
            raise UserError(Problem("must be at least 1", field="--epochs"))
        if self.max_tokens is not None and self.max_tokens < 1:
            raise UserError(Problem("must be at least 1", field="--max-tokens"))
        if self.temperature is not None and not (
            math.isfinite(self.temperature) and self.temperature >= 0
        ):
            raise UserError(Problem("must be a finite number >= 0", field="--temperature"))

    def generate_args(self) -> dict[str, Any]:
        """The generation settings given, as Inspect's ``eval`` takes them."""
        out: dict[str, Any] = {}
        if self.max_tokens is not None:
            out["max_tokens"] = self.max_tokens
        if self.temperature is not None:
            out["temperature"] = self.temperature
        return out

    def changed(self) -> bool:
        """Whether any option differs from Inspect's defaults."""
        return bool(self.task_args) or self.epochs not in (None, 1) or bool(self.generate_args())

    def as_dict(self) -> dict[str, Any]:
        """The options given, for the log's metadata and the evidence's elicitation."""
        out: dict[str, Any] = {k: str(v) for k, v in self.task_args.items()}
        out = {"task_args": out} if out else {}
        if self.epochs is not None:
            out["epochs"] = self.epochs
        return {**out, **self.generate_args()}


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


SERVER_RETRIES: dict[str, Any] = {"max_retries": 5, "timeout": 600}
"""Inspect's retry limits for a model behind a server at a given address (``base_url``, or the
provider's variable): Inspect retries a failed request for ever by default, so a server that
dies in the middle of a run would hang it; with these the run ends (about a minute and a half
of back-off) as a :class:`RunFailed`. Hosted APIs keep Inspect's defaults."""


class RunArgs(TypedDict, total=False):
    """The keyword arguments of :func:`run_suite`, which are :func:`run_evals`'s (see there)."""

    limit: int | None
    log_dir: Path | None
    data_dir: Path | None
    model_args: dict[str, Any] | None
    tokenizer: str | None
    template: str
    scorer: str | None
    model_id: str | None
    display: str
    max_samples: int
    log_format: Literal["eval", "json"]
    runner: Literal["auto", "batched", "inspect"]
    options: RunOptions | None
    records: Sequence[ModelRecord]


def run_suite(task: str, model: str, **kwargs: Unpack[RunArgs]) -> EvalRunResult:
    """Evaluate ``model`` on one task through Inspect and build the evidence.

    ``task`` is a suite name (``lab/hazard_proxy``), a JSONL path, or an Inspect ``.py`` task
    file holding one task (or ``FILE@name``); :func:`run_evals` runs every task of a file and
    documents the keyword arguments.
    """
    results = run_evals([task], model, **kwargs)
    if len(results) != 1:
        names = ", ".join(r.task for r in results)
        raise UserError(
            Problem(
                f"the file holds {len(results)} tasks ({names}), all run and logged; name one "
                "with FILE@TASK, or use run_evals for every task",
                source=task,
            )
        )
    return results[0]


@_run_gc()
def run_evals(
    tasks: Sequence[str],
    model: str,
    *,
    limit: int | None = None,
    log_dir: Path | None = None,
    data_dir: Path | None = None,
    model_args: dict[str, Any] | None = None,
    tokenizer: str | None = None,
    template: str = DEFAULT_TEMPLATE,
    scorer: str | None = None,
    model_id: str | None = None,
    display: str = "none",
    max_samples: int = 256,
    log_format: Literal["eval", "json"] = "eval",
    runner: Literal["auto", "batched", "inspect"] = "auto",
    options: RunOptions | None = None,
    records: Sequence[ModelRecord] = (),
) -> tuple[EvalRunResult, ...]:
    """Evaluate ``model`` on every task of ``tasks``; one result per task run.

    A TASK is a suite name, a JSONL file or an Inspect ``.py`` file; every ``@task`` of a file
    is run (``FILE@name`` runs one).

    Args:
        model: A local Hugging Face folder (run by the ``safescale/`` provider) or any Inspect
            model string (``openai-api-completions/local/m``, ``vllm/...``, ``anthropic/...``).
        limit: Evaluate only the first ``limit`` samples.
        log_dir: Where Inspect writes its log (default ``./logs``).
        data_dir: Corpus folder for named suites.
        model_args: Provider arguments (``dtype``, ``device``, ``batch_size``, ``max_length``).
        tokenizer: Tokenizer folder for log-likelihood scoring through an HTTP model.
        template: Multiple-choice prompt with a ``{question}`` field.
        scorer: Scorer for a generative JSONL task, by its name in
            :data:`~safescale.evals.SCORERS` (default: the suite's, else ``match``).
        model_id: Model id in evidence (default: see :mod:`safescale.evals._identity`).
        display: Inspect display (``none``, ``plain``, ``rich``, ``full``).
        max_samples: Samples in flight at once; the provider batches their requests.
        log_format: Inspect log format: ``eval`` (Inspect's compressed zip, about a fifth of
            the size) or ``json`` (one plain JSON file).
        runner: ``batched`` scores a multiple-choice task on a local folder in one pass and
            writes its Inspect log directly (see :mod:`safescale.evals._batched`); ``inspect``
            runs every sample through Inspect's solver, ``generate`` and scorer with its full
            transcript; ``auto`` (default) takes ``batched`` where it applies.
        options: Inspect's run options (task arguments, epochs, generation settings).
        records: The ledger's model records, against which the model's id is resolved.
    """
    opts = options or RunOptions()
    if limit is not None and limit < 1:
        raise UserError(Problem("must be at least 1", field="--limit"))
    if not tasks:
        raise UserError(Problem("name at least one task", field="TASK"))
    resolved_all = [
        resolve_task(
            t,
            data_dir=data_dir,
            template=template,
            tokenizer=tokenizer,
            scorer=scorer,
            max_tokens=opts.max_tokens,
        )
        for t in tasks
    ]
    if opts.task_args and all(r.data is not None for r in resolved_all):
        raise UserError(
            Problem("task arguments (-T) apply to Inspect .py task files only", field="-T")
        )
    folder = local_folder(model)
    if folder is not None:
        check_model_dir(folder)  # says what is missing before the weights are hashed
    args = dict(model_args or {})
    identity = resolve_model_identity(
        model, model_id=model_id, records=records, model_args=args, ask_server=True
    )
    base_meta: dict[str, Any] = {"model_id": identity.id, "model_identity": identity.source}
    if identity.path is not None:
        # A folder runs on the local provider; an Inspect string naming one (``hf/DIR``,
        # ``safescale/DIR``) runs on the provider it names, under the same identity.
        model_string = f"safescale/{identity.path}" if looks_like_path(model) else model
        base_meta["weights_sha256"] = identity.weights_sha256
        base_meta["model_path"] = str(identity.path)
    else:
        if "/" not in model:
            raise UserError(
                Problem(
                    "not a model folder nor an Inspect model string (provider/model)", source=model
                )
            )
        model_string = model
        base_meta["endpoint"] = model
        if identity.weights_sha256 is not None:  # as the endpoint's server reports them
            base_meta["weights_sha256"] = identity.weights_sha256
    # The id goes into the log, the evidence and the ledger: the id grammar holds it.
    check_id(
        base_meta["model_id"], "--model", what="model id (rename the folder, or pass model_id)"
    )
    # Never a key into a log, the evidence or the ledger.
    base_meta["model_args"] = redact_args({k: str(v) for k, v in args.items()})
    if opts.changed():
        base_meta["run_options"] = opts.as_dict()
        # How the capability was drawn out is the evidence's elicitation (DESIGN.md, Records).
        base_meta["elicitation"] = ", ".join(f"{k}={v}" for k, v in sorted(opts.as_dict().items()))
    # Not memoized by Inspect: a local folder's weights are kept by load_local_model's own
    # cache (see unload_local_models), so Inspect's cache would only hold a second reference.
    model_obj = inspect_model(model_string, "--model", memoize=False, **args)
    if any(r.data is not None and r.data.kind == "multiple_choice" for r in resolved_all):
        # Said before any run, not from inside Inspect's loop after it starts: no backend can
        # score this model's log-likelihoods (an endpoint without --tokenizer), or the
        # tokenizer folder is not one.
        select_backend(model_obj, tokenizer)
        if tokenizer is not None:
            tok = hf_tokenizer(tokenizer)
            if identity.path is None:  # an endpoint: is this its tokenizer?
                check_tokenizer(model_string, args, tok, tokenizer)
    endpoint = dict(SERVER_RETRIES) if endpoint_address(model_string, args) is not None else {}
    if identity.path is None and identity.weights_sha256 is not None:
        # Every answer in the log, not Inspect's default first few: each names the weights
        # that gave it (see _check_answered_by).
        endpoint["log_model_api"] = True
    out: list[EvalRunResult] = []
    for resolved in resolved_all:
        out += _run_one(
            resolved,
            model_obj,
            base_meta,
            endpoint=endpoint,
            args=args,
            limit=limit,
            log_dir=log_dir,
            template=template,
            display=display,
            max_samples=max_samples,
            log_format=log_format,
            runner=runner,
            opts=opts,
        )
    if identity.path is None and identity.weights_sha256 is not None:
        _check_still_served(model_string, args, identity.weights_sha256)
        _check_answered_by(out, identity.weights_sha256)
    return tuple(out)


def _check_answered_by(results: Sequence[EvalRunResult], before: str) -> None:
    """Refuse the results of a run in which any answer came from other weights than the ones
    served when it began. ``serve-model`` names its weights in every answer's
    ``system_fingerprint``, which Inspect keeps in the log with each model call; this sees a
    swap and a swap back within the run, which the check at its start and end does not."""
    for result in results:
        for sample_id, named in _answers_named(result.log_path):
            if named == before:
                continue
            # what the server wrote is shown only if it is a hash (it could be anything)
            who = (
                "a server that does not name its weights"
                if named is None
                else f"weights {named[:12]}"
            )
            raise RunFailed(
                Problem(
                    f"the server served weights {before[:12]} when the run began, but sample "
                    f"{quote(sample_id)} of {quote(result.task)} was answered by {who}; the "
                    "results may mix two models, so none are recorded (run again against a "
                    "server that keeps its weights)",
                    field="--model",
                )
            )


def _answers_named(log_path: Path) -> Iterator[tuple[object, str | None]]:
    """``(sample id, weights sha256 or None)`` for every answer the log at ``log_path`` kept,
    ``None`` where the answer's ``system_fingerprint`` names no weights."""
    from inspect_ai.log import read_eval_log_samples

    from safescale.evals._server_jobs import FINGERPRINT_PREFIX

    for sample in read_eval_log_samples(str(log_path), all_samples_required=False):
        for event in sample.events:
            answer = getattr(getattr(event, "call", None), "response", None)
            if event.event != "model" or not isinstance(answer, dict) or "choices" not in answer:
                continue  # no answer (an error, a retry): nothing to tell by
            got = answer.get("system_fingerprint")
            sha = got[len(FINGERPRINT_PREFIX) :] if isinstance(got, str) else None
            named = isinstance(got, str) and got.startswith(FINGERPRINT_PREFIX) and is_sha256(sha)
            yield sample.id, sha if named else None


def _check_still_served(model: str, args: dict[str, Any], before: str) -> None:
    """Refuse the results of a run whose server no longer serves the weights it served when
    the run began (restarted with other weights under the same name: Inspect retries the
    requests that failed and carries on against the new ones, and the results mix two models).
    A swap and a swap back within one run is seen by :func:`_check_answered_by`."""
    try:
        after = served_weights(model, args)
    except UserError:
        after = None
    if after is None or after.weights_sha256 != before:
        now = "no longer answers" if after is None else f"now serves {after.weights_sha256[:12]}"
        raise RunFailed(
            Problem(
                f"the server served weights {before[:12]} when the run began and {now}; the "
                "results may mix two models, so none are recorded (run again against a server "
                "that keeps its weights)",
                field="--model",
            )
        )


def _run_one(
    resolved: ResolvedTask,
    model_obj: Any,
    base_meta: dict[str, Any],
    *,
    endpoint: dict[str, Any],
    args: dict[str, Any],
    limit: int | None,
    log_dir: Path | None,
    template: str,
    display: str,
    max_samples: int,
    log_format: Literal["eval", "json"],
    runner: Literal["auto", "batched", "inspect"],
    opts: RunOptions,
) -> list[EvalRunResult]:
    """Run one resolved TASK (a task file may hold several tasks); one result per log."""
    from inspect_ai.log import read_eval_log_sample_summaries

    meta: dict[str, Any] = {
        **base_meta,
        "evaluation_id": resolved.evaluation_id,
        "metric_names": dict(resolved.metric_names),
    }
    if resolved.data is not None:
        meta["dataset_sha256"] = resolved.data.sha256
    # The local provider answers grouped log-likelihood requests in one batched pass; that is
    # a capability of the model API, not of its class (see LoglikelihoodBackend).
    api = model_obj.api
    local = api if supports_prefetch(api) else None
    data = resolved.data
    # Multiple choice on a local folder: every request is known before the run starts.
    mc_local = local is not None and data is not None and data.kind == "multiple_choice"
    batched_ok = mc_local and opts.epochs in (None, 1)
    if runner == "batched" and not batched_ok:
        raise UserError(
            Problem(
                "the batched runner takes a multiple-choice task on a local model folder, "
                "one epoch; use --runner inspect (or auto)",
                field="--runner",
            )
        )
    show = display != "none"
    if batched_ok and runner != "inspect":
        assert local is not None and data is not None
        samples = data.samples[:limit]
        meta["runner"] = "batched"
        logs = [
            _with_progress(
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
        ]
    else:
        meta["runner"] = "inspect"
        logs = _inspect_run(
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
            opts=opts,
            endpoint=endpoint,
        )
    results = []
    for log in logs:
        log_path = Path(str(log.location))
        sha = file_sha256(log_path)
        # The scores are read back from the written log (what a reviewer will read), through
        # its sample summaries: the same scores as the full samples, without every transcript.
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
        results.append(
            EvalRunResult(
                task=resolved.name if resolved.data is not None else str(log.eval.task),
                model=str(meta["model_id"]),
                log_path=log_path,
                metrics=tuple(metrics),
                evidence=tuple(evidence),
                evaluation_id=resolved.evaluation_id,
                artifacts=artifacts,
                files=tuple(files),
            )
        )
    return results


def _inspect_run(
    task: Any,
    model: Any,
    local: Any | None,
    *,
    requests: list[tuple[str, list[str]]],
    limit: int | None,
    log_dir: Path | None,
    display: str,
    meta: dict[str, Any],
    max_samples: int,
    log_format: Literal["eval", "json"],
    opts: RunOptions,
    endpoint: dict[str, Any],
) -> list[Any]:
    """Run ``task`` through Inspect's loop; with ``local``, its ``requests`` are scored first.

    Returns one log per task (an Inspect file may hold several).

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
            task_args=dict(opts.task_args),
            epochs=opts.epochs,
            **opts.generate_args(),
            **endpoint,
        )
    finally:
        if local is not None:
            local.clear_prefetch()
    for log in logs:
        if log.status != "success":
            message = log.error.message if log.error else f"status {log.status}"
            raise RunFailed(
                Problem(
                    f"the evaluation of {log.eval.task} failed: {message}; the log holds the "
                    f"traceback: {log.location}"
                )
            )
    return list(logs)


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
