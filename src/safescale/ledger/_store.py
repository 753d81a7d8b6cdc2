"""The records store: two append-only tables behind SQLAlchemy.

``entries`` holds one row per entry (payload, its hash, the previous hash, the entry hash and
the sequence number of the head that signs it); ``heads`` holds one row per transaction head
(author, time, key id and the signature), which every entry of that transaction shares.
Together they give back each entry's full header (:data:`COLUMNS`); storing what a
transaction shares once keeps each entry row close to its payload's size.

SQLite is the default (a file in the workspace); a PostgreSQL URL works the same way. Every
append is one transaction that first takes the chain head's lock, so concurrent writers (threads
or processes) queue up instead of forking the chain: ``BEGIN IMMEDIATE`` on SQLite, a
transaction-scoped advisory lock on PostgreSQL. The primary key on ``seq`` is a second guard.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    create_engine,
    event,
    text,
)
from sqlalchemy import inspect as inspect_db
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from safescale._errors import IntegrityError, Problem, UserError
from safescale._input import quote
from safescale.ledger._config import MAX_AUTHOR_LEN
from safescale.ledger._entry import COLUMNS

SCHEMA_REVISION = "0003"
"""The Alembic revision this code reads and writes (``_migrations/versions``)."""

# An arbitrary constant naming "the safescale chain head" among PostgreSQL advisory locks.
_PG_LOCK_KEY = 0x5AFE5CA1E

# BIGINT on PostgreSQL; on SQLite an INTEGER primary key is the rowid itself (no second index).
SEQ = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()
entries = Table(
    "entries",
    metadata,
    Column("seq", SEQ, primary_key=True, autoincrement=False),
    Column("kind", String(32), nullable=False),
    Column("record_id", String(256), nullable=False),
    Column("model", String(256), nullable=True, index=True),
    Column("payload", LargeBinary, nullable=False),
    Column("payload_sha256", String(64), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("entry_hash", String(64), nullable=False),
    Column("signed_seq", SEQ, nullable=False),
    Column("version", SmallInteger, nullable=False, server_default="1"),
)
heads = Table(
    "heads",
    metadata,
    Column("seq", SEQ, primary_key=True, autoincrement=False),
    Column("author", String(MAX_AUTHOR_LEN), nullable=False),
    Column("time", String(32), nullable=False),
    Column("key_id", String(16), nullable=False),
    Column("signature", String(128), nullable=False),
)

ENTRY_COLUMNS = tuple(c.name for c in entries.columns)
"""What an ``entries`` row stores, in order."""
HEAD_COLUMNS = tuple(c.name for c in heads.columns)
"""What a ``heads`` row stores, in order."""
_TABLE_OF = {name: ("h" if name in HEAD_COLUMNS[1:] else "e") for name in COLUMNS}
SELECT_ENTRIES = (
    "SELECT "
    + ", ".join(f"{_TABLE_OF[name]}.{name}" for name in COLUMNS)
    + " FROM entries e LEFT JOIN heads h ON h.seq = e.signed_seq"
)
"""Every entry with its head's fields, columns in :data:`COLUMNS` order (an entry whose head
row is gone reads NULL there, which verification reports)."""


def resolve_url(url: str, root: Path) -> str:
    """Make a relative ``sqlite:///NAME`` URL absolute under the workspace ``root``."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UserError(
            Problem(
                f"{quote(url)} is not a database URL; use sqlite:///ledger.sqlite or "
                "postgresql+psycopg://user@host/db",
                source=str(root / "safescale.toml"),
                field="database_url",
            )
        ) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        path = Path(parsed.database)
        if not path.is_absolute():
            return str(parsed.set(database=str(root / path)))
    return url


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL (None for PostgreSQL or an in-memory database)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    if parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def damaged(where: str, exc: BaseException) -> IntegrityError:
    """The one-line error for a database that cannot be read as a ledger (exit status 1)."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return IntegrityError(
        Problem(
            f"the ledger database is damaged or not a ledger ({first}); keep a copy for "
            "investigation and restore it from a backup",
            source=where,
        )
    )


def _is_damage(exc: BaseException) -> bool:
    # A DatabaseError from sqlite3 that is not about locking or our own SQL: a file that is
    # not a database, malformed pages, a missing table. Constraint violations and a lock
    # held past busy_timeout are something else and keep their own type.
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    if isinstance(exc, sqlite3.IntegrityError | sqlite3.ProgrammingError | sqlite3.InterfaceError):
        return False
    return "locked" not in str(exc)


def make_engine(url: str) -> Engine:
    """An engine whose transactions lock the chain head when asked to (``write=True``).

    On SQLite, an error that shows the file is not a readable ledger (not a database,
    malformed, a table gone) becomes an :class:`IntegrityError`: one line, exit status 1.
    """
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        engine = create_engine(url)
        where = str(sqlite_path(url) or url)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Take transaction control from the driver so BEGIN IMMEDIATE is ours to emit.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            # WAL lets readers (verify, log) run while a writer appends; synchronous=FULL
            # makes each commit durable across power loss, not only process crashes.
            try:
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=FULL")
                cur.execute("PRAGMA busy_timeout=120000")
            except sqlite3.DatabaseError as exc:  # raised before SQLAlchemy wraps errors
                if _is_damage(exc):
                    raise damaged(where, exc) from None
                raise
            finally:
                cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            write = conn.get_execution_options().get("write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        @event.listens_for(engine, "handle_error")
        def _on_error(context: Any) -> None:
            if _is_damage(context.original_exception):
                raise damaged(where, context.original_exception) from None

        return engine
    if backend == "postgresql":
        return create_engine(url, pool_pre_ping=True)
    raise UserError(
        Problem(
            f"database {quote(backend)} is not supported; use sqlite or postgresql",
            field="database_url",
        )
    )


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that holds the chain-head lock until it commits or rolls back."""
    with engine.connect() as conn:
        conn = conn.execution_options(write=True)
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
            yield conn


