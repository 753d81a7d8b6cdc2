"""``safescale eval run|import`` and ``safescale serve-model``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from safescale._errors import Problem, UserError
from safescale._input import check_optional_id, quote
from safescale.cli._common import console, print_json, workspace_path

app = typer.Typer(
    help="Evaluations through Inspect AI: run tasks, import logs.", no_args_is_help=True
)


def _model_args(items: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(Problem(f"{quote(item)} is not KEY=VALUE", field="-M"))
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

    check_optional_id(model_id, "--model-id", what="model id")
    check_optional_id(evaluation_id, "--evaluation-id", what="evaluation id")
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
) -> None:
    """Serve a local checkpoint with OpenAI-compatible /v1/completions and /v1/chat/completions."""
    from safescale.evals import LocalModelConfig, ModelServer, load_local_model

    lm = load_local_model(LocalModelConfig(path=model_dir, dtype=dtype, device=device))
    server = ModelServer(lm, name=model_dir.name, host=host, port=port)
    console.print(f"serving {model_dir} at {server.base_url} (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
