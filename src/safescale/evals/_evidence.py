"""Evaluation logs become Evidence records: metrics with intervals and n, and artifact hashes.

Inspect logs (``.eval``/``.json``) and lm-evaluation-harness results files are both read here.
The building is pure (:func:`evidence_from_eval_log`, :func:`evidence_from_lm_eval_results`);
only :func:`record_evidence` touches the workspace ledger.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from safescale._errors import Problem, UserError
from safescale._input import (
    check_count,
    check_id,
    check_number,
    check_text,
    decode_utf8,
    is_sha256,
    loads_json,
    quote,
    read_limited,
    regular_file_size,
    size_text,
)
from safescale._io import WEIGHT_SUFFIXES, file_sha256, weights_sha256
from safescale.evals._degenerate import detect_degeneracy
from safescale.evals._identity import id_for_weights, resolve_model_identity
from safescale.evals._models import redact_args
from safescale.evals._stats import MetricEstimate, mean_normal, proportion
from safescale.policy import (
    Evidence,
    Interval,
    ModelRecord,
    check_one_weights,
    metric_range,
    sha256_hex,
)

MAX_SAMPLES = 1_000_000_000
"""Most samples a metric may claim (lm-eval's ``n-samples``)."""
MAX_METRIC_LEN = 256
"""Longest metric key (``acc,none``) imported from a results file."""
MAX_VERSION_LEN = 256
"""Longest package version string imported from a results file."""
MAX_LOG_BYTES = 4 << 30
"""Largest .eval log imported (Inspect logs of large suites run to hundreds of MB)."""
MAX_JSON_LOG_BYTES = 1 << 30
"""Largest .json log or results file imported; it is parsed in memory."""
META_KEY = "safescale"
"""Key of our facts in an Inspect log's ``eval.metadata``."""
PACKAGES = ("safescale", "inspect_ai", "torch", "transformers", "tokenizers", "lm_eval")


_DIR_HASHES: dict[tuple[str, tuple[tuple[str, int, int], ...]], str] = {}


def model_dir_sha256(path: Path) -> str:
    """The weights' identity in a model folder (:func:`safescale._io.weights_sha256`).

    Cached per (file, size, mtime) listing, so that evaluating one checkpoint many times hashes
    its weights once.
    """
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    stamp = tuple((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    key = (str(path.resolve()), stamp)
    if key not in _DIR_HASHES:
        _DIR_HASHES[key] = weights_sha256(path)
    return _DIR_HASHES[key]


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that shape a result (missing ones are left out)."""
    out = {}
    for name in names:
        try:
            out[name] = version(name.replace("_", "-"))
        except PackageNotFoundError:
            continue
    return out


def metric_estimates(values: Mapping[str, list[float]]) -> list[MetricEstimate]:
    """Per-metric estimates from per-sample values: Wilson for 0/1 values, else normal."""
    out = []
    for name, vals in values.items():
        vals = [v for v in vals if v is not None and not math.isnan(v)]
        n = len(vals)
        if n and all(v in (0.0, 1.0) for v in vals):
            out.append(proportion(name, sum(vals), n))
        elif n:
            mean = statistics.fmean(vals)
            se = statistics.stdev(vals) / math.sqrt(n) if n > 1 else None
            out.append(mean_normal(name, mean, se, n))
    return out


ACCURACY_SCORERS = frozenset({"match", "includes", "exact", "opening", "model_graded_qa", "choice"})
"""Scorers read as ``accuracy`` in a log that does not declare its scorers' metrics."""


def _accuracy_scorers(log: Any) -> frozenset[str]:
    """Scorers whose single value the log reports through Inspect's ``accuracy`` metric.

    Read from the log's own scorer declarations (``log.eval.scorers``), so any scorer with an
    ``accuracy`` metric counts; :data:`ACCURACY_SCORERS` stands in for logs without them.
    """
    declared = getattr(log.eval, "scorers", None)
    if not declared:
        return ACCURACY_SCORERS
    return frozenset(
        spec.name
        for spec in declared
        if any(name.rsplit("/", 1)[-1] == "accuracy" for name in _metric_names(spec.metrics))
    )


def _metric_names(metrics: Any) -> Iterator[str]:
    """Metric names in a scorer declaration (a list or a dict of lists of definitions)."""
    if isinstance(metrics, dict):
        for group in metrics.values():
            yield from _metric_names(group)
    elif isinstance(metrics, list):
        for item in metrics:
            yield from _metric_names(item)
    elif metrics is not None:
        yield str(metrics.name)


def _sample_values(samples: Iterable[Any], accuracy: frozenset[str]) -> dict[str, list[float]]:
    """Each metric's per-sample values; a sample run for several epochs counts once, with the
    mean of its epochs (the epochs of one sample are not independent draws of the task)."""
    from inspect_ai.scorer import value_to_float

    to_float = value_to_float()
    values: dict[str, dict[Any, list[float]]] = {}
    for n, sample in enumerate(samples):
        key = getattr(sample, "id", None)
        key = n if key is None else key
        for scorer_name, score in (sample.scores or {}).items():
            if isinstance(score.value, dict):
                for name, v in score.value.items():
                    values.setdefault(name, {}).setdefault(key, []).append(float(to_float(v)))
            else:
                name = "accuracy" if scorer_name in accuracy else scorer_name
                values.setdefault(name, {}).setdefault(key, []).append(float(to_float(score.value)))
    return {
        name: [statistics.fmean(v) if len(v) > 1 else v[0] for v in per_sample.values()]
        for name, per_sample in values.items()
    }


def evidence_id(log_sha256: str, *parts: object) -> str:
    """A content-derived evidence id: the log's hash and what the record says about it.

    The same log imported again with the same model, subject and metric gets the same id (and
    is recognised as already recorded); another model id or subject gives another id.
    """
    key = ":".join([log_sha256, *(str(p) for p in parts)])
    return f"ev-{sha256_hex(key.encode())[:16]}"


def evidence_from_eval_log(
    log: Any,
    log_sha256: str,
    *,
    model_id: str | None = None,
    evaluation_id: str | None = None,
    summaries: Iterable[Any] | None = None,
    records: Sequence[ModelRecord] = (),
) -> tuple[list[MetricEstimate], list[Evidence]]:
    """Metrics and Evidence records from a read Inspect ``EvalLog`` (pure: no files touched).

    Per-sample scores come from ``summaries`` (Inspect's ``EvalSampleSummary`` records, as
    ``read_eval_log_sample_summaries`` reads them) when given, else from ``log.samples``. Both
    hold the same scores; the summaries are read without the samples' transcripts. The model
    id is ``model_id``, else the one the run recorded, else the log's model resolved against
    the ledger's ``records`` (:func:`~safescale.evals._identity.resolve_model_identity`).
    """
    if log.status != "success":
        raise UserError(
            Problem(
                f"the evaluation did not finish (status {log.status}); nothing recorded",
                source=log.location,
            )
        )
    ours: dict[str, Any] = dict((log.eval.metadata or {}).get(META_KEY) or {})
    src = str(log.location)
    samples = list(log.samples or [] if summaries is None else summaries)
    values = _sample_values(samples, _accuracy_scorers(log))
    for name, vals in values.items():
        # NaN marks an unscored sample (dropped below); an infinite score is not a score.
        if any(math.isinf(v) for v in vals):
            raise UserError(
                Problem(
                    "a sample's score is infinite; score every sample with a finite number",
                    source=src,
                    field=f"scores.{name}",
                )
            )
    metrics = metric_estimates(values)
    degenerate = detect_degeneracy(samples)
    if not metrics:
        raise UserError(Problem("the log holds no scored samples", source=log.location))
    subject = evaluation_id or check_id(
        ours.get("evaluation_id") or log.eval.task, "eval.task", what="evaluation id", source=src
    )
    # Every id that reaches the ledger holds the id grammar; the log's model string is checked
    # before it is resolved (it may name a folder).
    recorded_id = ours.get("model_id")
    if recorded_id:
        recorded_id = check_id(recorded_id, "eval.model", what="model id", source=src)
    sha = ours.get("weights_sha256")
    if is_sha256(sha):
        # The weights the run recorded decide, as in eval run: a --model-id that names another
        # record's weights is refused, and weights on record keep their record's id.
        model_id = id_for_weights(sha, model_id, records) or model_id
    model = model_id or recorded_id
    if not model:
        logged = check_id(log.eval.model, "eval.model", what="model id", source=src)
        model = resolve_model_identity(logged, records=records).id
    # ``artifacts`` names files kept in the workspace's artifact store (the log here; the
    # dataset too when the run had the file, see run_suite). Hashes of things that are not
    # stored (the weights) go into ``details``.
    artifacts = {"log": log_sha256}
    hashes = {
        f"{key}_sha256": ours[f"{key}_sha256"]
        for key in ("dataset", "weights")
        if ours.get(f"{key}_sha256")
    }
    packages = {**package_versions(), **(log.eval.packages or {})}
    elicitation = ours.get("elicitation", "")
    # A log written by the batched runner holds safescale's scoring in Inspect's format.
    producer = "safescale" if ours.get("runner") == "batched" else "inspect-ai"
    renamed: dict[str, str] = dict(ours.get("metric_names") or {})
    evidence = [
        Evidence(
            id=evidence_id(log_sha256, log.eval.task, m.name, model, subject),
            model=model,
            kind="evaluation",
            subject=subject,
            metric=renamed.get(m.name, m.name),
            value=m.value,
            interval=Interval(lo=m.lo, hi=m.hi, confidence=m.confidence, method=m.method)
            if m.lo is not None and m.hi is not None
            else None,
            n=m.n,
            elicitation=elicitation,
            producer=producer,
            producer_version=str(packages.get(producer.replace("-", "_"), "")),
            artifacts=artifacts,
            details={
                "task": log.eval.task,
                "inspect_model": log.eval.model,
                "eval_id": log.eval.eval_id,
                "run_id": log.eval.run_id,
                "dataset": log.eval.dataset.location,
                "log": str(log.location),
                "packages": packages,
                "interval_method": m.method,
                "scorer_metric": m.name,
                **hashes,
                **{k: v for k, v in ours.items() if k not in ("evaluation_id", "model_id")},
                **({"degenerate": degenerate.reason} if degenerate else {}),
            },
        )
        for m in metrics
    ]
    return metrics, evidence


def evidence_from_lm_eval_results(
    results: Mapping[str, Any],
    results_sha256: str,
    *,
    model_id: str | None = None,
    evaluation_id: str | None = None,
    source: str = "results.json",
    records: Sequence[ModelRecord] = (),
) -> tuple[list[MetricEstimate], list[Evidence]]:
    """Metrics and Evidence from an lm-evaluation-harness results JSON (pure).

    lm-eval stores each metric's mean and n (``n-samples``); accuracy-type metrics
    (``acc``, ``acc_norm``, ``acc_bytes``, ``exact_match``) get a Wilson interval from
    k = round(mean x n); other metrics a normal interval from lm-eval's stderr.
    """
    if "results" not in results or not isinstance(results["results"], dict):
        raise UserError(
            Problem("not an lm-evaluation-harness results file (no 'results')", source=source)
        )
    config = results.get("config") or {}
    if not isinstance(config, dict):
        raise UserError(Problem("must be a mapping of settings", source=source, field="config"))
    for field, value in (
        ("config.model_name", config.get("model_name")),
        ("model_name", results.get("model_name")),
        ("config.model", config.get("model")),
    ):
        if value is not None and not isinstance(value, str):
            raise UserError(
                Problem(f"{quote(value)} is not a model name; give a string", source=source,
                        field=field)
            )  # fmt: skip
    model = check_id(
        lm_eval_model_id(results, records, model_id),
        "config.model_name",
        what="model id",
        source=source,
    )
    n_table = results.get("n-samples") or {}
    if not isinstance(n_table, dict):
        raise UserError(Problem("must be a mapping of tasks", source=source, field="n-samples"))
    versions = {
        name: check_text(
            str(results.get(f"{name}_version", "")), f"{name}_version", max_len=MAX_VERSION_LEN,
            allow_empty=True, source=source,
        )
        for name in ("lm_eval", "transformers")
    }  # fmt: skip
    metrics: list[MetricEstimate] = []
    evidence: list[Evidence] = []
    for task, row in results["results"].items():
        base = f"results.{task}"
        check_id(task, "results", what="task name", source=source)
        if not isinstance(row, dict):
            raise UserError(Problem("must be a mapping of metrics", source=source, field=base))
        n_info = n_table.get(task) or {}
        if not isinstance(n_info, dict):
            raise UserError(
                Problem("must be a mapping of counts", source=source, field=f"n-samples.{task}")
            )
        n_field = "effective" if n_info.get("effective") else "original"
        n = check_count(
            n_info.get(n_field) or 0,
            f"n-samples.{task}.{n_field}",
            hi=MAX_SAMPLES,
            source=source,
        )
        for key, value in row.items():
            check_text(key, f"{base} (a metric name)", max_len=MAX_METRIC_LEN, source=source)
            if "," not in key or "_stderr" in key or not isinstance(value, int | float):
                continue
            name = key.split(",", 1)[0]
            check_text(name, f"{base}.{quote(key)} (the metric name)", max_len=MAX_METRIC_LEN,
                       source=source)  # fmt: skip
            if not n:
                raise UserError(Problem(
                    f"no sample count for task {quote(task)}, so {name} has no interval; give the "
                    "results file lm-eval writes with n-samples (lm-eval 0.4 or later), or run "
                    "it with --log_samples", source=source, field=f"n-samples.{task}"))  # fmt: skip
            span = metric_range(name)
            lo, hi = span if span is not None else (None, None)
            if "perplexity" in name:  # a perplexity is exp(mean loss) >= 1
                lo, hi = 1.0, None
            value = check_number(value, f"{base}.{key}", lo=lo, hi=hi, source=source)
            stderr = row.get(f"{name}_stderr,{key.split(',', 1)[1]}")
            if isinstance(stderr, int | float) and not isinstance(stderr, bool):
                stderr = check_number(
                    stderr, f"{base}.{name}_stderr,{key.split(',', 1)[1]}", lo=0, source=source
                )
            if name in ("acc", "acc_norm", "acc_bytes", "exact_match") and n:
                m = proportion(name, round(float(value) * n), n)
                m = MetricEstimate(name, float(value), n, m.lo, m.hi, m.confidence, m.method)
            else:
                m = mean_normal(
                    name, float(value), stderr if isinstance(stderr, int | float) else None, n
                )
            metrics.append(m)
            artifacts = {"log": results_sha256}
            hashes = {}
            task_hash = (results.get("task_hashes") or {}).get(task)
            if task_hash:
                hashes["dataset_hash"] = str(task_hash)
            if config.get("model_sha"):
                hashes["weights_sha"] = str(config["model_sha"])
            evidence.append(
                Evidence(
                    id=evidence_id(results_sha256, task, name, model, evaluation_id or task),
                    model=model,
                    kind="evaluation",
                    subject=evaluation_id or task,
                    metric=name,
                    value=float(value),
                    interval=Interval(lo=m.lo, hi=m.hi, confidence=m.confidence, method=m.method)
                    if m.lo is not None and m.hi is not None
                    else None,
                    n=n,
                    producer="lm-evaluation-harness",
                    producer_version=versions["lm_eval"],
                    artifacts=artifacts,
                    details={
                        **hashes,
                        "task": task,
                        "packages": versions,
                        "model_args": redact_args(config.get("model_args")),
                        "interval_method": m.method,
                    },
                )
            )
    if not evidence:
        raise UserError(Problem("no metrics found in the results file", source=source))
    return metrics, evidence


def lm_eval_model_id(
    results: Mapping[str, Any], records: Sequence[ModelRecord] = (), model_id: str | None = None
) -> str:
    """The model an lm-eval results file is about, resolved like any MODEL argument.

    ``hf`` with ``pretrained=DIR`` (a local folder) is that folder's identity; a served model
    (``local-completions`` with ``model=NAME``) is ``<lm-eval model>/<NAME>``, which a ledger
    record names through its ``weights_ref`` (or give ``--model-id``). A ``model_id`` given
    for a folder is checked against the ledger as ``eval run`` checks it.
    """
    config = results.get("config") or {}
    kind = str(config.get("model") or results.get("model_name") or "unknown")
    args = config.get("model_args") or {}
    if isinstance(args, str):
        args = dict(item.split("=", 1) for item in args.split(",") if "=" in item)
    name = args.get("pretrained") or args.get("model") if isinstance(args, dict) else None
    if not name:
        return model_id or str(config.get("model_name") or kind)
    folder = Path(str(name)).expanduser()
    if folder.is_dir():
        return resolve_model_identity(str(folder.resolve()), model_id=model_id, records=records).id
    return model_id or resolve_model_identity(f"{kind}/{name}", records=records).id


def evidence_from_log(
    path: Path,
    *,
    model_id: str | None = None,
    evaluation_id: str | None = None,
    records: Sequence[ModelRecord] = (),
) -> list[Evidence]:
    """Evidence from a log file: an Inspect ``.eval``/``.json`` log or lm-eval results JSON."""
    return read_log_evidence(path, model_id=model_id, evaluation_id=evaluation_id, records=records)[
        1
    ]


def read_log_evidence(
    path: Path,
    *,
    model_id: str | None = None,
    evaluation_id: str | None = None,
    records: Sequence[ModelRecord] = (),
) -> tuple[list[MetricEstimate], list[Evidence]]:
    """Metrics and Evidence from a log file (see :func:`evidence_from_log`)."""
    src = str(path)
    if path.suffix == ".json":
        data = read_limited(path, MAX_JSON_LOG_BYTES, what="log file")
        sha = sha256_hex(data)
        doc = loads_json(
            decode_utf8(data, src),
            src,
            fix="give the log or results file as written",
            allow_nan=True,
            unique_keys=True,
        )
        if isinstance(doc, dict) and "results" in doc and "eval" not in doc:
            return evidence_from_lm_eval_results(
                doc,
                sha,
                model_id=model_id,
                evaluation_id=evaluation_id,
                source=src,
                records=records,
            )
    elif path.suffix == ".eval":
        size = regular_file_size(path, what="log file")
        if size > MAX_LOG_BYTES:
            raise UserError(
                Problem(
                    f"is {size_text(size)}; a log file may be at most {size_text(MAX_LOG_BYTES)} "
                    "(is this the right file?)",
                    source=src,
                )
            )
        sha = file_sha256(path)
    else:
        raise UserError(
            Problem("expected an Inspect .eval/.json log or an lm-eval results .json", source=src)
        )
    from inspect_ai.log import read_eval_log, read_eval_log_sample_summaries

    try:
        log = read_eval_log(str(path), header_only=True)
        summaries = read_eval_log_sample_summaries(str(path))
    except Exception as exc:
        raise UserError(
            Problem(f"cannot read as an Inspect log ({type(exc).__name__})", source=str(path))
        ) from None
    return evidence_from_eval_log(
        log,
        sha,
        model_id=model_id,
        evaluation_id=evaluation_id,
        summaries=summaries,
        records=records,
    )


def find_workspace(path: Path | None) -> Any | None:
    """The workspace ledger, or None when there is none (or the ledger room is not installed)."""
    try:
        from safescale.ledger import Workspace  # type: ignore[attr-defined]
    except ImportError:
        return None
    return Workspace.find(path)


@dataclass(frozen=True)
class RecordedEvidence:
    """What :func:`record_evidence` did."""

    new: tuple[str, ...]
    """Ids of the evidence appended now."""
    known: tuple[str, ...]
    """Ids already in the ledger (the same results recorded before), not appended again."""


def record_evidence(
    ws: Any, evidence: Iterable[Evidence], artifacts: Iterable[Path]
) -> RecordedEvidence:
    """Store ``artifacts`` (the log) in the workspace and append the ``evidence`` not yet there.

    Evidence ids are content-derived (:func:`evidence_id`), so a record whose id the ledger
    holds is the same result recorded before.
    """
    records = list(evidence)
    check_one_weights(ws.evidence(), records)
    for path in artifacts:
        ws.add_artifact(path)
    have = {e.record_id for e in ws.entries(kind="evidence")}
    fresh = [e for e in records if e.id not in have]
    ws.append_many(fresh)  # one signed transaction for the whole run
    return RecordedEvidence(
        tuple(e.id for e in fresh), tuple(e.id for e in records if e.id in have)
    )
