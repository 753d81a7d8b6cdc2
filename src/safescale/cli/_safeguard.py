"""``safescale attest`` and ``safescale safeguard test``: safeguard evidence for any policy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from safescale._errors import Problem, UserError
from safescale._input import check_count, check_optional_number, check_text
from safescale.assess import (
    attestation,
    check_artifact_file,
    record_safeguard_evidence,
    safeguard_test,
    store_artifacts,
)
from safescale.cli._common import console, print_json, workspace_path
from safescale.ledger import Workspace
from safescale.policy import Evidence, Policy, load_policy

app = typer.Typer(
    help="Safeguard evidence: tests against a standard's criteria.", no_args_is_help=True
)

PolicyOpt = Annotated[
    str | None, typer.Option("--policy", help="Policy id or file (default: the workspace's).")
]
ModelOpt = Annotated[
    str, typer.Option("--model", help="Model id in the ledger ('*': every model).")
]
ArtifactOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--artifact",
        help="A file backing the evidence, kept in the workspace by sha256 (FILE or NAME=FILE; "
        "repeatable).",
    ),
]


def _artifacts(items: list[str] | None) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for item in items or []:
        name, sep, file = item.partition("=")
        path = Path(file if sep else item)
        key = name if sep and name else path.name
        check_text(key, "--artifact", max_len=MAX_NAME_LEN)
        if key in out:
            raise UserError(
                Problem(f"two artifacts named {key!r}; use NAME=FILE", field="--artifact")
            )
        out[key] = path
    return out


MAX_NAME_LEN = 255
"""Longest artifact name, metric or --by."""
MAX_TRIALS = 10**9
"""Most trials a safeguard test may count."""


def _check_by(by: str) -> None:
    check_text(by, "--by", max_len=MAX_NAME_LEN)


Build = Callable[[Policy, dict[str, str]], Evidence]
"""Makes the record from the policy and the artifacts' hashes."""


def _record(policy: str | None, model: str, build: Build, artifacts: list[str] | None) -> Evidence:
    files = _artifacts(artifacts)
    for path in files.values():
        check_artifact_file(path)
    with Workspace.open(workspace_path()) as ws:
        pol = load_policy(policy or ws.config.default_policy)
        known = {m.id for m in ws.models()}
        if model != "*" and model not in known:
            raise UserError(
                Problem(
                    f"model {model!r} is not in the ledger; record it with `safescale compute add` "
                    f"(known: {', '.join(sorted(known)) or 'none'})",
                    field="--model",
                )
            )
        # Built (and so checked) before anything is stored: bad input writes nothing.
        build(pol, {name: "0" * 64 for name in files})
        ev = build(pol, store_artifacts(ws, files))
        return record_safeguard_evidence(ws, ev)


def _show(ev: Evidence, as_json: bool) -> None:
    if as_json:
        print_json(ev.model_dump(mode="json"))
        return
    crit = ev.details.get("criterion")
    target = f"{ev.subject}" + (f" / {crit}" if crit else "")
    if ev.kind == "attestation":
        verdict = "in place" if ev.value >= 1 else "NOT in place"
        console.print(
            f"recorded {ev.id}: {ev.details['by']} attests {target} is {verdict} for {ev.model}",
            markup=False,
        )
    else:
        assert ev.interval is not None
        verdict = "meets" if ev.details.get("passed") else "does NOT meet"
        console.print(
            f"recorded {ev.id}: {ev.metric} {ev.value:.3f} [{ev.interval.lo:.3f}, "
            f"{ev.interval.hi:.3f}] (n={ev.n}) {verdict} {target} for {ev.model}",
            markup=False,
        )
    for name, sha in ev.artifacts.items():
        console.print(f"  artifact {name}: sha256 {sha}", markup=False)


def attest(
    safeguard: Annotated[str, typer.Argument(help="Safeguard standard id of the policy.")],
    model: ModelOpt,
    by: Annotated[str, typer.Option("--by", help="Who vouches (a person or a role).")],
    statement: Annotated[
        str, typer.Option("--statement", help="What is attested, in the attester's words.")
    ],
    criterion: Annotated[
        str | None,
        typer.Option("--criterion", help="One criterion of the standard (default: all of it)."),
    ] = None,
    not_met: Annotated[
        bool, typer.Option("--not-met", help="Record that it is NOT in place.")
    ] = False,
    artifact: ArtifactOpt = None,
    policy: PolicyOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the record as JSON.")] = False,
) -> None:
    """Record an attestation that a safeguard standard (or one criterion) is in place."""
    _check_by(by)
    check_text(statement, "--statement")
    ev = _record(
        policy,
        model,
        lambda pol, hashes: attestation(
            pol,
            safeguard,
            model=model,
            by=by,
            statement=statement,
            criterion=criterion,
            met=not not_met,
            artifacts=hashes,
        ),
        artifact,
    )
    _show(ev, as_json)


@app.command("test")
def test(
    safeguard: Annotated[str, typer.Argument(help="Safeguard standard id of the policy.")],
    model: ModelOpt,
    criterion: Annotated[str, typer.Option("--criterion", help="The criterion tested.")],
    metric: Annotated[
        str, typer.Option("--metric", help="What was counted (refusal_rate, attack_success_rate).")
    ],
    successes: Annotated[
        int, typer.Option("--successes", help="Trials counted by the metric (k).")
    ],
    n: Annotated[int, typer.Option("--n", help="Trials run.")],
    by: Annotated[str, typer.Option("--by", help="Who ran the test.")],
    at_least: Annotated[
        float | None, typer.Option("--at-least", help="Met when the 95% lower bound >= this.")
    ] = None,
    at_most: Annotated[
        float | None, typer.Option("--at-most", help="Met when the 95% upper bound <= this.")
    ] = None,
    method: Annotated[str, typer.Option("--method", help="How it was tested.")] = "",
    artifact: ArtifactOpt = None,
    policy: PolicyOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the record as JSON.")] = False,
) -> None:
    """Record a safeguard test (k of n) judged against one criterion's bound."""
    _check_by(by)
    check_text(metric, "--metric", max_len=MAX_NAME_LEN)
    check_text(method, "--method", allow_empty=True)
    check_count(n, "--n", lo=1, hi=MAX_TRIALS)
    lo = check_optional_number(at_least, "--at-least", lo=0, hi=1)
    hi = check_optional_number(at_most, "--at-most", lo=0, hi=1)
    if lo is not None and hi is not None and lo > hi:
        raise UserError(Problem(f"{lo:g} is above --at-most {hi:g}; no rate could meet both",
                                field="--at-least"))  # fmt: skip
    ev = _record(
        policy,
        model,
        lambda pol, hashes: safeguard_test(
            pol,
            safeguard,
            model=model,
            criterion=criterion,
            metric=metric,
            successes=successes,
            n=n,
            by=by,
            at_least=at_least,
            at_most=at_most,
            method=method,
            artifacts=hashes,
        ),
        artifact,
    )
    _show(ev, as_json)
