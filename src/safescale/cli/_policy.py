"""``safescale policy list | show | validate | diff | schema``"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.table import Table

from safescale._errors import UserError
from safescale._input import one_line, quote
from safescale.cli._common import console, err_console, print_json, print_table
from safescale.policy import (
    Policy,
    builtin_ids,
    builtin_path,
    check_policy_file,
    diff_policies,
    load_builtin,
    load_policy,
    policy_json_schema,
    policy_sha256,
)

app = typer.Typer(help="Safety policies: list, show, validate, diff.", no_args_is_help=True)


@app.command("list")
def list_policies(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the built-in policies."""
    policies = [load_builtin(pid) for pid in builtin_ids()]
    if as_json:
        print_json(
            [
                {
                    "id": p.id,
                    "name": p.framework.name,
                    "developer": p.framework.developer,
                    "version": p.version,
                    "effective": str(p.framework.effective),
                    "source": p.framework.source.url,
                    "thresholds": [t.id for t in p.capability_thresholds],
                }
                for p in policies
            ]
        )
        return
    table = Table(title="Built-in policies")
    table.add_column("id", no_wrap=True)
    for col in ("developer", "framework", "version", "effective", "thresholds"):
        table.add_column(col)
    for p in policies:
        table.add_row(
            p.id,
            p.framework.developer,
            p.framework.name,
            p.version,
            str(p.framework.effective),
            str(len(p.capability_thresholds)),
        )
    print_table(table)


@app.command("show")
def show(
    policy: Annotated[str, typer.Argument(help="A built-in policy id or a policy file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the full policy as JSON.")] = False,
    as_yaml: Annotated[bool, typer.Option("--yaml", help="Print the full policy as YAML.")] = False,
) -> None:
    """Show a policy. --json/--yaml print it in the very schema that `validate` accepts."""
    if as_json and as_yaml:
        raise UserError("--json and --yaml: choose one")
    p = load_policy(policy)
    if as_json:
        print_json(p.to_dict())
        return
    if as_yaml:
        typer.echo(yaml.safe_dump(p.to_dict(), sort_keys=False, allow_unicode=True, width=100))
        return
    _render(p)


def _render(p: Policy) -> None:
    fw = p.framework
    console.print(f"[bold]{fw.name}[/bold] {fw.version} ({fw.developer}), effective {fw.effective}")
    console.print(f"id {p.id}  sha256 {policy_sha256(p)[:16]}...  source {fw.source.url}")
    if fw.summary:
        console.print(fw.summary)
    table = Table(title="Capability thresholds")
    for col in (
        "id",
        "kind",
        "level",
        "evaluation lines (rule-out / alert / threshold)",
        "required safeguards",
    ):
        table.add_column(col)
    for t in p.capability_thresholds:
        lines = "; ".join(
            f"{b.evaluation} {'>' if b.direction == 'higher' else '<'} "
            f"{b.rule_out:g} / {_g(b.alert)} / {_g(b.threshold)}"
            for b in t.evaluations
        )
        req = t.required_safeguards
        sg = ", ".join(req.all_of + [" or ".join(g) for g in req.any_of]) or "-"
        table.add_row(t.id, t.kind, t.level.label if t.level else "-", lines or "-", sg)
    print_table(table)
    trig = Table(title="Assessment triggers")
    for col in ("id", "kind", "rule"):
        trig.add_column(col)
    for tr in p.assessment_triggers:
        rule = {
            "effective_compute": lambda t: (
                f">= {t.ratio:g}x effective compute since last assessment"
            ),
            "calendar": lambda t: f"{t.interval} ({t.basis.replace('_', ' ')})",
            "event": lambda t: ", ".join(t.events),
            "discretion": lambda t: f"at the discretion of {t.role}",
        }[tr.kind](tr)
        trig.add_row(tr.id, tr.kind, rule)
    print_table(trig)
    pause = p.unmet_safeguards.training_pause
    if pause is not None:
        console.print(
            f"pause rule {pause.id}: >= {pause.ratio:g}x effective compute of a model "
            f"with unmet safeguards -> {pause.action}"
        )
    if p.regulatory_overlays:
        console.print(
            "regulatory overlays: "
            + "; ".join(f"{o.id} > {o.threshold_flop:.0e} FLOP" for o in p.regulatory_overlays)
        )


def _g(x: float | None) -> str:
    return "-" if x is None else f"{x:g}"


@app.command("validate")
def validate(
    paths: Annotated[list[Path] | None, typer.Argument(help="Policy files or folders.")] = None,
    builtin: Annotated[
        bool, typer.Option("--builtin", help="Also validate every built-in.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
) -> None:
    """Validate policy files: one line per problem (file:line: field: fix); exit 2 if any."""
    from safescale.policy import iter_policy_files

    files = list(iter_policy_files(paths or []))
    if builtin:
        files += [builtin_path(pid) for pid in builtin_ids()]
    if not files:
        if paths:  # folders were given, and none holds a policy
            raise UserError(
                f"{', '.join(quote(str(x)) for x in paths)}: no policy file (.yaml, .yml or "
                ".json) in it; give a policy file, or a folder that holds some"
            )
        raise UserError("give at least one policy file or folder, or --builtin")
    results = []
    bad = 0
    for f in files:
        policy, problems = check_policy_file(f)
        bad += bool(problems)
        results.append(
            {
                "file": str(f),
                "valid": not problems,
                "id": policy.id if policy else None,
                "problems": [str(p) for p in problems],
            }
        )
        if not as_json:
            if problems:
                for prob in problems:  # a file name may hold a newline or an escape
                    err_console.print(one_line(f"error: {prob}"), markup=False, soft_wrap=True)
            else:
                assert policy is not None
                console.print(one_line(f"ok: {f} ({policy.id} {policy.version})"),
                              markup=False, soft_wrap=True)  # fmt: skip
    if as_json:
        print_json(results)
    if bad:
        raise typer.Exit(2)


@app.command("diff")
def diff(
    a: Annotated[str, typer.Argument(help="The old policy (built-in id or file).")],
    b: Annotated[str, typer.Argument(help="The new policy (built-in id or file).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print changes as JSON.")] = False,
) -> None:
    """Name what changed between two policies or versions."""
    pa, pb = load_policy(a), load_policy(b)
    changes = diff_policies(pa, pb)
    if as_json:
        print_json(
            [
                {"section": c.section, "path": c.path, "kind": c.kind, "old": c.old, "new": c.new}
                for c in changes
            ]
        )
        return
    n = len(changes)
    console.print(
        f"{pa.id} {pa.version} -> {pb.id} {pb.version}: {n} change{'' if n == 1 else 's'}",
        markup=False,
    )
    section = None
    for c in changes:
        if c.section != section:
            section = c.section
            console.print(f"\n[bold]{section}[/bold]")
        for line in c.describe().splitlines():
            console.print("  " + line, markup=False, soft_wrap=True)


@app.command("schema")
def schema() -> None:
    """Print the policy JSON Schema (draft 2020-12)."""
    typer.echo(json.dumps(policy_json_schema(), indent=2))
