"""The tamper and corruption scenarios of an attacker or an accident, through the command.

Each scenario changes a copy of one workspace (38 entries in 12 transactions) the way an
attacker with shell access, a key holder, or a failing disk would, then runs the command and
asserts detection: exit status 1, the problem on one line, never a traceback.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from safescale.ledger import KeyPair, Workspace
from safescale.ledger._checkpoint import CHECKPOINT_NAME, sign_checkpoint, store_checkpoint
from safescale.ledger._entry import format_time, header_bytes

from .helpers import evidence, model

SIZES = [1, 1, 5, 1, 8, 1, 3, 10, 1, 4, 2, 1]  # entries per transaction: 38 in all
N = sum(SIZES)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pristine") / ".safescale"
    with Workspace.init(root) as ws:
        k = 0
        for t, size in enumerate(SIZES):
            if size == 1:
                ws.append(model(t))
            else:
                ws.append_many([evidence(k + i, model_id=f"m{t - 1}") for i in range(size)])
                k += size
        assert ws.verify().ok and ws.count() == N
        with ws.engine.connect() as conn:  # fold the WAL in, so the file alone is the ledger
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return root


@pytest.fixture
def root(pristine: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(pristine, tmp_path / ".safescale"))


def _sql(root: Path, *statements: str) -> None:
    with sqlite3.connect(root / "ledger.sqlite") as db:
        for statement in statements:
            db.execute(statement)


def _last_transactions(k: int) -> int:
    """The seq of the last entry kept when the last ``k`` transactions are removed."""
    return sum(SIZES[:-k])


def _page_of(root: Path, table: str) -> int:
    with sqlite3.connect(root / "ledger.sqlite") as db:
        (page,) = db.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)
        ).fetchone()
    return int(page)


def _zero_page(root: Path, page: int) -> None:
    path = root / "ledger.sqlite"
    data = bytearray(path.read_bytes())
    data[(page - 1) * 4096 : page * 4096] = bytes(4096)
    path.write_bytes(bytes(data))


def _truncate_half(root: Path) -> None:
    path = root / "ledger.sqlite"
    os.truncate(path, path.stat().st_size // 2)


def _verify(run_cli, root: Path, *extra: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    return run_cli("--workspace", str(root), "ledger", "verify", *extra)  # type: ignore[no-any-return]


# Scenarios that verification reports: what changes, and a FAIL line it must print.
REPORTED: dict[str, tuple[Callable[[Path], None], str]] = {
    "delete all rows": (
        lambda r: _sql(r, "DELETE FROM entries", "DELETE FROM heads"),
        f"FAIL ledger: checkpoint: the ledger has 0 entries, {{cp}} was taken at {N}",
    ),
    "delete all entries": (
        lambda r: _sql(r, "DELETE FROM entries"),
        f"FAIL ledger: checkpoint: the ledger has 0 entries, {{cp}} was taken at {N}",
    ),
    "delete the last entry": (
        lambda r: _sql(
            r, f"DELETE FROM entries WHERE seq = {N}", f"DELETE FROM heads WHERE seq = {N}"
        ),
        f"FAIL ledger: checkpoint: the ledger has {N - 1} entries, {{cp}} was taken at {N}",
    ),
    "delete the last 3 transactions": (
        lambda r: _sql(
            r,
            f"DELETE FROM entries WHERE seq > {_last_transactions(3)}",
            f"DELETE FROM heads WHERE seq > {_last_transactions(3)}",
        ),
        f"FAIL ledger: checkpoint: the ledger has {_last_transactions(3)} entries, {{cp}} was "
        f"taken at {N}",
    ),
    "leftover head row": (
        # The last transaction's entries go; its head row stays.
        lambda r: _sql(r, f"DELETE FROM entries WHERE seq > {_last_transactions(1)}"),
        f"FAIL entry {N}: heads: a transaction head row with no entry",
    ),
    "UPDATE model": (
        lambda r: _sql(r, "UPDATE entries SET model = 'other'"),
        "FAIL entry 1: entry_hash: header does not hash to entry_hash",
    ),
    "UPDATE record_id": (
        lambda r: _sql(r, "UPDATE entries SET record_id = 'x' WHERE seq = 7"),
        "FAIL entry 7: entry_hash: header does not hash to entry_hash",
    ),
    "zero the model index's 4 KB page": (
        lambda r: _zero_page(r, _page_of(r, "ix_entries_model")),
        "FAIL ledger: database: SQLite quick_check:",
    ),
    # quick_check passed this; `ledger log --model m9` then listed m3's entries
    "change a key in the model index": (
        lambda r: _edit_index_key(r, b"m3", b"m9"),
        "FAIL ledger: database: SQLite integrity_check:",
    ),
}


def _edit_index_key(root: Path, old: bytes, new: bytes) -> None:
    page = _page_of(root, "ix_entries_model")
    path = root / "ledger.sqlite"
    data = bytearray(path.read_bytes())
    at = data.index(old, (page - 1) * 4096, page * 4096)
    data[at : at + len(new)] = new
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name", list(REPORTED))
def test_tampering_is_reported(run_cli, root: Path, name: str) -> None:  # type: ignore[no-untyped-def]
    change, line = REPORTED[name]
    change(root)
    code, out, err = _verify(run_cli, root)
    assert code == 1, out
    expected = line.format(cp=root / CHECKPOINT_NAME)
    assert any(row.startswith(expected) for row in out.splitlines()), out
    assert out.splitlines()[-1].startswith("FAILED (") and "Traceback" not in out + err


# Scenarios where the database cannot be read as a ledger: one line on stderr, exit 1.
DAMAGED: dict[str, tuple[Callable[[Path], object], str]] = {
    "empty file": (lambda r: (r / "ledger.sqlite").write_text(""), "no ledger schema in it"),
    "rm": (lambda r: (r / "ledger.sqlite").unlink(), "the ledger database is missing"),
    "truncate half": (_truncate_half, "database disk image is malformed"),
    "drop table entries": (lambda r: _sql(r, "DROP TABLE entries"), "no such table: entries"),
    "drop table heads": (lambda r: _sql(r, "DROP TABLE heads"), "no such table: heads"),
    "zero the entries table's 4 KB page": (
        lambda r: _zero_page(r, _page_of(r, "entries")),
        "database disk image is malformed",
    ),
    "zero the first 4 KB": (lambda r: _zero_page(r, 1), "file is not a database"),
    "not a SQLite file": (
        lambda r: (r / "ledger.sqlite").write_bytes(b"not a database\n" * 500),
        "file is not a database",
    ),
}


@pytest.mark.parametrize("command", [("ledger", "verify"), ("ledger", "log"), ("compute", "show")])
@pytest.mark.parametrize("name", list(DAMAGED))
def test_a_damaged_database_is_one_line_and_exit_1(  # type: ignore[no-untyped-def]
    run_cli, root: Path, name: str, command: tuple[str, str]
) -> None:
    change, why = DAMAGED[name]
    change(root)
    code, out, err = run_cli("--workspace", str(root), *command)
    assert code == 1 and out == ""
    (line,) = err.splitlines()
    assert line.startswith(f"error: {root / 'ledger.sqlite'}: ") and why in line, line
    # and nothing re-created a database in place of a deleted one
    assert name != "rm" or not (root / "ledger.sqlite").exists()


def test_appending_to_a_cut_ledger_is_refused(run_cli, root: Path) -> None:  # type: ignore[no-untyped-def]
    _sql(root, f"DELETE FROM entries WHERE seq > {_last_transactions(2)}",
         f"DELETE FROM heads WHERE seq > {_last_transactions(2)}")  # fmt: skip
    before = (root / CHECKPOINT_NAME).read_bytes()
    code, _, err = run_cli("--workspace", str(root), "compute", "add", "--model", "new",
                           "--flops", "1e20")  # fmt: skip
    assert code == 1 and "no longer extends its checkpoint of 38 entries" in err
    assert len(err.splitlines()) == 1
    # Nothing written, and the checkpoint still remembers the lost entries.
    with Workspace.open(root) as ws:
        assert ws.count() == _last_transactions(2)
    assert (root / CHECKPOINT_NAME).read_bytes() == before


Rows = list[list[Any]]


def _rechain(root: Path, edit: Callable[[Rows], Rows]) -> None:
    """What a key holder can do: edit the rows, recompute every hash, re-sign every head
    and the workspace checkpoint with the workspace key."""
    keys = KeyPair.load(root / "keys" / "ed25519.pem")
    select = (
        "SELECT e.seq, e.kind, e.record_id, e.model, e.payload, e.signed_seq, h.author, h.time "
        "FROM entries e JOIN heads h ON h.seq = e.signed_seq ORDER BY e.seq"
    )
    insert = (
        "INSERT INTO entries (seq, kind, record_id, model, payload, payload_sha256, prev_hash, "
        "entry_hash, signed_seq, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 2)"
    )
    with sqlite3.connect(root / "ledger.sqlite") as db:
        rows = edit([list(r) for r in db.execute(select)])
        db.execute("DELETE FROM entries")
        db.execute("DELETE FROM heads")
        prev = "0" * 64
        for seq, kind, rid, model_id, payload, signed, author, time in rows:
            psha = hashlib.sha256(payload).hexdigest()
            header = header_bytes(seq, kind, psha, prev, author, time, keys.id, signed, rid,
                                  model_id)  # fmt: skip
            ehash = hashlib.sha256(header).hexdigest()
            db.execute(insert, (seq, kind, rid, model_id, payload, psha, prev, ehash, signed))
            if seq == signed:
                db.execute("INSERT INTO heads VALUES (?, ?, ?, ?, ?)",
                           (seq, author, time, keys.id, keys.sign(ehash)))  # fmt: skip
            prev = ehash
    forged = sign_checkpoint(keys, ledger_key_id=keys.id, count=len(rows), head=prev,
                             time=format_time(datetime.now(UTC)))  # fmt: skip
    (root / CHECKPOINT_NAME).unlink()
    store_checkpoint(root / CHECKPOINT_NAME, forged)


def _rewrite_entry_3(rows: Rows) -> Rows:
    payload = bytes(rows[2][4])
    assert b'"value":0.25' in payload
    rows[2][4] = payload.replace(b'"value":0.25', b'"value":0.05')
    return rows


@pytest.mark.parametrize(
    ("edit", "line"),
    [
        (_rewrite_entry_3, "entries up to 38 were rewritten"),
        (lambda rows: rows[:-3], "the ledger has 35 entries, {cp} was taken at 38"),
    ],
    ids=["rewrite entry 3", "remove the last 3 entries"],
)
def test_a_key_holder_is_caught_by_a_published_checkpoint(  # type: ignore[no-untyped-def]
    run_cli, root: Path, tmp_path: Path, edit: Callable[[Rows], Rows], line: str
) -> None:
    published = tmp_path / "published.json"
    assert (
        run_cli("--workspace", str(root), "ledger", "checkpoint", "--out", str(published))[0] == 0
    )
    _rechain(root, edit)
    # The key holder rewrote the chain, its signatures and the workspace checkpoint: on its
    # own the workspace verifies (the threat model says so) ...
    code, out, _ = _verify(run_cli, root)
    assert code == 0, out
    # ... but not against the checkpoint that left their hands.
    code, out, _ = _verify(run_cli, root, "--checkpoint", str(published))
    assert code == 1
    fails = [row for row in out.splitlines() if row.startswith("FAIL ")]
    assert len(fails) == 1 and line.format(cp=published) in fails[0], out


def test_a_key_holder_who_forgets_the_workspace_checkpoint_is_caught(  # type: ignore[no-untyped-def]
    run_cli, root: Path
) -> None:
    saved = (root / CHECKPOINT_NAME).read_bytes()
    _rechain(root, _rewrite_entry_3)
    (root / CHECKPOINT_NAME).write_bytes(saved)
    code, out, _ = _verify(run_cli, root)
    assert code == 1 and "entries up to 38 were rewritten" in out


# A column changed in the database (edited with sqlite3, the hashes not recomputed): every
# command that reads records stops, as verification would; before, the reads trusted the
# columns (a determination shown under another model's name, a model gone from `compute show`).
READS = [
    ("compute", "show"),
    ("ledger", "log"),
    ("ledger", "log", "--model", "m1"),
    ("ledger", "export", "-o", "out.json"),
    ("compute", "add", "--model", "new", "--flops", "1e20"),
]
COLUMN_EDITS = {
    "model of an evidence entry": ("UPDATE entries SET model = 'm0' WHERE seq = 3", 3),
    "kind of a model entry": ("UPDATE entries SET kind = 'evidence' WHERE seq = 1", 1),
    "record id": ("UPDATE entries SET record_id = 'e999' WHERE seq = 4", 4),
}


@pytest.mark.parametrize("edit", list(COLUMN_EDITS))
@pytest.mark.parametrize("command", READS, ids=" ".join)
def test_reads_stop_on_a_changed_column(
    run_cli, root: Path, edit: str, command: tuple[str, ...], tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    statement, seq = COLUMN_EDITS[edit]
    _sql(root, statement)
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("--workspace", str(root), *command)
    assert code == 1, (out, err)
    (line,) = err.splitlines()
    assert line.startswith(f"error: entry {seq}: ") or "does not verify" in line, line
    assert "the ledger was changed" in line or "nothing was exported" in line, line
    assert not (tmp_path / "out.json").exists()


def test_an_export_of_a_ledger_cut_short_is_refused(run_cli, root: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The export signs a new checkpoint: over a ledger that lost its last transaction, it
    vouched for the shorter ledger, and `ledger verify --export` passed."""
    last = N - SIZES[-1] + 1
    _sql(root, f"DELETE FROM entries WHERE seq >= {last}", f"DELETE FROM heads WHERE seq >= {last}")
    out_file = tmp_path / "export.json"
    code, out, err = run_cli("--workspace", str(root), "ledger", "export", "-o", str(out_file))
    assert code == 1 and not out_file.exists()
    (line,) = err.splitlines()
    assert "the ledger does not verify" in line and f"was taken at {N}" in line, line
    assert line.endswith("nothing was exported"), line


def test_reads_after_a_verification_do_not_derive_the_chain_again(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An export verifies the ledger and then reads every entry: the read starts where the
    verification ended (it derived the same chain), and still checks what came after."""
    from safescale.ledger import _read

    starts: list[int] = []
    original = _read.check_chain

    def spy(conn: Any, start: int, prev: str) -> tuple[int, str]:
        starts.append(start)
        return original(conn, start, prev)

    monkeypatch.setattr(_read, "check_chain", spy)
    with Workspace.open(root) as ws:
        assert ws.export().count == N
        assert starts == [N]
        ws.append(model(99))  # an entry after the verification is derived by the next read
        assert len(ws.entries()) == N + 1
    assert starts[-1] == N + 1
