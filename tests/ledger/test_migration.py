"""Older ledgers upgrade intact: revision 0001 (the transaction's fields on every entry) and
revision 0002 (``tests/ledger/data/release-0002``, a workspace written by the release before
header version 2, whose entry hashes do not cover ``record_id`` and ``model``)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from safescale._errors import UserError
from safescale.ledger import Workspace, verify_export
from safescale.ledger._config import CONFIG_NAME, read_config, write_config
from safescale.ledger._entry import COLUMNS
from safescale.ledger._store import current_revision, make_engine, migrate, resolve_url

from .helpers import model

RELEASE_0002 = Path(__file__).parent / "data" / "release-0002"
V1_COLUMNS = COLUMNS[:-1]  # revision 0001 had no header version column


def release_copy(target: Path) -> Path:
    """A fresh copy of the workspace written by the revision-0002 release."""
    shutil.copytree(RELEASE_0002, target)
    return target


def _v1_copy(source: Workspace, target: Path, database_url: str | None) -> list[tuple]:
    """Copy ``source``'s folder to ``target`` with its entries in a revision-0001 database."""
    rows = [tuple(e.model_dump()[c] for c in V1_COLUMNS) for e in source.entries()]
    shutil.copytree(source.root, target, ignore=shutil.ignore_patterns("ledger.sqlite*"))
    config = read_config(target / CONFIG_NAME)
    if database_url:
        config = config.model_copy(update={"database_url": database_url})
        write_config(target / CONFIG_NAME, config)
    engine = make_engine(resolve_url(config.database_url, target))
    migrate(engine, "0001")
    marks = ", ".join(f":{c}" for c in V1_COLUMNS)
    with engine.begin() as conn:
        conn.execute(
            text(f"INSERT INTO entries ({', '.join(V1_COLUMNS)}) VALUES ({marks})"),
            [{**dict(zip(V1_COLUMNS, r, strict=True)), "payload": r[4].encode()} for r in rows],
        )
    engine.dispose()
    return rows


def test_revision_0001_upgrades_and_still_verifies(
    tmp_path: Path, database_url: str | None
) -> None:
    # Entries of the 0002 release have header version 1, as 0001 ledgers did.
    with Workspace.open(release_copy(tmp_path / "a")) as source:
        before = source.entries()
        _v1_copy(source, tmp_path / "b", database_url)
    with Workspace.open(tmp_path / "b") as upgraded:
        assert current_revision(upgraded.engine) == "0003"
        report = upgraded.verify()
        assert report.ok, report.problems
        assert (report.entries, report.signatures) == (7, 4)
        assert upgraded.entries() == before
        # and it keeps appending on the new schema
        upgraded.append(model(3))
        assert upgraded.verify().ok and upgraded.count() == 8


def test_the_0002_release_upgrades_and_still_verifies(tmp_path: Path) -> None:
    root = release_copy(tmp_path / "ws")
    assert not (root / "checkpoint.json").exists()
    with Workspace.open(root) as ws:
        assert current_revision(ws.engine) == "0003"
        report = ws.verify()
        assert report.ok, report.problems
        assert (report.entries, report.signatures) == (7, 4)
        old = ws.entries()
        assert {e.version for e in old} == {1}
        assert [m.id for m in ws.models()] == ["base-1", "base-2", "base-2-sft"]
        assert [e.id for e in ws.evidence("base-1")] == ["e0", "e1", "e2"]
        # The upgrade anchored what was there: a checkpoint of the 7 entries.
        checkpoint = json.loads((root / "checkpoint.json").read_text())
        assert (checkpoint["count"], checkpoint["head"]) == (7, old[-1].entry_hash)
        new = ws.append(model(9))
        assert new.version == 2 and new.prev_hash == old[-1].entry_hash
        assert ws.verify().ok and ws.verify(reference=True).ok


@pytest.mark.parametrize(("seq", "what"), [(1, "columns"), (3, "columns"), (8, "entry_hash")])
def test_changed_model_column_is_detected_in_old_and_new_entries(
    tmp_path: Path, seq: int, what: str
) -> None:
    root = release_copy(tmp_path / "ws")
    with Workspace.open(root) as ws:
        ws.append(model(9))
    with sqlite3.connect(root / "ledger.sqlite") as db:
        db.execute("UPDATE entries SET model = 'other' WHERE seq = ?", (seq,))
    with Workspace.open(root) as ws:
        fast, reference = ws.verify(), ws.verify(reference=True)
    # (the new entry is also the signed head and the checkpoint: those fail with it)
    assert (seq, what) in {(p.seq, p.what) for p in fast.problems}
    assert fast.bad_seqs == reference.bad_seqs == {seq}


def test_changed_record_id_of_an_old_entry_is_detected(tmp_path: Path) -> None:
    root = release_copy(tmp_path / "ws")
    Workspace.open(root).close()
    with sqlite3.connect(root / "ledger.sqlite") as db:
        db.execute("UPDATE entries SET record_id = 'e7' WHERE seq = 2")
    with Workspace.open(root) as ws:
        assert {(p.seq, p.what) for p in ws.verify().problems} == {(2, "columns")}


def test_a_tampered_copy_stops_the_upgrade(tmp_path: Path) -> None:
    with Workspace.open(release_copy(tmp_path / "a")) as source:
        _v1_copy(source, tmp_path / "b", None)
    engine = make_engine(resolve_url("sqlite:///ledger.sqlite", tmp_path / "b"))
    with engine.begin() as conn:  # entry 2's copy of the signature no longer matches head 3's
        conn.exec_driver_sql(
            "UPDATE entries SET signature = CASE WHEN substr(signature, 1, 2) = 'ab' THEN 'cd' "
            "ELSE 'ab' END || substr(signature, 3) WHERE seq = 2"
        )
    with pytest.raises(UserError, match="entries 2 disagree with their signed head"):
        Workspace.open(tmp_path / "b")
    with engine.connect() as conn:  # nothing changed: still revision 0001, every entry there
        assert current_revision(engine) == "0001"
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM entries").scalar_one() == 7
    engine.dispose()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    Workspace.init(tmp_path / "a").close()
    engine = make_engine(resolve_url("sqlite:///ledger.sqlite", tmp_path / "a"))
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0099'")
    engine.dispose()
    with pytest.raises(UserError, match="revision 0099, newer than this safescale reads"):
        Workspace.open(tmp_path / "a")


def test_an_export_of_old_entries_verifies_and_covers_their_model(tmp_path: Path) -> None:
    with Workspace.open(release_copy(tmp_path / "ws")) as ws:
        text = ws.export().model_dump_json()
        key = ws.public_key_pem()
    assert verify_export(text, key).ok
    changed = text.replace('"model":"base-1"', '"model":"other"', 1)
    assert changed != text
    assert [(p.seq, p.what) for p in verify_export(changed, key).problems] == [(1, "columns")]
