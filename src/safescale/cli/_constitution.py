"""``safescale constitution``: check, show and compare constitutions; generate their data."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from safescale._errors import Problem, UserError
from safescale._input import check_count, check_id, check_seed, escape_controls
from safescale.cli._common import (
    check_output_folder,
    console,
    print_json,
    print_table,
    workspace_path,
)

app = typer.Typer(
    help="Constitutions: what is restricted and what is allowed; data for classifiers.",
    no_args_is_help=True,
)

LAB = "lab"
"""Names the lab's shipped constitution wherever a constitution file is asked for."""


def _load(ref: str) -> tuple[Any, Path]:
    from safescale.constitution import lab_constitution, load_constitution

    path = lab_constitution() if ref == LAB and not Path(ref).exists() else Path(ref)
    return load_constitution(path), path


def _value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(json.dumps(v, ensure_ascii=False) for v in value) + "]"
    return escape_controls(json.dumps(value, ensure_ascii=False))


@app.command()
def validate(
    files: Annotated[list[str], typer.Argument(help="Constitution files ('lab': the lab's).")],
) -> None:
    """Check constitution files; the first problem is one line naming the file, line and field."""
    from safescale.constitution import constitution_sha256

    for ref in files:
        c, path = _load(ref)
        restricted = sum(p.category == "restricted" for p in c.principles)
        console.print(
            f"{path}: ok ({c.name} {c.version}: {len(c.principles)} principles, {restricted} "
            f"restricted, {len(c.principles) - restricted} allowed; "
            f"sha256 {constitution_sha256(c)[:16]}...)",
            markup=False,
            soft_wrap=True,
        )


@app.command()
def show(
    file: Annotated[str, typer.Argument(help="A constitution file ('lab': the lab's).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print it as JSON.")] = False,
) -> None:
    """Print a constitution's principles."""
    from rich.table import Table

    from safescale.constitution import constitution_sha256

    c, _ = _load(file)
    if as_json:
        print_json(c.to_dict())  # the file's content as JSON: it validates as written
        return
    console.print(f"{c.name} {c.version}  sha256 {constitution_sha256(c)[:16]}...", markup=False)
    if c.description:
        console.print(c.description, markup=False)
    rows = [(p.id, p.category, p.stage, str(len(p.examples)), p.description)
            for p in c.principles]  # fmt: skip
    headers = ("id", "category", "stage", "ex", "description")
    width = min(console.width, 80)
    # The first four columns stay whole and the description wraps, within 80 columns; when
    # they leave the description under 20 (long ids, a narrow terminal), each principle is
    # printed as a titled list instead (print_table), never with its values cut.
    fixed = sum(max(len(h), *(len(r[i]) for r in rows)) + 3 for i, h in enumerate(headers[:4]))
    table = Table(width=width if fixed + 20 <= width else None, show_lines=False, pad_edge=False)
    table.add_column("id", no_wrap=True)
    table.add_column("category", no_wrap=True)
    table.add_column("stage", no_wrap=True)
    table.add_column("ex", justify="right", no_wrap=True)
    table.add_column("description", overflow="fold", ratio=1)
    for row in rows:
        table.add_row(*row)
    if fixed + 20 <= width:
        console.print(table, markup=False)
    else:
        print_table(table)


@app.command()
def diff(
    old: Annotated[str, typer.Argument(help="The old constitution file.")],
    new: Annotated[str, typer.Argument(help="The new constitution file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print changes as JSON.")] = False,
) -> None:
    """Name the principles added, removed and changed (whole values) between two files."""
    from safescale.constitution import diff_constitutions

    a, _ = _load(old)
    b, _ = _load(new)
    d = diff_constitutions(a, b)
    if as_json:
        print_json(
            {
                "added": [p.model_dump(mode="json") for p in d.added],
                "removed": [p.model_dump(mode="json") for p in d.removed],
                "changed": [
                    {"principle": ch.principle, "field": ch.field, "old": ch.old, "new": ch.new}
                    for ch in d.changed
                ],
            }
        )
        return
    n = len(d.added) + len(d.removed) + len(d.changed)
    console.print(f"{a.name} {a.version} -> {b.name} {b.version}: {n} changes", markup=False)
    for p in d.added:
        console.print(f"+ {p.id} ({p.category}, {p.stage}): {_value(p.description)}", markup=False)
    for p in d.removed:
        console.print(f"- {p.id} ({p.category}, {p.stage})", markup=False)
    for ch in d.changed:
        where = f"{ch.principle}.{ch.field}" if ch.principle else ch.field
        console.print(f"~ {where}: {_value(ch.old)} -> {_value(ch.new)}", markup=False)


