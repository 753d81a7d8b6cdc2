"""Reading a stored ledger for the fast verification pass, on one core or two.

:func:`scan_clean` runs :func:`~safescale.ledger._verify.check_clean_run` over the
``entries`` and ``heads`` tables through the DB-API cursors. A large SQLite ledger is cut in two
contiguous ranges at a transaction head near its middle: a forked child process checks
entries 1 to ``split`` while this process checks ``split + 1`` to the end, starting from the
entry hash stored at ``split``. The two runs join when the child's run ends at ``split`` on
that same stored hash, so together they check exactly what one pass over the whole chain
checks (each link, hash and signature, each transaction inside one range). Anything else (no
clean run in either range, a child that fails) gives None, and the caller falls back to the
diagnosing verifier.

The child is forked only from a process with a single thread and no open SQLite connection
(the pool is emptied first: SQLite's per-process lock bookkeeping must not be inherited), and
it opens its own connection, never creating a database file.
"""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection as Pipe
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from safescale._errors import IntegrityError
from safescale.ledger._store import ENTRY_COLUMNS, HEAD_COLUMNS
from safescale.ledger._verify import CleanRun, VerifyProblem, check_clean_run

PARALLEL_MIN_ENTRIES = 200_000
"""Ledgers at least this long are checked in two processes where two cores are free to use
(below it, starting a process costs more than it saves)."""

T = TypeVar("T")

_ENTRIES = f"SELECT {', '.join(ENTRY_COLUMNS)} FROM entries"
_HEADS = f"SELECT {', '.join(HEAD_COLUMNS)} FROM heads"


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _can_fork() -> bool:
    # Forking a process with other threads can leave the child holding a lock no thread
    # will release; with one thread there is none.
    return (
        "fork" in multiprocessing.get_all_start_methods()
        and threading.active_count() == 1
        and _cores() >= 2
    )


def split_point(engine: Engine) -> int | None:
    """A transaction head near the middle of a ledger long enough to be split, else None."""
    with engine.connect() as conn:
        last = conn.exec_driver_sql("SELECT MAX(seq) FROM entries").scalar()
        if type(last) is not int or last < PARALLEL_MIN_ENTRIES:
            return None
        found = conn.exec_driver_sql(
            "SELECT seq FROM entries WHERE seq <= ? AND signed_seq = seq ORDER BY seq DESC LIMIT 1",
            (last // 2,),
        ).scalar()
    # Not too close to either end: otherwise one process does nearly all of the work.
    return found if type(found) is int and found >= last // 4 else None


def _check_range(
    cursor: Any,
    heads_cursor: Any,
    public: Ed25519PublicKey,
    pins: Mapping[int, str],
    split: int | None,
    upto: bool,
    after: tuple[int, str],
) -> CleanRun | None:
    where = "" if split is None else (" WHERE seq <= ?" if upto else " WHERE seq > ?")
    params: tuple[int, ...] = () if split is None else (split,)
    cursor.execute(_ENTRIES + where + " ORDER BY seq", params)
    heads_cursor.execute(_HEADS + where + " ORDER BY seq", params)
    return check_clean_run(cursor, heads_cursor, public, dict(pins), after)


def _child(database: str, split: int, public_raw: bytes, pins: dict[int, str], out: Pipe) -> None:
    """Check entries 1 to ``split`` in a forked child; send the run (or None) back."""
    run: CleanRun | None = None
    try:
        uri = f"file:{urllib.parse.quote(database)}?mode=rw"
        db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=120)
        try:
            db.execute("BEGIN")  # one snapshot for both tables
            public = Ed25519PublicKey.from_public_bytes(public_raw)
            run = _check_range(db.cursor(), db.cursor(), public, pins, split, True, (0, "0" * 64))
        finally:
            db.close()
    except Exception:  # any failure here: the parent's fallback names it
        run = None
    try:
        out.send(run)
        out.close()
    except OSError:  # the parent stopped waiting (its own range was not clean)
        pass


