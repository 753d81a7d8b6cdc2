"""``safescale init`` and ``safescale ledger verify|checkpoint|keygen|log|export``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table

from safescale._errors import Problem, UserError
from safescale._input import check_count, check_id, check_text, quote, read_limited
from safescale._io import atomic_write_text, check_output_path
from safescale.cli._common import (
    OPTIONS,
    check_output,
    console,
    print_json,
    print_table,
    workspace_path,
)
from safescale.ledger import (
    MAX_AUTHOR_LEN,
    RECORD_TYPES,
    Checkpoint,
    KeyPair,
    Workspace,
    load_public_pem,
    read_checkpoint,
    verify_export,
)

MAX_KEY_BYTES = 64 << 10
"""Largest public key file read (an ed25519 PEM is about 120 bytes)."""
MAX_EXPORT_BYTES = 4 << 30
"""Largest ledger export verified (it is parsed in memory)."""
MAX_LOG_LIMIT = 10**9
"""Largest --limit of `ledger log` (0 shows every entry)."""
MAX_SETTING_LEN = 2048
"""Longest --database-url or --author."""

app = typer.Typer(
    help="The signed evidence ledger: verify, checkpoint, log, export.", no_args_is_help=True
)


def init(
    folder: Annotated[
        Path | None, typer.Argument(help="Folder to create .safescale/ in (default: here).")
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option("--database-url", help="SQLAlchemy URL, e.g. postgresql+psycopg://u@h/db."),
    ] = None,
    author: Annotated[str | None, typer.Option(help="Identity recorded with entries.")] = None,
) -> None:
    """Create a workspace: configuration, database, artifacts/ and an ed25519 key pair."""
    if database_url is not None:
        check_text(database_url, "--database-url", max_len=MAX_SETTING_LEN)
    if author is not None:
        check_text(author, "--author", max_len=MAX_AUTHOR_LEN)
    if folder is not None:
        root = folder / ".safescale"
    else:
        root = workspace_path() or Path.cwd() / ".safescale"
    if root.exists() and not root.is_dir():
        raise UserError(Problem("is a file, not a folder; pick another place", source=str(root)))
    ws = Workspace.init(root, database_url=database_url, author=author)
    console.print(f"workspace created: {ws.root}")
    console.print(f"signing key {ws.keys.id}; public key in {ws.root / ws.config.public_key}")
    ws.close()


def _read_pem(path: Path | None) -> bytes | None:
    if path is None:
        return None
    pem = read_limited(path, MAX_KEY_BYTES, what="public key file")
    load_public_pem(pem, source=str(path))  # refused here, naming the file, if not a key
    return pem


@app.command()
def verify(
    public_key: Annotated[
        Path | None,
        typer.Option("--public-key", help="Check against this PEM key instead of the workspace's."),
    ] = None,
    export: Annotated[
        Path | None, typer.Option("--export", help="Verify an export file, not a workspace.")
    ] = None,
    checkpoint: Annotated[
        list[Path] | None,
        typer.Option(
            "--checkpoint",
            help="A checkpoint file (from `ledger checkpoint`) the ledger must extend; repeatable.",
        ),
    ] = None,
    checkpoint_key: Annotated[
        Path | None,
        typer.Option("--checkpoint-key", help="Public key that signed the --checkpoint files."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Re-derive the chain, every signature and artifact; check it extends its checkpoints.

    The checkpoints are the workspace's own and any --checkpoint; exit 1 on any change."""
    if checkpoint_key is not None and not checkpoint:
        raise UserError(
            Problem("checks --checkpoint files, and none was given: add --checkpoint FILE, or "
                    "leave the key out", field="--checkpoint-key")
        )  # fmt: skip
    pem = _read_pem(public_key)
    given: list[tuple[str, Checkpoint]] = [(str(f), read_checkpoint(f)) for f in checkpoint or []]
    if export is not None:
        data = read_limited(export, MAX_EXPORT_BYTES, what="ledger export")
        try:
            report = verify_export(
                data, pem, checkpoints=given, checkpoint_key_pem=_read_pem(checkpoint_key)
            )
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or None
            raise UserError(
                Problem(f"not a ledger export ({err['msg']}); give the file `safescale ledger "
                        "export` wrote, unchanged", source=str(export), field=where)
            ) from None  # fmt: skip
        except ValueError as exc:
            first = str(exc).splitlines()[0]
            raise UserError(
                Problem(f"not a ledger export ({first}); give the file `safescale ledger export` "
                        "wrote, unchanged", source=str(export))
            ) from None  # fmt: skip
    else:
        with Workspace.open(workspace_path()) as ws:
            report = ws.verify(pem, checkpoints=given, checkpoint_key_pem=_read_pem(checkpoint_key))
    if json_out:
        print_json(
            {
                "ok": report.ok,
                "entries": report.entries,
                "signatures": report.signatures,
                "artifacts": report.artifacts,
                "head": report.head,
                "key_id": report.key_id,
                "problems": [vars(p) for p in report.problems],
            }
        )
    else:
        shown = report.problems if OPTIONS.debug else report.problems[:50]
        for problem in shown:
            console.print(f"FAIL {problem}", markup=False, soft_wrap=True)
        if len(shown) < len(report.problems):
            console.print(
                f"... and {len(report.problems) - len(shown)} more problems", soft_wrap=True
            )
        n = len(report.problems)
        verdict = "ok" if report.ok else f"FAILED ({n} problem{'' if n == 1 else 's'})"
        console.print(
            f"{verdict}: {report.entries} entries, {report.signatures} signatures, "
            f"{report.artifacts} artifacts checked with key {report.key_id}; "
            f"head {report.head or 'none (an empty ledger)'}",
            markup=False,
            soft_wrap=True,
        )
    if not report.ok:
        raise typer.Exit(1)