def _families(items: list[str] | None, default: tuple[str, ...], flag: str) -> tuple[str, ...]:
    if items is None:
        return default
    names = tuple(n for item in items for n in item.split(",") if n)
    if items and not names and flag == "--augment":
        raise UserError(Problem("give at least one family", field=flag))
    return names


@app.command()
def data(
    out: Annotated[Path, typer.Option("--out", help="New folder for the data set.")],
    constitution: Annotated[
        str, typer.Option("--constitution", help="A constitution file, or 'lab'.")
    ] = LAB,
    seed: Annotated[int, typer.Option("--seed", help="Seed of draws and splits.")] = 0,
    world_seed: Annotated[
        int, typer.Option("--world-seed", help="Seed of the lab world (lab data).")
    ] = 0,
    n: Annotated[
        int | None,
        typer.Option(
            "--n", help="Lab: plain requests drawn (1200). Model: items a principle (40)."
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", help="An Inspect model that writes the data (default: the lab)."),
    ] = None,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", help="Model: most tokens a reply may have.")
    ] = 1024,
    augment: Annotated[
        list[str] | None,
        typer.Option("--augment", help="Attack families to augment with (default: all)."),
    ] = None,
    held_out: Annotated[
        list[str] | None,
        typer.Option("--held-out", help="Families kept out of train and calibration."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """Generate a labelled data set from a constitution and write it (JSONL and a manifest)."""
    from safescale.constitution import (
        DEFAULT_HELD_OUT,
        FAMILIES,
        constitution_bytes,
        generate_lab_dataset,
        generate_with_model,
        write_dataset,
    )

    check_seed(seed)
    check_seed(world_seed, "--world-seed")
    if n is not None:
        check_count(n, "--n", lo=10 if model is None else 1, hi=1_000_000)
    check_count(max_tokens, "--max-tokens", lo=1, hi=1_000_000)
    if model is not None:
        check_id(model, "--model", what="Inspect model")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(
            Problem("already exists and is not an empty folder; give a new folder", field="--out")
        )
    check_output_folder(out, "--out")  # not inside the workspace
    fams = _families(augment, FAMILIES, "--augment")
    held = _families(held_out, DEFAULT_HELD_OUT, "--held-out")
    held = tuple(f for f in held if f in fams) if held_out is None else held
    c, path = _load(constitution)
    try:
        if model is None:
            ds = generate_lab_dataset(
                c, world_seed=world_seed, seed=seed, n=n or 1200, augment=fams, held_out=held
            )
        else:
            ds = generate_with_model(
                c,
                model,
                seed=seed,
                per_principle=n or 40,
                augment=fams,
                held_out=held,
                max_tokens=max_tokens,
            )
    except UserError as exc:
        raise UserError(*(_located(p, path) for p in exc.problems)) from None
    folder = write_dataset(ds, out)
    stored = _store(constitution_bytes(c), folder / "manifest.json")
    m = ds.manifest
    if as_json:
        print_json({**m.to_json(), "out": str(folder), "ledger": stored})
        return
    split = ", ".join(f"{k} {v}" for k, v in m.counts["split"].items())
    console.print(
        f"wrote {m.n_examples} examples to {folder} ({split}; held out: "
        f"{', '.join(m.held_out) or 'none'}); sha256 {m.examples_sha256[:16]}...",
        markup=False,
        soft_wrap=True,
    )
    if stored:
        console.print(
            f"ledger: constitution artifact {stored['constitution'][:16]}..., "
            f"manifest artifact {stored['manifest'][:16]}...",
            markup=False,
            soft_wrap=True,
        )


_FLAGS = {"augment": "--augment", "held_out": "--held-out", "n": "--n", "per_principle": "--n"}


def _located(problem: Problem, path: Path) -> Problem:
    """A generator's problem, named as the user wrote it: the constitution file for a
    principle's field, the flag for an argument."""
    field = problem.field or ""
    if field.startswith("principles") and problem.source is None:
        from safescale.constitution import field_line

        return replace(problem, source=str(path), line=field_line(path, field))
    if field in _FLAGS:
        return replace(problem, field=_FLAGS[field])
    return problem


def _store(constitution: bytes, manifest: Path) -> dict[str, str] | None:
    """Keep the constitution (canonical JSON: its artifact name is its sha256) and the data
    set's manifest in the workspace's artifact store, when there is a workspace."""
    from safescale.ledger import Workspace

    ws = Workspace.find(workspace_path())
    if ws is None:
        return None
    with ws:
        return {
            "constitution": ws.add_artifact(constitution),
            "manifest": ws.add_artifact(manifest),
        }
