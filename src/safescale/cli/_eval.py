"""``safescale eval run|import`` and ``safescale serve-model``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from safescale._errors import Problem, UserError
from safescale.cli._common import console, err_console, print_json, workspace_path

app = typer.Typer(
    help="Evaluations through Inspect AI: run tasks, import logs.", no_args_is_help=True
)


def _model_args(items: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(Problem(f"{item!r} is not KEY=VALUE", field="-M"))
        out[key] = value
    return out


def _report(
    metrics: Any, evidence: Any, log: Path, as_json: bool, recorded: list[str] | None, task: str
) -> None:
    if as_json:
        print_json(
            {
                "task": task,
                "log": str(log),
                "metrics": [
                    {
                        "name": m.name,
                        "value": m.value,
                        "n": m.n,
                        "interval": {
                            "lo": m.lo,
                            "hi": m.hi,
                            "confidence": m.confidence,
                            "method": m.method,
                        },
                    }
                    for m in metrics
                ],
                "evidence": [e.id for e in evidence],
                "ledger": recorded is not None,
            }
        )
        return
    for m in metrics:
        ci = (
            f"[{m.lo:.3f}, {m.hi:.3f}]"
            if m.lo is not None and m.hi is not None
            else "(no interval)"
        )
        console.print(f"{m.name:<12} {m.value:.4f}  95% CI {ci} ({m.method}), n={m.n}")
    console.print(f"log: {log}")
    if recorded is not None:
        console.print(f"ledger: {len(recorded)} evidence records")


def _record(evidence: Any, files: list[Path]) -> list[str] | None:
    from safescale.evals import find_workspace, record_evidence

    ws = find_workspace(workspace_path())
    if ws is None:
        return None
    return record_evidence(ws, evidence, files)


@app.command("run")
def run(
    task: Annotated[
        str,
        typer.Argument(help="Suite name (lab/hazard_proxy), JSONL file or Inspect .py task file."),
    ],
    model: Annotated[
        str, typer.Option("--model", "-m", help="Local HF model folder or an Inspect model string.")
    ],
    limit: Annotated[
        int | None, typer.Option("--limit", help="Evaluate only the first N samples.")
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
    """Evaluate MODEL on TASK; record the evidence in the workspace ledger when there is one."""
    from safescale.evals import run_suite

    if runner not in ("auto", "batched", "inspect"):
        raise UserError(
            Problem(f"unknown runner {runner!r}; use auto, batched or inspect", field="--runner")
        )
    if log_format not in ("eval", "json"):
        raise UserError(
            Problem(f"unknown log format {log_format!r}; use eval or json", field="--log-format")
        )

    result = run_suite(
        task,
        model,
        limit=limit,
        log_dir=log_dir,
        data_dir=data,
        model_args=_model_args(model_arg),
        tokenizer=tokenizer,
        display="none" if as_json else "rich",
        runner=runner,  # type: ignore[arg-type]  # checked above
        log_format=log_format,  # type: ignore[arg-type]  # checked above
    )
    recorded = _record(result.evidence, list(result.files))
    _report(result.metrics, result.evidence, result.log_path, as_json, recorded, result.task)


@app.command("import")
def import_(
    path: Annotated[Path, typer.Argument(help="Inspect .eval/.json log, or lm-eval results JSON.")],
    model_id: Annotated[
        str | None, typer.Option("--model-id", help="Model id for the evidence.")
    ] = None,
    evaluation_id: Annotated[
        str | None, typer.Option("--evaluation-id", help="Policy evaluation id it feeds.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """Turn an existing evaluation log into evidence."""
    from safescale.evals import read_log_evidence

    metrics, evidence = read_log_evidence(path, model_id=model_id, evaluation_id=evaluation_id)
    recorded = _record(evidence, [path])
    _report(metrics, evidence, path, as_json, recorded, evidence[0].subject)


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
        path=model_dir, dtype=dtype, device=device, batch_size=batch_size, max_length=max_length
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
        f"serving {model_dir} as {server.name!r} at {server.base_url} "
        f"(context {lm.max_length} tokens{key}; Ctrl-C to stop)",
        soft_wrap=True,
    )
    server.serve_forever()