def scan_clean(
    engine: Engine,
    database: Path | None,
    public: Ed25519PublicKey,
    pins: Mapping[int, str],
    alongside: Callable[[], T],
) -> tuple[CleanRun | None, T]:
    """The fast pass over the whole stored ledger (one clean run, or None), and the result of
    ``alongside()``, run in a thread meanwhile (SQLite's page check, which runs in C without
    the GIL, so on a free core it costs no time).

    ``database`` is the SQLite file (None for PostgreSQL, which is read in one process).
    """
    split = split_point(engine) if database is not None and _can_fork() else None
    child, receiver = _fork_first_range(engine, database, split, public, pins)
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:  # after the fork: no thread crosses it
            other = pool.submit(alongside)
            run = _second_range(engine, public, pins, split, child, receiver)
            return run, other.result()
    finally:
        if child is not None and receiver is not None:
            receiver.close()
            child.join(timeout=5)
            if child.is_alive():
                child.kill()
                child.join()


def _fork_first_range(
    engine: Engine,
    database: Path | None,
    split: int | None,
    public: Ed25519PublicKey,
    pins: Mapping[int, str],
) -> tuple[BaseProcess | None, Pipe | None]:
    """Start the child that checks entries 1 to ``split`` (none when ``split`` is None)."""
    if split is None or database is None:
        return None, None
    engine.dispose()  # no open connection goes across the fork
    # (multiprocessing flushes the standard streams before it forks, so nothing buffered is
    # written twice; a test holds it to that.)
    ctx = multiprocessing.get_context("fork")
    receiver, sender = ctx.Pipe(duplex=False)
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    child = ctx.Process(
        target=_child, args=(str(database), split, raw, dict(pins), sender), daemon=True
    )
    child.start()
    sender.close()
    return child, receiver


def _second_range(
    engine: Engine,
    public: Ed25519PublicKey,
    pins: Mapping[int, str],
    split: int | None,
    child: BaseProcess | None,
    receiver: Pipe | None,
) -> CleanRun | None:
    """Check the entries after ``split`` (all of them when None) here, then join the
    child's run of the ones before."""
    with engine.connect() as conn, conn.begin():
        dbapi: Any = conn.connection.dbapi_connection
        entries, heads = dbapi.cursor(), dbapi.cursor()
        try:
            after: tuple[int, str] = (0, "0" * 64)
            if split is not None:
                entries.execute("SELECT entry_hash FROM entries WHERE seq = ?", (split,))
                found = entries.fetchone()
                if found is None or type(found[0]) is not str:
                    return None
                after = (split, found[0])
            run = _check_range(entries, heads, public, pins, split, False, after)
        finally:
            entries.close()
            heads.close()
    if child is None or receiver is None or run is None:
        return run if child is None else None
    try:
        first = receiver.recv()
    except EOFError:  # the child died
        return None
    if not isinstance(first, CleanRun) or (first.last, first.head) != after:
        return None
    refs = {name: list(seqs) for name, seqs in first.refs.items()}
    for name, seqs in run.refs.items():
        refs.setdefault(name, []).extend(seqs)
    return CleanRun(0, run.last, run.head, first.signatures + run.signatures, refs)


def sqlite_problems(engine: Engine) -> list[VerifyProblem]:
    """SQLite's own check of the database file, one problem per finding (at most five).

    Verification reads the tables, not the indexes that `ledger log --model` and the reports
    go through, nor free pages: SQLite's check covers those. ``integrity_check``, not
    ``quick_check``: only it compares each index with its table (a changed byte in the model
    index sent `ledger log --model m9` to m3's entries and passed ``quick_check``). A page too
    damaged for it to walk stops it with an error; ``quick_check`` then says which.
    """
    for check in ("integrity_check", "quick_check"):
        try:
            with engine.connect() as conn:
                rows = conn.exec_driver_sql(f"PRAGMA {check}(5)").all()
        except (DBAPIError, sqlite3.DatabaseError, IntegrityError):  # IntegrityError: the
            continue  # engine's own name for a damaged file (see ``damaged``)
        # Each answer can span lines ("*** in database main ***\nPage 4: ..."): one line each.
        found = [" ".join(str(r[0]).split()) for r in rows]
        if found == ["ok"]:
            return []
        return [VerifyProblem(None, "database", f"SQLite {check}: {f}") for f in found]
    return [VerifyProblem(None, "database", "SQLite cannot check the file: it is damaged")]
