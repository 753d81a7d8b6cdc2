"""The workspace: a folder with a configuration, a records store, artifacts and a key pair.

Layout (``safescale init``)::

    .safescale/
      safescale.toml      configuration (database URL, default policy, key paths, author)
      ledger.sqlite       the entries (unless the configuration names PostgreSQL)
      artifacts/ab/abcd…  content-addressed files, named by their sha256
      keys/ed25519.pem    the signing key (mode 600) and keys/ed25519.pub.pem
      checkpoint.json     the latest signed checkpoint (entry count and head hash), rewritten
                          after every append: the ledger must extend it
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from safescale._errors import IntegrityError, Problem, UserError
from safescale._input import is_sha256
from safescale._io import atomic_write_bytes
from safescale.ledger._checkpoint import (
    CHECKPOINT_NAME,
    Checkpoint,
    check_extends_checkpoint,
    given_anchors,
    sign_checkpoint,
    store_checkpoint,
)
from safescale.ledger._config import (
    CONFIG_NAME,
    WorkspaceConfig,
    default_author,
    read_config,
    write_config,
)
from safescale.ledger._entry import (
    ENTRY_VERSION,
    GENESIS_HASH,
    RECORD_TYPES,
    LedgerEntry,
    format_time,
    header_bytes,
    header_unchecked,
    plain,
)
from safescale.ledger._export import LedgerExport
from safescale.ledger._init import (
    check_init_paths,
    check_no_ledger,
    creation_failed,
    existing_paths,
    remove_new,
)
from safescale.ledger._keys import KeyPair, key_id, load_public_pem, public_pem
from safescale.ledger._parents import parents_recorded, recorded
from safescale.ledger._read import (
    CheckedPrefix,
    entry_from_row,
    record_from_row,
)
from safescale.ledger._scan import scan_clean, sqlite_problems
from safescale.ledger._store import (
    ENTRY_COLUMNS,
    HEAD_COLUMNS,
    SCHEMA_REVISION,
    SELECT_ENTRIES,
    current_revision,
    damaged,
    head,
    insert_rows,
    make_engine,
    migrate,
    resolve_url,
    select_rows,
    sqlite_path,
    write_transaction,
)
from safescale.ledger._verify import (
    Anchor,
    VerifyProblem,
    VerifyReport,
    anchor_pins,
    clean_report,
    verify_ledger,
    verify_ledger_reference,
)
from safescale.policy import (
    Determination,
    Evidence,
    ModelRecord,
    Record,
    SignOffRecord,
    canonical_json,
)

WORKSPACE_DIR = ".safescale"


class RawRecord(NamedTuple):
    """A record already in canonical JSON, ready to append (see :meth:`Workspace.append_raw`)."""

    kind: str
    """``model``, ``evidence`` or ``determination``."""
    record_id: str
    model: str | None
    """The model the record is about (None for none)."""
    payload: bytes
    """Canonical JSON of the record."""


@dataclass(frozen=True)
class AppendResult:
    """What one append transaction wrote."""

    first_seq: int
    last_seq: int
    """The transaction's head, whose signature covers every entry written."""
    head: str
    """Entry hash of the head."""
    rows: Sequence[Sequence[Any]] = field(repr=False)
    """The stored entry rows (columns in ``ENTRY_COLUMNS`` order)."""
    head_row: Sequence[Any] = field(repr=False)
    """The stored head row (``HEAD_COLUMNS``: seq, author, time, key id, signature)."""

    def entries(self) -> list[LedgerEntry]:
        """The entries written, each with its head's fields."""
        _, author, time, kid, signature = self.head_row
        return [
            LedgerEntry.from_row((*r[:8], author, time, kid, r[8], signature, r[9]))
            for r in self.rows
        ]


def raw_record(record: Record) -> RawRecord:
    """Wrap a ModelRecord, Evidence or Determination for :meth:`Workspace.append_raw`."""
    if isinstance(record, ModelRecord):
        return RawRecord("model", record.id, record.id, canonical_json(record))
    if isinstance(record, Evidence):
        return RawRecord("evidence", record.id, record.model, canonical_json(record))
    if isinstance(record, Determination):
        return RawRecord("determination", record.id, record.model, canonical_json(record))
    if isinstance(record, SignOffRecord):
        return RawRecord("signoff", record.id, record.model, canonical_json(record))
    raise TypeError(f"cannot append a {type(record).__name__}")