@app.command("checkpoint")
def checkpoint_cmd(
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write the checkpoint here (default: print it)."),
    ] = None,
    key: Annotated[
        Path | None,
        typer.Option(
            "--key",
            help="Sign with this ed25519 private key (PEM), kept outside the workspace, instead "
            "of the ledger's key.",
        ),
    ] = None,
) -> None:
    """Verify the ledger, then sign a checkpoint of it to publish or hand to an auditor.

    The checkpoint holds the entry count, head hash, time and key id; `ledger verify
    --checkpoint FILE` later proves the ledger still extends it."""
    if out is not None:
        check_output(out, "--out")
    if key is not None and not key.exists():  # (the workspace's own key is "restored")
        raise UserError(Problem("no such key file; give the path of the private key (PEM) "
                                "to sign with", field="--key"))  # fmt: skip
    signer = None if key is None else KeyPair.load(key)
    with Workspace.open(workspace_path()) as ws:
        made = ws.checkpoint(signer)
    text = made.model_dump_json(indent=2) + "\n"
    if out is None:
        typer.echo(text, nl=False)
        return
    atomic_write_text(out, text)
    console.print(
        f"checkpoint of {made.count} entries (head {made.head[:16]}…) signed with key "
        f"{made.key_id}, written to {out}",
        markup=False,
    )


@app.command()
def keygen(
    out: Annotated[Path, typer.Argument(help="Private key file to create (PEM, mode 600).")],
) -> None:
    """Create an ed25519 key pair for signing checkpoints: OUT and OUT.pub.

    Keep OUT away from the workspace; hand OUT.pub to whoever verifies the checkpoints."""
    public = out.with_name(out.name + ".pub")
    # Both halves are checked before either is written: an existing OUT.pub was replaced
    # without a word, and one that could not be written left OUT alone.
    for path, what in ((out, "OUT"), (public, "OUT.pub")):
        if path.exists() or path.is_symlink():
            raise UserError(Problem("already exists; pick a new file name", source=str(path)))
        check_output_path(path, what)
    pair = KeyPair.generate()
    pair.save(out, public)
    console.print(f"key {pair.id}: private {out}, public {public}", markup=False)


@app.command()
def log(
    model: Annotated[str | None, typer.Option(help="Only entries about this model.")] = None,
    kind: Annotated[
        str | None, typer.Option(help="model, evidence, determination or signoff.")
    ] = None,
    limit: Annotated[
        int, typer.Option(help=f"Show the last N entries (0: all; at most {MAX_LOG_LIMIT:,}).")
    ] = 50,
) -> None:
    """The ledger for people: one line per entry, newest last."""
    if model is not None:
        check_id(model, "--model", what="model id")
    if kind is not None and kind not in RECORD_TYPES:
        raise UserError(Problem(f"{quote(kind)} is not an entry kind; choose one of "
                                f"{', '.join(RECORD_TYPES)}", field="--kind"))  # fmt: skip
    check_count(limit, "--limit", hi=MAX_LOG_LIMIT)
    with Workspace.open(workspace_path()) as ws:
        items = ws.entries(kind=kind, model=model)
    if limit > 0:
        items = items[-limit:]
    table = Table("seq", "time", "kind", "record", "model", "author", "entry hash")
    for e in items:
        table.add_row(str(e.seq), e.time[:19], e.kind, e.record_id, e.model or "", e.author,
                      e.entry_hash[:16])  # fmt: skip
    print_table(table)


@app.command("export")
def export_cmd(
    json_out: Annotated[bool, typer.Option("--json", help="JSON (the only format).")] = True,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to a file instead of stdout.")
    ] = None,
) -> None:
    """Every entry and the public key, so an outside reviewer can verify without our database."""
    if output is not None:
        check_output(output, "--output")
    with Workspace.open(workspace_path()) as ws:
        text = ws.export().model_dump_json(indent=2) + "\n"
    if output is not None:
        atomic_write_text(output, text)
        console.print(f"exported to {output}")
    else:
        typer.echo(text, nl=False)
