"""``safescale eval run|import`` and ``safescale serve-model``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from safescale._errors import Problem, UserError
from safescale._input import check_optional_id, quote
from safescale.cli._common import (
    check_output_folder,
    console,
    err_console,
    key_values,
    print_json,
    workspace_path,
)

if TYPE_CHECKING:
    from safescale.evals import RecordedEvidence

app = typer.Typer(
    help="Evaluations through Inspect AI: run tasks, import logs.", no_args_is_help=True
)


def _model_args(items: list[str] | None) -> dict[str, Any]:
    """``-M key=value``; the sizes a local model reads (``batch_size``, ``max_length``) must be
    whole numbers in range, checked here before any model is loaded."""
    from safescale._input import check_count
    from safescale.evals import MAX_BATCH, MAX_CONTEXT

    out = key_values(items, "-M")
    for key, lo, hi in (("batch_size", 1, MAX_BATCH), ("max_length", 2, MAX_CONTEXT)):
        if key in out:
            value = out[key].strip()
            number = int(value) if value.isdigit() and len(value) < 20 else value
            check_count(number, f"-M {key}", lo=lo, hi=hi)
    return out


#: A task argument's YAML may expand to at most this many values (a list of a few thousand).
MAX_TASK_ARG_NODES = 10_000


def _task_args(items: list[str] | None) -> dict[str, Any]:
    """``-T key=value``: values read as YAML (numbers, booleans, lists), as Inspect reads them,
    within bounds (length, no control characters, at most ``MAX_TASK_ARG_NODES`` values once
    aliases are expanded); a value that is not YAML at all stays a string, as in Inspect."""
    from safescale._config import YamlSyntaxError, check_yaml_strings, parse_yaml
    from safescale._input import check_text

    out = {}
    for key, value in key_values(items, "-T").items():
        field = f"-T {key}"
        check_text(value, field, allow_empty=True)
        try:
            doc = parse_yaml(value, field, what="task argument", max_nodes=MAX_TASK_ARG_NODES)
        except YamlSyntaxError:
            out[key] = value
            continue
        check_yaml_strings(doc, field)
        out[key] = doc.data
    return out


def _metrics_json(metrics: Any) -> list[dict[str, Any]]:
    return [
        {
            "name": m.name,
            "value": m.value,
            "n": m.n,
            "interval": {"lo": m.lo, "hi": m.hi, "confidence": m.confidence, "method": m.method},
        }
        for m in metrics
    ]


def _report(
    metrics: Any,
    evidence: Any,
    log: Path,
    recorded: RecordedEvidence | None,
    task: str,
    model: str,
) -> None:
    console.print(f"[bold]{task}[/] on {model}", highlight=False)
    for m in metrics:
        ci = (
            f"[{m.lo:.3f}, {m.hi:.3f}]"
            if m.lo is not None and m.hi is not None
            else "(no interval)"
        )
        console.print(
            f"{m.name:<12} {m.value:.4f}  95% CI {ci} ({m.method}), n={m.n}", markup=False
        )
    console.print(f"log: {log}", markup=False)
    if recorded is not None:
        known = (
            f" ({len(recorded.known)} already recorded, not added again)" if recorded.known else ""
        )
        console.print(f"ledger: {len(recorded.new)} evidence records{known}", markup=False)


def _as_json(
    metrics: Any, evidence: Any, log: Path, recorded: RecordedEvidence | None, task: str, model: str
) -> dict[str, Any]:
    return {
        "task": task,
        "model": model,
        "log": str(log),
        "metrics": _metrics_json(metrics),
        "evidence": [e.id for e in evidence],
        "ledger": recorded is not None,
        "already_recorded": list(recorded.known) if recorded is not None else [],
    }


def _record(ws: Any, evidence: Any, files: list[Path]) -> RecordedEvidence | None:
    from safescale.evals import record_evidence

    if ws is None:
        return None
    return record_evidence(ws, evidence, files)


def _workspace() -> Any:
    from safescale.evals import find_workspace

    return find_workspace(workspace_path())


@app.command("run")
def run(
    task: Annotated[
        list[str],
        typer.Argument(
            help="Suite name (lab/hazard_proxy), JSONL file or Inspect .py task file (every "
            "@task of it; FILE@NAME for one). Several may be given."
        ),
    ],
    model: Annotated[
        str, typer.Option("--model", "-m", help="Local HF model folder or an Inspect model string.")
    ],
    model_id: Annotated[
        str | None,
        typer.Option(
            "--model-id",
            help="The model's id in evidence (default: the ledger's record of these weights, "
            "else the folder name and weights hash; for an endpoint, the model it serves).",
        ),
    ] = None,
    task_arg: Annotated[
        list[str] | None, typer.Option("-T", help="Task argument KEY=VALUE (Inspect task files).")
    ] = None,
    epochs: Annotated[
        int | None, typer.Option("--epochs", help="Run each sample N times (score: the mean).")
    ] = None,
    max_tokens: Annotated[
        int | None, typer.Option("--max-tokens", help="Maximum tokens to generate.")
    ] = None,
    temperature: Annotated[
        float | None, typer.Option("--temperature", help="Sampling temperature (0: greedy).")
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", help="Evaluate only the first N samples.")
    ] = None,
    scorer: Annotated[
        str | None,
        typer.Option(
            "--scorer",
            help="Scorer of a generative JSONL task (match, includes, exact, opening, "
            "conditional, model_graded, or one an installed package registers).",
        ),
    ] = None,
    log_dir: Annotated[
        Path | None, typer.Option("--log-dir", help="Folder for the Inspect log (default ./logs).")
    ] = None,
    data: Annotated[
        Path | None, typer.Option("--data", help="Lab corpus folder for named suites.")
    ] = None,
    tokenizer: Annotated[
        str | None, typer.Option("--tokenizer", help="Tokenizer folder (log-likelihood over HTTP).")
    ] = None,
    model_arg: Annotated[
        list[str] | None,
        typer.Option(
            "-M", help="Model argument KEY=VALUE (dtype, device, batch_size, max_length)."
        ),
    ] = None,
    runner: Annotated[
        str,
        typer.Option(
            "--runner",
            help="auto: batched where it applies; batched: a multiple-choice task on a local "
            "folder scored in one pass, logged as an Inspect log; inspect: every sample through "
            "Inspect's solver and scorer with its full transcript.",
        ),
    ] = "auto",
    log_format: Annotated[
        str,
        typer.Option(
            "--log-format", help="Inspect log format: eval (compressed) or json (larger, faster)."
        ),
    ] = "eval",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print metrics, intervals, n and the log path as JSON.")
    ] = False,
) -> None:
    """Evaluate MODEL on each TASK; record the evidence in the workspace ledger, if any."""
    from safescale.evals import RunOptions, run_evals

    if runner not in ("auto", "batched", "inspect"):
        raise UserError(
            Problem(
                f"unknown runner {quote(runner)}; use auto, batched or inspect", field="--runner"
            )
        )
    if log_format not in ("eval", "json"):
        raise UserError(
            Problem(
                f"unknown log format {quote(log_format)}; use eval or json", field="--log-format"
            )
        )
    if log_dir is not None:
        check_output_folder(log_dir, "--log-dir")
    options = RunOptions(
        task_args=_task_args(task_arg),
        epochs=epochs,
        max_tokens=max_tokens,
        temperature=temperature,
    )
    ws = _workspace()
    results = run_evals(
        task,
        model,
        limit=limit,
        log_dir=log_dir,
        data_dir=data,
        model_args=_model_args(model_arg),
        tokenizer=tokenizer,
        scorer=scorer,
        model_id=model_id,
        display="none" if as_json else "rich",
        runner=runner,  # type: ignore[arg-type]  # checked above
        log_format=log_format,  # type: ignore[arg-type]  # checked above
        options=options,
        records=ws.models() if ws is not None else (),
    )
    out = []
    for result in results:
        recorded = _record(ws, result.evidence, list(result.files))
        if as_json:
            out.append(
                _as_json(
                    result.metrics,
                    result.evidence,
                    result.log_path,
                    recorded,
                    result.task,
                    result.model,
                )
            )
        else:
            _report(
                result.metrics,
                result.evidence,
                result.log_path,
                recorded,
                result.task,
                result.model,
            )
    if as_json:
        # One task: its object, as before; several: a list, one object a task.
        print_json(out[0] if len(out) == 1 else out)


@app.command("import")
def import_(
    path: Annotated[Path, typer.Argument(help="Inspect .eval/.json log, or lm-eval results JSON.")],
    model_id: Annotated[
        str | None,
        typer.Option(
            "--model-id",
            help="Model id for the evidence (the model an endpoint served, for example).",
        ),
    ] = None,
    evaluation_id: Annotated[
        str | None, typer.Option("--evaluation-id", help="Policy evaluation id it feeds.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """Turn an existing evaluation log into evidence (a re-import is recognised, not repeated)."""
    from safescale.evals import read_log_evidence

    check_optional_id(model_id, "--model-id", what="model id")
    check_optional_id(evaluation_id, "--evaluation-id", what="evaluation id")
    ws = _workspace()
    metrics, evidence = read_log_evidence(
        path,
        model_id=model_id,
        evaluation_id=evaluation_id,
        records=ws.models() if ws is not None else (),
    )
    recorded = _record(ws, evidence, [path])
    model = evidence[0].model
    if as_json:
        print_json(_as_json(metrics, evidence, path, recorded, evidence[0].subject, model))
    else:
        _report(metrics, evidence, path, recorded, evidence[0].subject, model)


def serve_model(
    model_dir: Annotated[Path, typer.Argument(help="Local Hugging Face model folder.")],
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    host: Annotated[
        str, typer.Option("--host", help="Address to bind (loopback by default).")
    ] = "127.0.0.1",
    dtype: Annotated[
        str, typer.Option("--dtype", help="float32, bfloat16, float16 or auto.")
    ] = "float32",
    device: Annotated[str, typer.Option("--device", help="torch device.")] = "cpu",
    max_length: Annotated[
        int | None,
        typer.Option(
            "--max-length",
            help="Context limit in tokens (default: the model's); longer requests get HTTP 400.",
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Most sequences per forward pass.")
    ] = 32,
    name: Annotated[
        str | None,
        typer.Option("--name", help="Model name clients send (default: the folder's name)."),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="SAFESCALE_API_KEY",
            help="Require 'Authorization: Bearer KEY' on every request.",
        ),
    ] = None,
) -> None:
    """Serve a local checkpoint with an OpenAI-compatible API (/v1/completions, /v1/chat/...)."""
    from safescale.evals import LocalModelConfig, ModelServer, load_local_model

    if port < 0 or port > 65535:
        raise UserError(Problem(f"{port} is not a TCP port (0-65535)", field="--port"))
    config = LocalModelConfig(
        path=model_dir,
        dtype=dtype,
        device=device,
        batch_size=batch_size,
        max_length=max_length,
        fields=("--batch-size", "--max-length"),
    )
    sock = ModelServer.bind(host, port)  # a busy port fails before the weights are read
    try:
        lm = load_local_model(config)
    except BaseException:
        sock.close()
        raise
    trained = getattr(lm.model.config, "max_position_embeddings", None)
    if max_length is not None and trained is not None and max_length > int(trained):
        err_console.print(
            f"warning: --max-length {max_length} is over the {trained} positions the model was "
            "built for; scores past them are not to be trusted",
            style="yellow",
        )
    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        err_console.print(
            f"warning: serving on {host} without --api-key: anyone who can reach it can use "
            "the model",
            style="yellow",
        )
    server = ModelServer(
        lm, name=name or model_dir.name, api_key=api_key, batch_size=batch_size, sock=sock
    )
    key = ", API key required" if api_key else ""
    console.print(
        f"serving {model_dir} (weights sha256 {server.weights_sha256[:12]}...) as "
        f"{server.name!r} at {server.base_url} "
        f"(context {lm.max_length} tokens{key}; Ctrl-C to stop)",
        soft_wrap=True,
    )
    server.serve_forever()
