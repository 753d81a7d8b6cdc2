"""A revision-0001 ledger (the transaction's fields on every entry) upgrades to 0002 intact."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import text

from safescale._errors import UserError
from safescale.ledger import Workspace
from safescale.ledger._config import CONFIG_NAME, read_config, write_config
from safescale.ledger._entry import COLUMNS
from safescale.ledger._store import current_revision, make_engine, migrate, resolve_url

from .helpers import evidence, model


def _v1_copy(source: Workspace, target: Path, database_url: str | None) -> list[tuple]:
    """Copy ``source``'s folder to ``target`` with its entries in a revision-0001 database."""
    rows = [tuple(e.model_dump()[c] for c in COLUMNS) for e in source.entries()]
    shutil.copytree(source.root, target, ignore=shutil.ignore_patterns("ledger.sqlite*"))
    config = read_config(target / CONFIG_NAME)
    if database_url:
        config = config.model_copy(update={"database_url": database_url})
        write_config(target / CONFIG_NAME, config)
    engine = make_engine(resolve_url(config.database_url, target))
    migrate(engine, "0001")
    marks = ", ".join(f":{c}" for c in COLUMNS)
    with engine.begin() as conn:
        conn.execute(
            text(f"INSERT INTO entries ({', '.join(COLUMNS)}) VALUES ({marks})"),
            [{**dict(zip(COLUMNS, r, strict=True)), "payload": r[4].encode()} for r in rows],
        )
    engine.dispose()
    return rows


def test_revision_0001_upgrades_and_still_verifies(
    tmp_path: Path, database_url: str | None
) -> None:
    with Workspace.init(tmp_path / "a") as source:
        source.append(model(0))
        source.append_many([evidence(i) for i in range(5)])
        source.append_many([model(1), model(2)])
        before = source.entries()
        _v1_copy(source, tmp_path / "b", database_url)
    with Workspace.open(tmp_path / "b") as upgraded:
        report = upgraded.verify()
        assert report.ok, report.problems
        assert (report.entries, report.signatures) == (8, 3)
        assert upgraded.entries() == before
        # and it keeps appending on the new schema
        upgraded.append(model(3))
        assert upgraded.verify().ok and upgraded.count() == 9


def test_a_tampered_copy_stops_the_upgrade(tmp_path: Path) -> None:
    with Workspace.init(tmp_path / "a") as source:
        source.append_many([evidence(i) for i in range(3)])
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
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM entries").scalar_one() == 3
    engine.dispose()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    Workspace.init(tmp_path / "a").close()
    engine = make_engine(resolve_url("sqlite:///ledger.sqlite", tmp_path / "a"))
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0099'")
    engine.dispose()
    with pytest.raises(UserError, match="revision 0099, newer than this safescale reads"):
        Workspace.open(tmp_path / "a")
