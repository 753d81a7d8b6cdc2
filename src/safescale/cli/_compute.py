"""``safescale compute add|show|triggers``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table

from safescale._errors import Problem, UserError
from safescale._input import (
    check_id,
    check_number,
    check_optional_id,
    check_optional_number,
    check_text,
    quote,
)
from safescale._io import weights_sha256
from safescale.cli._common import console, print_json, print_table, workspace_path
from safescale.compute import (
    HARDWARE_REL_UNCERTAINTY,
    evaluate_triggers,
    hardware_flops,
    lineage_summary,
    training_flops,
)
from safescale.ledger import Workspace
from safescale.policy import ModelRecord, load_policy

app = typer.Typer(help="Training compute: record runs, show lineages, fire triggers.",
                  no_args_is_help=True)  # fmt: skip

MAX_FLOP = 1e35
"""Largest FLOP figure accepted (about a billion times the largest training run of 2025)."""
MAX_COUNT = 1e20
"""Largest parameter, token or accelerator-hour count accepted."""
MAX_REL_UNCERTAINTY = 10.0
"""A one-sigma relative uncertainty above 1000% says nothing; it is a typo."""
MAX_MULTIPLIER = 1e6
"""Largest algorithmic-efficiency multiplier accepted."""

Stage = Literal["pretraining", "finetuning", "rl", "other"]


MIN_FLOP = 1.0
"""Smallest FLOP figure accepted, given or derived: less than one operation is no training run
(and a subnormal figure such as 6e-320 turns ratios into infinities downstream)."""
HARDWARE_FLAGS = ("--gpu-hours", "--peak-flops", "--utilization")
MAX_WEIGHTS_LEN = 4096
"""Longest --weights value (a path: Linux's PATH_MAX)."""


def _flops(
    flops: float | None,
    params: float | None,
    tokens: float | None,
    method: str | None,
    hardware: tuple[float | None, float | None, float | None],
    rel_uncertainty: float | None,
) -> tuple[float, str, float]:
    """The training FLOP, how it was obtained and its relative uncertainty, from exactly one of
    three ways of stating it: --flops; --params with --tokens (6ND); the hardware flags."""
    ways = {
        "--flops": ["--flops"] if flops is not None else [],
        "--params": [f for f, v in (("--params", params), ("--tokens", tokens)) if v is not None],
        "--gpu-hours": [f for f, v in zip(HARDWARE_FLAGS, hardware, strict=True) if v is not None],
    }
    given = [flags for flags in ways.values() if flags]
    if len(given) > 1:
        first, second = given[0][0], given[1][0]
        raise UserError(
            Problem(f"give one way to state the FLOP, not both {first} and {second}: --flops C, "
                    "or --params N with --tokens D, or --gpu-hours, --peak-flops and "
                    "--utilization", field=first)
        )  # fmt: skip
    gpu_hours, peak, util = hardware
    if method == "count" and not ways["--params"]:
        raise UserError(
            Problem("--method count is 6ND: give --params N and --tokens D (or drop --method "
                    "to record reported --flops)", field="--method")
        )  # fmt: skip
    if method == "hardware" or (method is None and ways["--gpu-hours"]):
        if None in hardware:
            raise UserError(Problem("--method hardware needs --gpu-hours, --peak-flops and "
                                    "--utilization", field="--gpu-hours"))  # fmt: skip
        try:
            est = hardware_flops(gpu_hours, peak, util,  # type: ignore[arg-type]
                                 rel_uncertainty if rel_uncertainty is not None
                                 else HARDWARE_REL_UNCERTAINTY)  # fmt: skip
        except ValueError as exc:
            raise UserError(
                Problem(f"{exc}; fix the hardware numbers", field="--utilization")
            ) from None
        _check_derived(est.flops, "--gpu-hours x 3600 x --peak-flops x --utilization")
        return est.flops, "hardware", est.rel_uncertainty
    if flops is not None:
        return flops, "reported", rel_uncertainty or 0.0
    if params is None or tokens is None:
        raise UserError(Problem("give --flops C, or --params N with --tokens D, or the hardware "
                                "options (--gpu-hours, --peak-flops, --utilization)",
                                field="--flops"))  # fmt: skip
    value = training_flops(params, tokens)
    _check_derived(value, "6 x --params x --tokens")
    return value, "count", rel_uncertainty or 0.0


def _check_derived(value: float, how: str) -> None:
    """A FLOP figure computed from other flags: in the range --flops itself must be in."""
    if not MIN_FLOP <= value <= MAX_FLOP:
        raise UserError(
            Problem(f"{how} = {value:.3g} FLOP is out of range; the training FLOP must be in "
                    f"[{MIN_FLOP:g}, {MAX_FLOP:g}] (check the units)", field="--flops")
        )  # fmt: skip


def _weights(weights: str | None, records: list[ModelRecord]) -> tuple[str | None, str | None]:
    """``--weights``: (reference, sha256); a folder is hashed and must not be on record yet."""
    if weights is None:
        return None, None
    folder = Path(weights).expanduser()
    try:
        is_folder = folder.is_dir()
    except OSError:  # a name too long for the file system: not a folder
        is_folder = False
    if not is_folder:
        if "/" not in weights:
            raise UserError(Problem("not a weights folder nor an Inspect model string "
                                    "(provider/model)", field="--weights"))  # fmt: skip
        check_id(weights, "--weights", what="Inspect model string (or weights folder)")
        return weights, None
    try:
        sha = weights_sha256(folder)
    except FileNotFoundError:
        raise UserError(Problem("no weight files (*.safetensors, *.bin) in the folder",
                                source=str(folder), field="--weights")) from None  # fmt: skip
    except OSError as exc:
        raise UserError(Problem(f"cannot read the weights ({exc.strerror or exc})",
                                source=str(folder), field="--weights")) from None  # fmt: skip
    same = next((r.id for r in records if r.weights_sha256 == sha), None)
    if same is not None:
        raise UserError(Problem(f"these weights are already recorded as {same!r}",
                                field="--weights"))  # fmt: skip
    return str(folder.resolve()), sha


@app.command()
def add(
    model: Annotated[str, typer.Option("--model", help="Model id.")],
    flops: Annotated[float | None, typer.Option(help="Training FLOP of this run.")] = None,
    params: Annotated[float | None, typer.Option(help="Non-embedding parameters N.")] = None,
    tokens: Annotated[float | None, typer.Option(help="Training tokens D.")] = None,
    method: Annotated[str | None, typer.Option(help="count or hardware.")] = None,
    gpu_hours: Annotated[float | None, typer.Option(help="Accelerator-hours.")] = None,
    peak_flops: Annotated[float | None, typer.Option(help="Peak FLOP/s per device.")] = None,
    utilization: Annotated[float | None, typer.Option(help="Achieved fraction of peak.")] = None,
    rel_uncertainty: Annotated[
        float | None, typer.Option(help="One-sigma relative uncertainty of the FLOP.")
    ] = None,
    parent: Annotated[str | None, typer.Option(help="The model this run trained from.")] = None,
    stage: Annotated[Stage | None, typer.Option(help="pretraining, finetuning, rl, other.")] = None,
    lineage: Annotated[str | None, typer.Option(help="Model family (default: parent's).")] = None,
    effective_multiplier: Annotated[
        float, typer.Option(help="Algorithmic-efficiency multiplier vs the baseline.")
    ] = 1.0,
    assessed: Annotated[bool, typer.Option(help="It was comprehensively assessed.")] = False,
    weights: Annotated[
        str | None,
        typer.Option(
            help="Its weights: a local folder (hashed, so evaluations of the same weights find "
            "this record) or the Inspect model string of an endpoint serving it."
        ),
    ] = None,
) -> None:
    """Record a training run (FLOP, lineage, effective compute) as a ModelRecord entry."""
    check_id(model, "--model", what="model id")
    check_optional_id(parent, "--parent", what="model id")
    check_optional_id(lineage, "--lineage", what="lineage id")
    check_optional_number(flops, "--flops", lo=MIN_FLOP, hi=MAX_FLOP)
    for flag, value, top in (
        ("--params", params, MAX_COUNT),
        ("--tokens", tokens, MAX_COUNT),
        ("--gpu-hours", gpu_hours, MAX_COUNT),
        ("--peak-flops", peak_flops, MAX_FLOP),
    ):
        check_optional_number(value, flag, lo=0, hi=top, lo_open=True)
    check_optional_number(utilization, "--utilization", lo=0, hi=1, lo_open=True)
    check_optional_number(rel_uncertainty, "--rel-uncertainty", lo=0, hi=MAX_REL_UNCERTAINTY)
    check_number(effective_multiplier, "--effective-multiplier", lo=0, hi=MAX_MULTIPLIER,
                 lo_open=True)  # fmt: skip
    if weights is not None:
        check_text(weights, "--weights", max_len=MAX_WEIGHTS_LEN)
    if method not in (None, "count", "hardware"):
        raise UserError(Problem(f"unknown method {quote(method)}; use count or hardware",
                                field="--method"))  # fmt: skip
    if effective_multiplier <= 0:
        raise UserError(Problem("must be positive", field="--effective-multiplier"))
    value, how, sigma = _flops(flops, params, tokens, method,
                               (gpu_hours, peak_flops, utilization), rel_uncertainty)  # fmt: skip
    if not value > 0:
        raise UserError(Problem("training FLOP must be positive", field="--flops"))
    with Workspace.open(workspace_path()) as ws:
        # Whether the id is new (and the parent known) is checked inside the write
        # transaction, so concurrent `compute add` of one id record it once.
        ref, sha = _weights(weights, ws.models())
        record = ModelRecord(
            id=model, parent=parent,
            stage=stage or ("finetuning" if parent else "pretraining"),
            params=params, tokens=tokens, flops=value, flops_method=how,  # type: ignore[arg-type]
            flops_rel_uncertainty=sigma, effective_multiplier=effective_multiplier,
            assessed=assessed, extra={"lineage": lineage} if lineage else {},
            weights_ref=ref, weights_sha256=sha,
        )  # fmt: skip
        entry = ws.append_new_model(record)
        summary = {s.model: s for s in lineage_summary(ws.models())}[model]
    console.print(
        f"recorded {model}: {value:.3g} FLOP ({how}, ±{sigma:.0%}), cumulative "
        f"{summary.cumulative_flops:.3g}, effective {summary.effective_compute:.3g} "
        f"[entry {entry.seq}]",
        markup=False,
    )


@app.command()
def show(json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Every model with its FLOP, cumulative FLOP along its lineage and effective compute."""
    with Workspace.open(workspace_path()) as ws:
        summaries = lineage_summary(ws.models(), ws.determinations())
    if json_out:
        print_json([vars(s) for s in summaries])
        return
    table = Table("model", "lineage", "stage", "parent", "FLOP", "cumulative", "±1σ",
                  "multiplier", "effective", "assessed")  # fmt: skip
    for s in summaries:
        table.add_row(s.model, s.lineage, s.stage, s.parent or "", f"{s.flops:.3g}",
                      f"{s.cumulative_flops:.3g}",
                      f"{s.cumulative_sigma / s.cumulative_flops:.0%}",
                      f"{s.effective_multiplier:g}", f"{s.effective_compute:.3g}",
                      f"{s.assessed_at:%Y-%m-%d}" if s.assessed_at else "")  # fmt: skip
    print_table(table)


@app.command()
def triggers(
    policy: Annotated[
        str | None, typer.Option(help="Policy id or file (default: the workspace's).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    fired_only: Annotated[bool, typer.Option("--fired", help="Only rules that fired.")] = False,
) -> None:
    """Evaluate the policy's assessment triggers, legal compute lines and pause rule."""
    with Workspace.open(workspace_path()) as ws:
        chosen = load_policy(policy or ws.config.default_policy)
        models, dets = ws.models(), ws.determinations()
    results = evaluate_triggers(chosen, models, dets, datetime.now(UTC))
    if fired_only:
        results = [r for r in results if r.fired]
    if json_out:
        print_json([r.to_dict() for r in results])
        return
    table = Table("model", "trigger", "status", "value", "rule", "requires", "why")
    for r in results:
        style = "bold red" if r.fired else ("dim" if r.status == "not_evaluated" else "")
        value = "" if r.value is None else f"{r.value:.3g}"
        table.add_row(r.model, r.trigger, r.status, value, r.rule,
                      r.requires if r.fired else "", "; ".join(r.reasons), style=style)  # fmt: skip
    print_table(table)