def _locate(path: str | os.PathLike[str] | None) -> Path:
    # Resolution order: explicit path, $SAFESCALE_HOME, ./.safescale. A folder that holds a
    # .safescale workspace stands for it, so `--workspace .` works as well.
    if path is None:
        env = os.environ.get("SAFESCALE_HOME")
        path = Path(env) if env else Path.cwd() / WORKSPACE_DIR
    path = Path(path)
    if not (path / CONFIG_NAME).exists() and (path / WORKSPACE_DIR / CONFIG_NAME).exists():
        path = path / WORKSPACE_DIR
    return path


class Workspace:
    """An open workspace. Create one with :meth:`init`, reach one with :meth:`open`."""

    def __init__(self, root: Path, config: WorkspaceConfig) -> None:
        self.root = root
        self.config = config
        self._checked = CheckedPrefix()
        """How far this object has re-derived the chain, for reads and appends alike."""
        self.url = resolve_url(config.database_url, root)
        self.engine = make_engine(self.url)
        self._keys: KeyPair | None = None
        self._author: str | None = None

    # -- creating and opening ------------------------------------------------------------
    @classmethod
    def init(
        cls,
        path: str | os.PathLike[str],
        *,
        database_url: str | None = None,
        author: str | None = None,
    ) -> Workspace:
        """Create a workspace in ``path`` (the workspace folder itself); refuse to overwrite."""
        path = Path(path)
        config = WorkspaceConfig(
            **({"database_url": database_url} if database_url else {}),
            **({"author": author} if author else {}),
        )
        check_init_paths(path, config)  # a workspace already there, or paths in the way
        # The engine first: a bad database URL is refused before anything is written.
        ws = cls(path, config)
        check_no_ledger(ws.engine, sqlite_path(ws.url))
        before = existing_paths(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
            (path / config.artifacts).mkdir(exist_ok=True)
            keys = path / config.private_key
            if not keys.exists():
                KeyPair.generate().save(keys, path / config.public_key)
            migrate(ws.engine)
            ws._write_checkpoint(0, GENESIS_HASH)
            # The configuration is written last: a workspace exists once it is complete.
            write_config(path / CONFIG_NAME, config)
        except (OSError, SQLAlchemyError) as exc:
            ws.close()  # nothing half-made is left: what this call created is removed again
            remove_new(path, before)
            raise creation_failed(path, exc) from None
        return ws

    @classmethod
    def find(cls, path: str | os.PathLike[str] | None = None) -> Workspace | None:
        """The workspace at ``path`` (or the default place), or None if there is none."""
        root = _locate(path)
        if not (root / CONFIG_NAME).exists():
            return None
        ws = cls(root, read_config(root / CONFIG_NAME))
        database = sqlite_path(ws.url)
        # Connecting would create an empty database in place of a deleted one, and verify
        # would then find a valid ledger of 0 entries: refuse to open instead.
        if database is not None and not database.exists():
            raise IntegrityError(
                Problem("the ledger database is missing; restore it from a backup (it is never "
                        "re-created, so that a deleted ledger cannot pass for an empty one)",
                        source=str(database))
            )  # fmt: skip
        revision = current_revision(ws.engine)
        if revision is None:  # an emptied file or another database: not ours to create
            ws.close()
            raise damaged(str(database or ws.url), ValueError("no ledger schema in it"))
        if revision != SCHEMA_REVISION:
            migrate(ws.engine)
            # A workspace from before checkpoints: anchor what it holds now (when the
            # signing key is here; a reviewer's copy without it is verified without one).
            if not ws.checkpoint_path.exists() and (root / ws.config.private_key).exists():
                last = ws._last()
                ws._write_checkpoint(*(last or (0, GENESIS_HASH)))
        return ws

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None) -> Workspace:
        """The workspace at ``path``, ``$SAFESCALE_HOME`` or ``./.safescale``; else a UserError."""
        ws = cls.find(path)
        if ws is None:
            raise UserError(
                Problem(
                    "no safescale workspace here; run `safescale init` first "
                    "(or pass --workspace / set SAFESCALE_HOME)",
                    source=str(_locate(path)),
                )
            )
        return ws

    def close(self) -> None:
        """Release database connections."""
        self.engine.dispose()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- identity ------------------------------------------------------------------------
    @property
    def keys(self) -> KeyPair:
        """The signing key pair (read on first use)."""
        if self._keys is None:
            keys = KeyPair.load(self.root / self.config.private_key)
            public = self.root / self.config.public_key
            if public.exists() and key_id(self.public_key()) != keys.id:
                # What is signed now would fail verification against the published key.
                raise IntegrityError(
                    Problem(f"is not the public half of the signing key {keys.id}: restore the "
                            "workspace's own public key (nothing was signed)", source=str(public))
                )  # fmt: skip
            self._keys = keys
        return self._keys

    @property
    def author(self) -> str:
        """Who is recorded as writing new entries."""
        if self._author is None:
            self._author = default_author(self.config)
        return self._author

    def public_key(self) -> Ed25519PublicKey:
        """The public key from ``keys/`` (no private key needed, so reviewers can verify)."""
        path = self.root / self.config.public_key
        try:
            return load_public_pem(path.read_bytes(), source=str(path))
        except FileNotFoundError:
            return self.keys.public
        except IsADirectoryError:
            raise UserError(
                Problem("is a folder, not the public key; restore the workspace's public key "
                        "file", source=str(path))
            ) from None  # fmt: skip

    def public_key_pem(self) -> str:
        """The public key as PEM text, to hand to outside reviewers."""
        return public_pem(self.public_key())

    # -- artifacts -----------------------------------------------------------------------
    def artifact_path(self, sha256: str) -> Path:
        """Where the artifact with this sha256 lives (two-character fan-out, as git does)."""
        if not is_sha256(sha256):
            raise UserError(Problem(f"{sha256!r} is not a sha256 (64 lowercase hex digits)"))
        return self.root / self.config.artifacts / sha256[:2] / sha256

    def add_artifact(self, data: bytes | Path) -> str:
        """Store bytes or a file's content, named by its sha256; returns the sha256."""
        content = Path(data).read_bytes() if isinstance(data, Path) else data
        digest = hashlib.sha256(content).hexdigest()
        target = self.artifact_path(digest)
        if not target.exists():
            atomic_write_bytes(target, content)
        return digest

    # -- appending -----------------------------------------------------------------------
    def append_raw(self, items: Sequence[RawRecord]) -> AppendResult | None:
        """Append canonical-JSON records in one transaction; the last one is signed.

        The chain head is locked for the whole transaction, so concurrent writers queue up;
        a crash at any point leaves either all of ``items`` or none of them. The ledger must
        still extend the workspace checkpoint (else :class:`IntegrityError`, nothing written),
        and the checkpoint moves to the new head once the transaction has committed.
        """
        return self._append(items, None)

    def _append(
        self, items: Sequence[RawRecord], check: Callable[[Connection], None] | None
    ) -> AppendResult | None:
        if not items:
            return None
        for item in items:
            if item.kind not in RECORD_TYPES:
                raise ValueError(f"unknown entry kind {item.kind!r}")
        keys, author = self.keys, self.author
        kid = keys.id
        # Kinds are plain names; an author with quotes or control characters, or a record id
        # or model that has them, takes the reference encoder.
        fast = plain(author) and all(
            plain(i.record_id) and (i.model is None or plain(i.model)) for i in items
        )
        with write_transaction(self.engine) as conn:
            # Re-derive what was written since this object last did (everything, in a new
            # process; from the start again if the ledger was cut), so a rewritten entry is
            # never buried under new, signed ones.
            self._checked.check(conn)
            last = self._checked.last
            self._check_extends_checkpoint(conn, last)
            if check is not None:
                check(conn)
            seq, prev = last if last is not None else (0, GENESIS_HASH)
            time = format_time(datetime.now(UTC))
            signed = seq + len(items)
            rows: list[tuple[Any, ...]] = []
            for item in items:
                seq += 1
                rid, model = item.record_id, item.model
                psha = hashlib.sha256(item.payload).hexdigest()
                header = (
                    header_unchecked(seq, item.kind, psha, prev, author, time, kid, signed, rid,
                                     model)
                    if fast
                    else header_bytes(seq, item.kind, psha, prev, author, time, kid, signed, rid,
                                      model)
                )  # fmt: skip
                ehash = hashlib.sha256(header).hexdigest()
                row = (seq, item.kind, rid, model, item.payload, psha, prev, ehash, signed)
                rows.append((*row, ENTRY_VERSION))
                prev = ehash
            head_row = (signed, author, time, kid, keys.sign(prev))
            insert_rows(conn, rows, head_row)
        # After the commit: a crash before this line leaves an older checkpoint, which the
        # ledger still extends; written before, it could name entries that never committed.
        self._write_checkpoint(signed, prev, time)
        self._checked.last = (signed, prev)
        return AppendResult(
            first_seq=rows[0][0], last_seq=signed, head=prev, rows=rows, head_row=head_row
        )

    def append_new_model(self, record: ModelRecord) -> LedgerEntry:
        """Append a ModelRecord whose id is not recorded yet (and whose parent, if it names
        one, is), checked inside the write transaction: of concurrent writers of the same new
        id, exactly one records it; the others get a :class:`UserError`."""

        def check(conn: Connection) -> None:
            if recorded(conn, record.id):
                raise UserError(Problem(f"model {record.id!r} is already recorded; use a new id",
                                        field="--model"))  # fmt: skip
            parents_recorded(conn, [record])

        result = self._append([raw_record(record)], check)
        assert result is not None
        return result.entries()[0]

    # -- checkpoints ---------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        """The workspace's own latest checkpoint (``checkpoint.json``)."""
        return self.root / CHECKPOINT_NAME

    def _last(self) -> tuple[int, str] | None:
        with self.engine.connect() as conn:
            return head(conn)

    def _write_checkpoint(self, count: int, head_hash: str, time: str | None = None) -> None:
        keys = self.keys
        checkpoint = sign_checkpoint(
            keys, ledger_key_id=keys.id, count=count, head=head_hash,
            time=time or format_time(datetime.now(UTC)),
        )  # fmt: skip
        store_checkpoint(self.checkpoint_path, checkpoint)

    def _check_extends_checkpoint(self, conn: Connection, last: tuple[int, str] | None) -> None:
        check_extends_checkpoint(conn, self.checkpoint_path, last)

    def checkpoint(self, signer: KeyPair | None = None) -> Checkpoint:
        """Verify the ledger, then sign a checkpoint of it (with ``signer``, or the ledger's
        key) and move the workspace checkpoint to it.

        Refuses (:class:`IntegrityError`) a ledger that does not verify, except for a missing or
        unreadable workspace checkpoint, which this writes anew (after restoring a backup, or a
        power loss while it was being replaced).
        """
        report = self.verify()
        name = str(self.checkpoint_path)
        lost = (f"{name} is missing", f"{name} is not a checkpoint")
        blocking = [p for p in report.problems if not p.message.startswith(lost)]
        if blocking:
            raise IntegrityError(
                Problem(f"the ledger does not verify ({blocking[0]}); run `safescale ledger "
                        "verify` to see every problem: nothing was signed")
            )  # fmt: skip
        count, last = report.entries, report.head or GENESIS_HASH
        time = format_time(datetime.now(UTC))
        self._write_checkpoint(count, last, time)
        if signer is None:
            signer = self.keys
        return sign_checkpoint(
            signer, ledger_key_id=key_id(self.public_key()), count=count, head=last, time=time
        )

    def append_many(self, records: Sequence[Record]) -> list[LedgerEntry]:
        """Append records (ModelRecord, Evidence, Determination) in one signed transaction."""
        models = [r for r in records if isinstance(r, ModelRecord) and r.parent is not None]
        check = (lambda conn: parents_recorded(conn, records)) if models else None
        result = self._append([raw_record(r) for r in records], check)
        return [] if result is None else result.entries()

    def append(self, record: Record) -> LedgerEntry:
        """Append one record in its own signed transaction."""
        return self.append_many([record])[0]

    def append_model(self, record: ModelRecord) -> LedgerEntry:
        """Append a ModelRecord."""
        return self.append(record)

    def append_evidence(self, record: Evidence) -> LedgerEntry:
        """Append an Evidence record."""
        return self.append(record)

    def append_determination(self, record: Determination) -> LedgerEntry:
        """Append a Determination."""
        return self.append(record)

    # -- reading -------------------------------------------------------------------------
    def entries(self, *, kind: str | None = None, model: str | None = None) -> list[LedgerEntry]:
        """Entries in sequence order, optionally of one kind and/or about one model."""
        with self.engine.connect() as conn:
            self._checked.check(conn)
            return [entry_from_row(r) for r in select_rows(conn, kind=kind, model=model)]

    def _records(self, kind: str, model: str | None) -> Iterator[Any]:
        with self.engine.connect() as conn:
            self._checked.check(conn)
            for row in select_rows(conn, kind=kind, model=model):
                yield record_from_row(kind, row)

    def models(self) -> list[ModelRecord]:
        """Model records in ledger order; a model recorded again is listed once, as last written."""
        latest: dict[str, ModelRecord] = {}
        for record in self._records("model", None):
            latest[record.id] = record
        return list(latest.values())

    def evidence(self, model: str | None = None) -> list[Evidence]:
        """Evidence records in ledger order, optionally about one model."""
        return list(self._records("evidence", model))

    def determinations(self, model: str | None = None) -> list[Determination]:
        """Determinations in ledger order, optionally about one model."""
        return list(self._records("determination", model))

    def sign_offs(self, determination: str | None = None) -> list[SignOffRecord]:
        """Sign-offs in ledger order, optionally for one determination."""
        return [
            s
            for s in self._records("signoff", None)
            if determination is None or s.determination == determination
        ]

    def head(self) -> str | None:
        """Entry hash of the last entry (None for an empty ledger): pins the history."""
        with self.engine.connect() as conn:
            last = head(conn)
        return None if last is None else last[1]

    def count(self) -> int:
        """Number of entries."""
        with self.engine.connect() as conn:
            return int(conn.exec_driver_sql("SELECT COUNT(*) FROM entries").scalar_one())

    # -- verifying and exporting ---------------------------------------------------------
    def _raw_rows_reference(self) -> Iterator[tuple[Any, ...]]:
        """Every entry joined to its head row (:data:`SELECT_ENTRIES`), in sequence order."""
        with self.engine.connect() as conn:
            for row in conn.exec_driver_sql(SELECT_ENTRIES + " ORDER BY e.seq"):
                yield tuple(row)

    def _raw_rows(self) -> Iterator[tuple[Any, ...]]:
        """The rows of :meth:`_raw_rows_reference`, read faster (a test holds them equal).

        Verification reads every row, so this goes to the DB-API cursors directly (skipping
        SQLAlchemy's row wrapper halves the cost), and reads the heads in a second cursor,
        merged in sequence order, instead of joining a head row to every entry: a
        transaction's author, time, key id and signature are then read once, not once per
        entry. An entry whose head is not next in order (only in a changed ledger) is looked
        up, which gives what the join gives. One read transaction keeps both on one snapshot.
        """
        entry_sql = f"SELECT {', '.join(ENTRY_COLUMNS)} FROM entries ORDER BY seq"
        head_sql = f"SELECT {', '.join(HEAD_COLUMNS)} FROM heads"
        missing = (None, None, None, None, None)
        with self.engine.connect() as conn, conn.begin():
            dbapi = conn.connection.dbapi_connection
            mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
            entries_cur, heads_cur, lookup = (dbapi.cursor() for _ in range(3))  # type: ignore[union-attr]
            try:
                heads_cur.execute(head_sql + " ORDER BY seq")
                entries_cur.execute(entry_sql)
                h = heads_cur.fetchone()
                while batch := entries_cur.fetchmany(4096):
                    for seq, kind, rid, model, payload, psha, prev, ehash, sseq, v in batch:
                        if type(sseq) is int:
                            while h is not None and h[0] < sseq:
                                h = heads_cur.fetchone()
                        if h is None or h[0] != sseq or type(sseq) is not int:
                            lookup.execute(f"{head_sql} WHERE seq = {mark}", (sseq,))
                            found = lookup.fetchone() or missing
                        else:
                            found = h
                        yield (seq, kind, rid, model, payload, psha, prev, ehash,
                               found[1], found[2], found[3], sseq, found[4], v)  # fmt: skip
            except sqlite3.DatabaseError as exc:
                # SQLAlchemy's error handling does not see these cursors.
                if "locked" in str(exc):
                    raise
                raise damaged(str(sqlite_path(self.url)), exc) from None
            finally:
                for cursor in (entries_cur, heads_cur, lookup):
                    cursor.close()

    def _verify_clean(
        self, public: Ed25519PublicKey, artifacts: Path, anchors: Sequence[Anchor]
    ) -> tuple[VerifyReport | None, list[VerifyProblem]]:
        """The report of a ledger that passes the fast pass (:func:`scan_clean`), or None;
        and SQLite's page check, run meanwhile."""
        pins = anchor_pins(anchors)
        if pins is None:
            return None, self._page_problems()
        try:
            run, pages = scan_clean(
                self.engine, sqlite_path(self.url), public, pins, self._page_problems
            )
        except sqlite3.DatabaseError as exc:  # SQLAlchemy's error handling skips DB-API cursors
            if "locked" in str(exc):
                raise
            raise damaged(str(sqlite_path(self.url)), exc) from None
        if run is None:
            return None, pages
        return clean_report(run, public, artifacts, anchors), pages

    def verify(
        self,
        public_key_pem: str | bytes | None = None,
        *,
        reference: bool = False,
        checkpoints: Sequence[tuple[str, Checkpoint]] = (),
        checkpoint_key_pem: str | bytes | None = None,
    ) -> VerifyReport:
        """Re-derive the chain, every signature and every artifact (see :func:`verify_ledger`),
        and check that the ledger extends the workspace checkpoint and each of ``checkpoints``
        (``(name, checkpoint)`` pairs, e.g. files an auditor kept).

        ``public_key_pem`` checks against another key than the workspace's own (a reviewer's
        copy); ``checkpoint_key_pem`` is the public key that signed ``checkpoints`` when it is
        not the ledger's; ``reference`` uses the plain, slow verifier.
        """
        public = self.public_key() if public_key_pem is None else load_public_pem(public_key_pem)
        ledger_key = key_id(public)
        anchors: list[Anchor] = []
        problems: list[VerifyProblem] = []
        name = str(self.checkpoint_path)
        try:
            saved = Checkpoint.model_validate_json(self.checkpoint_path.read_bytes())
        except FileNotFoundError:
            problems.append(VerifyProblem(None, "checkpoint", f"{name} is missing: the ledger "
                                          "cannot be checked for removed entries; if it was "
                                          "lost, run `safescale ledger checkpoint`"))  # fmt: skip
        except (OSError, ValueError):
            problems.append(VerifyProblem(None, "checkpoint", f"{name} is not a checkpoint"))
        else:
            found = saved.problems(public, ledger_key, name)
            problems.extend(found)
            if not found:
                anchors.append(saved.anchor(name))
        signer = public if checkpoint_key_pem is None else load_public_pem(checkpoint_key_pem)
        found, given = given_anchors(checkpoints, signer, ledger_key)
        problems.extend(found)
        anchors.extend(given)
        artifacts = self.root / self.config.artifacts
        if reference:
            problems.extend(self._page_problems())
            report = verify_ledger_reference(self._raw_rows_reference(), public, artifacts, anchors)
        else:
            clean, pages = self._verify_clean(public, artifacts, anchors)
            problems.extend(pages)
            # Anything not clean is re-read by the diagnosing verifier, which names it.
            report = clean or verify_ledger(self._raw_rows(), public, artifacts, anchors)
        problems.extend(report.problems)
        problems.extend(self._stray_heads(report.signatures))
        if not problems and report.head is not None:
            # Everything a read re-derives was derived here: reads after it (an export's)
            # re-derive only what is appended later.
            self._checked.last = (report.entries, report.head)
        return replace(report, ok=not problems, problems=tuple(problems))

    def _page_problems(self) -> list[VerifyProblem]:
        if sqlite_path(self.url) is None:
            return []
        return sqlite_problems(self.engine)

    def _stray_heads(self, signatures: int) -> list[VerifyProblem]:
        # Verification reads entries (heads joined to them); a head row that no entry names
        # as its own is what is left of a transaction whose entries were deleted. Counting is
        # cheap; the rows are looked up only when the counts disagree.
        with self.engine.connect() as conn:
            n_heads = conn.exec_driver_sql("SELECT COUNT(*) FROM heads").scalar_one()
            if n_heads <= signatures:
                return []
            stray = conn.exec_driver_sql(
                "SELECT h.seq FROM heads h LEFT JOIN entries e ON e.seq = h.seq "
                "WHERE e.seq IS NULL OR e.signed_seq <> h.seq ORDER BY h.seq"
            ).all()
        return [
            VerifyProblem(
                int(r[0]),
                "heads",
                "a transaction head row with no entry (its entries were deleted)",
            )
            for r in stray
        ]

    def export(self) -> LedgerExport:
        """Every entry with the public key and a checkpoint signed now, for verification
        without the database. Refuses (:class:`IntegrityError`) a ledger that does not verify:
        the new checkpoint would vouch for a ledger cut short or rewritten."""
        report = self.verify()
        if not report.ok:
            raise IntegrityError(
                Problem(f"the ledger does not verify ({report.problems[0]}); run `safescale "
                        "ledger verify` to see every problem: nothing was exported")
            )  # fmt: skip
        items = self.entries()
        last = items[-1].entry_hash if items else None
        ledger_key = key_id(self.public_key())
        now = format_time(datetime.now(UTC))
        signed = sign_checkpoint(self.keys, ledger_key_id=ledger_key, count=len(items),
                                 head=last or GENESIS_HASH, time=now)  # fmt: skip
        return LedgerExport(public_key_pem=self.public_key_pem(), key_id=ledger_key, head=last,
                            count=len(items), checkpoint=signed, entries=items)  # fmt: skip