def head(conn: Connection) -> tuple[int, str] | None:
    """``(seq, entry_hash)`` of the last entry, or None for an empty ledger."""
    row = conn.exec_driver_sql(
        "SELECT seq, entry_hash FROM entries ORDER BY seq DESC LIMIT 1"
    ).first()
    return None if row is None else (int(row[0]), str(row[1]))


def insert_rows(conn: Connection, rows: Sequence[Sequence[Any]], head_row: Sequence[Any]) -> None:
    """Insert one transaction: entry rows (in :data:`ENTRY_COLUMNS` order) and its head row
    (:data:`HEAD_COLUMNS`), with the driver's ``executemany``."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    for table, columns, values in (
        ("entries", ENTRY_COLUMNS, list(rows)),
        ("heads", HEAD_COLUMNS, [tuple(head_row)]),
    ):
        marks = ", ".join([mark] * len(columns))
        conn.exec_driver_sql(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", values)


def select_rows(
    conn: Connection, *, kind: str | None = None, model: str | None = None
) -> Iterator[tuple[Any, ...]]:
    """Entries in sequence order, optionally only one kind and/or one model."""
    where, params = [], {}
    if kind is not None:
        where.append("e.kind = :kind")
        params["kind"] = kind
    if model is not None:
        where.append("e.model = :model")
        params["model"] = model
    sql = SELECT_ENTRIES
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY e.seq"
    for row in conn.execute(text(sql), params):
        yield tuple(row)


def current_revision(engine: Engine) -> str | None:
    """The schema revision recorded by Alembic, or None for a database without one."""
    with engine.connect() as conn:
        if not inspect_db(conn).has_table("alembic_version"):
            return None
        row = conn.exec_driver_sql("SELECT version_num FROM alembic_version").first()
    return None if row is None else str(row[0])


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (default :data:`SCHEMA_REVISION`) with Alembic.

    Run at init and whenever a workspace with an older schema is opened; a schema newer than
    this code is refused rather than guessed at.
    """
    from alembic import command
    from alembic.config import Config

    found = current_revision(engine)
    if found is not None and not re.fullmatch(r"\d{4}", found):  # ours are 0001, 0002, ...
        raise damaged(
            str(sqlite_path(str(engine.url)) or "the database"),
            ValueError(f"its schema revision is {quote(found)}, which no safescale wrote"),
        )
    if found is not None and found > SCHEMA_REVISION:
        raise UserError(
            Problem(
                f"the ledger schema is revision {found}, newer than this safescale reads "
                f"({SCHEMA_REVISION}); upgrade safescale to open it",
                field="alembic_version",
            )
        )
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "_migrations"))
    # Under the chain-head lock: of processes opening an older workspace at once, one
    # upgrades it and the others, once they get the lock, find it upgraded.
    with write_transaction(engine) as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
