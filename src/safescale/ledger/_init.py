"""Creating a workspace: what must not be in the way, and undoing a creation that failed.

``safescale init`` either makes a whole workspace or leaves the folder as it found it: the
paths are checked before anything is created, and what a failed creation made is removed.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from pathlib import Path

import sqlalchemy
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from safescale._errors import Problem, SafescaleError, UserError
from safescale.ledger._checkpoint import CHECKPOINT_NAME
from safescale.ledger._config import CONFIG_NAME, WorkspaceConfig
from safescale.ledger._store import resolve_url, sqlite_path


def check_init_paths(path: Path, config: WorkspaceConfig) -> None:
    """Refuse, before anything is created, a workspace path whose parts exist as the wrong kind
    of thing (a file where a folder goes, a folder where a file goes), or a workspace there
    already (never overwritten)."""
    if (path / CONFIG_NAME).exists():
        raise UserError(Problem("a workspace already exists here; use it, or pick another folder",
                                source=str(path / CONFIG_NAME)))  # fmt: skip
    folders = [path, path / config.artifacts, (path / config.private_key).parent]
    files = [path / config.private_key, path / config.public_key, path / CHECKPOINT_NAME]
    try:
        database = sqlite_path(resolve_url(config.database_url, path))
    except Exception:  # an unusable URL is refused when the engine is made
        database = None
    if database is not None:
        files.append(database)
    for folder in folders:
        if folder.exists() and not folder.is_dir():
            raise UserError(Problem("is a file where the workspace needs a folder; remove it or "
                                    "pick another folder", source=str(folder)))  # fmt: skip
        for parent in folder.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise UserError(Problem("is a file, not a folder; pick another folder",
                                            source=str(parent)))  # fmt: skip
                break
    for file in files:
        if file.exists() and not file.is_file():
            raise UserError(Problem("is in the way (the workspace needs a file there); remove it "
                                    "or pick another folder", source=str(file)))  # fmt: skip


def existing_paths(path: Path) -> set[Path]:
    """Everything under ``path`` now (nothing if it does not exist)."""
    if not path.is_dir():
        return set()
    return {path, *path.rglob("*")}


def remove_new(path: Path, before: set[Path]) -> None:
    """Remove what is under ``path`` (and ``path`` itself) but not in ``before``."""
    made = sorted(existing_paths(path) - before, key=lambda p: len(p.parts), reverse=True)
    for p in made:
        with contextlib.suppress(OSError):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()


def creation_failed(path: Path, exc: BaseException) -> UserError:
    """The one line for a workspace the operating system or the database would not create."""
    where = getattr(exc, "filename", None) or str(path)
    reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
    return UserError(
        Problem(f"cannot create the workspace here ({reason}); give a folder you can write to",
                source=str(where))
    )  # fmt: skip


def check_no_ledger(engine: Engine, file: Path | None) -> None:
    """Refuse a database (an SQLite ``file``, or the server's) that already holds a ledger: a
    new workspace would sign it with a new key and a checkpoint of no entries, and every old
    signature would fail to verify."""
    if file is not None and not file.exists():
        return  # (connecting would create the file)
    try:
        with engine.connect() as conn:
            if not sqlalchemy.inspect(conn).has_table("entries"):
                return
            n = conn.exec_driver_sql("SELECT COUNT(*) FROM entries").scalar()
    except (SQLAlchemyError, SafescaleError, sqlite3.DatabaseError):
        return  # not a ledger at all: creating the schema in it fails, and says so
    raise UserError(
        Problem(
            f"the database already holds a ledger ({n} entries); open the workspace it belongs "
            "to, or give a new database (--database-url)",
            source=None if file is None else str(file),
            field="--database-url" if file is None else None,
        )
    )
