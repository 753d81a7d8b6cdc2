"""``safescale assess`` and ``safescale assess sign``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from safescale._errors import Problem, UserError
from safescale._input import check_count, check_id, check_seed, check_text
from safescale.assess import Assessment, SuiteEvaluator, assess
from safescale.cli._common import (
    console,
    err_console,
    key_values,
    print_json,
    print_table,
    workspace_path,
)
from safescale.ledger import Workspace
from safescale.policy import Determination, Policy, SignOffRecord, load_policy, sha256_hex, utcnow
from safescale.report import latest_determination, policy_for

MAX_LIMIT = 10_000_000
"""Most samples --limit may ask for."""

app = typer.Typer(
    help="Assess models under a policy: triggers, evaluations, forecasts, determination.",
    invoke_without_command=True,
)

STATUS_STYLE = {
    "below": "green",
    "cannot_rule_out": "yellow",
    "no_evidence": "yellow",
    "crossed": "red",
}


def _policy_ref(ws: Workspace, policy: str | None) -> str:
    return policy or ws.config.default_policy


@app.callback()
def assess_cmd(
    ctx: typer.Context,
    policy: Annotated[
        str | None, typer.Option(help="Policy id or file (default: the workspace's).")
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(help="Model to assess (repeatable; default: those whose triggers fired)."),
    ] = None,
    run_evals: Annotated[
        bool,
        typer.Option("--run-evals/--no-run-evals", help="Run missing or stale evaluations."),
    ] = True,
    data: Annotated[Path | None, typer.Option(help="Corpus folder for the lab's suites.")] = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate only the first N samples.")] = None,
    tokenizer: Annotated[
        str | None,
        typer.Option(help="Tokenizer folder of a model behind an endpoint (log-likelihood)."),
    ] = None,
    model_arg: Annotated[
        list[str] | None,
        typer.Option(
            "-M", help="Provider argument KEY=VALUE for a model behind an endpoint (base_url)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for the forecast bootstrap.")] = 0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the determinations as JSON.")
    ] = False,
) -> None:
    """Assess models: fire triggers, run bound evaluations, forecast, determine, record."""
    if ctx.invoked_subcommand is not None:
        return
    for m in model or []:
        check_id(m, "--model", what="model id")
    if limit is not None:
        check_count(limit, "--limit", lo=1, hi=MAX_LIMIT)
    check_seed(seed)
    with Workspace.open(workspace_path()) as ws:
        pol = load_policy(_policy_ref(ws, policy))
        evaluator = (
            SuiteEvaluator(
                data_dir=data,
                limit=limit,
                tokenizer=tokenizer,
                model_args=key_values(model_arg, "-M"),
            )
            if run_evals
            else None
        )
        with console.status("assessing...") as status:
            results = assess(
                ws,
                pol,
                models=model,
                evaluator=evaluator,
                seed=seed,
                on_progress=lambda msg: status.update(msg),
            )
    if as_json:
        print_json([a.determination.model_dump(mode="json") for a in results])
        return
    if not results:
        console.print(
            "No model needs an assessment: no trigger has fired. "
            "Name one with --model to assess it anyway."
        )
        return
    for a in results:
        show_assessment(pol, a)


def show_assessment(policy: Policy, a: Assessment) -> None:
    """Print one assessment as a table and the outcome with its reasons."""
    det = a.determination
    table = Table(title=f"{det.model} under {policy.id} {policy.version}")
    for col in (
        "threshold",
        "metric",
        "95% interval",
        "n",
        "lines (rule-out/alert/threshold)",
        "status",
        f"forecast at {policy.planned_scale_up:g}x",
    ):
        table.add_column(col)
    for st in det.thresholds:
        t = policy.threshold(st.id)
        b = t.evaluations[0] if t.evaluations else None
        lines = (
            "-"
            if b is None
            else (
                f"{b.rule_out:g} / {'-' if b.alert is None else f'{b.alert:g}'} / "
                f"{'-' if b.threshold is None else f'{b.threshold:g}'}"
            )
        )
        fc = next((f for f in a.forecasts if b is not None and f.evaluation == b.evaluation), None)
        status = st.status.replace("_", " ") + (" + ALERT" if st.alert else "")
        table.add_row(
            st.id,
            "-" if st.metric is None else f"{st.metric:.3f}",
            "-" if st.interval is None else f"[{st.interval.lo:.3f}, {st.interval.hi:.3f}]",
            "-" if st.n is None else str(st.n),
            lines,
            f"[{STATUS_STYLE[st.status]}]{status}[/]",
            "-"
            if fc is None
            else (
                f"{fc.value:.3f} [{fc.interval.lo:.3f}, {fc.interval.hi:.3f}]"
                + (
                    f", P(>alert)={fc.prob_over_alert:.2f}"
                    if fc.prob_over_alert is not None
                    else ""
                )
            ),
        )
    print_table(table)
    style = "green" if det.outcome == "continue" else "red"
    console.print(
        f"outcome: [bold {style}]{det.outcome.replace('_', ' ')}[/] (determination {det.id})"
    )
    for reason in det.reasons:
        console.print(f"  - {reason}", markup=False)
    # Why evidence was not found is the fix the user needs (a near-miss metric or id).
    for st in det.thresholds:
        if st.status == "no_evidence":
            for reason in st.reasons:
                console.print(f"  - {st.id}: {reason}", markup=False)


@app.command("sign")
def sign(
    determination: Annotated[str, typer.Argument(help="Determination id (or 'latest').")],
    role: Annotated[str, typer.Option(help="The governance role signing (e.g. RSO).")],
    dissent: Annotated[
        str | None, typer.Option(help="Record a dissent with this text instead of an approval.")
    ] = None,
    note: Annotated[str, typer.Option(help="A note with an approval.")] = "",
    identity: Annotated[
        str | None, typer.Option(help="Who signs (default: the workspace author).")
    ] = None,
) -> None:
    """Record a role's approval of (or dissent from) a determination in the ledger."""
    if determination != "latest":
        check_id(determination, "DETERMINATION", what="determination id")
    check_id(role, "--role", what="role id")
    check_text(note, "--note", allow_empty=True)
    if dissent is not None:
        check_text(dissent, "--dissent")
        if note:  # one text is recorded: the note was dropped without a word
            raise UserError(
                Problem("goes with an approval; a dissent's text is --dissent's: give one of "
                        "the two", field="--note")
            )  # fmt: skip
    if identity is not None:
        check_text(identity, "--identity", max_len=256)
    with Workspace.open(workspace_path()) as ws:
        det = latest_determination(
            ws, determination_id=None if determination == "latest" else determination
        )
        policy = policy_for(ws, det)
        _check_role(policy, det, role)
        record = SignOffRecord(
            id=f"sign-{sha256_hex(f'{det.id}:{role}:{utcnow().isoformat()}'.encode())[:16]}",
            determination=det.id,
            model=det.model,
            role=role,
            identity=identity or ws.author,
            decision="dissent" if dissent is not None else "approve",
            text=dissent if dissent is not None else note,
        )
        entry = ws.append(record)
    console.print(
        f"{record.decision}: {role} ({record.identity}) on {det.id}; ledger entry {entry.seq}",
        markup=False,
    )


def _check_role(policy: Policy, det: Determination, role: str) -> None:
    roles = {r.id for r in policy.governance.roles}
    if role not in roles:
        raise UserError(
            f"--role: '{role}' is not a role of {policy.id}; roles: {', '.join(sorted(roles))}"
        )
    deciders = {
        r for d in policy.decisions if d.about in ("capability", "safeguards") for r in d.decided_by
    }
    if deciders and role not in deciders:
        err_console.print(
            f"note: {role} is not among the deciders of {policy.id} "
            f"({', '.join(sorted(deciders))}); recorded as a sign-off all the same"
        )
