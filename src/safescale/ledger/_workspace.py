"""The workspace: a folder with a configuration, a records store, artifacts and a key pair.

Layout (``safescale init``)::

    .safescale/
      safescale.toml      configuration (database URL, default policy, key paths, author)
      ledger.sqlite       the entries (unless the configuration names PostgreSQL)
      artifacts/ab/abcd…  content-addressed files, named by their sha256
      keys/ed25519.pem    the signing key (mode 600) and keys/ed25519.pub.pem
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ConfigDict

from safescale._errors import Problem, UserError
from safescale._io import atomic_write_bytes
from safescale.ledger._config import (
    CONFIG_NAME,
    WorkspaceConfig,
    default_author,
    read_config,
    write_config,
)
from safescale.ledger._entry import (
    GENESIS_HASH,
    RECORD_TYPES,
    LedgerEntry,
    format_time,
    header_bytes,
    header_unchecked,
    plain,
)
from safescale.ledger._keys import KeyPair, key_id, load_public_pem, public_pem
from safescale.ledger._store import (
    SCHEMA_REVISION,
    SELECT_ENTRIES,
    current_revision,
    head,
    insert_rows,
    make_engine,
    migrate,
    resolve_url,
    select_rows,
    write_transaction,
)
from safescale.ledger._verify import VerifyReport, verify_ledger, verify_ledger_reference
from safescale.policy import (
    Determination,
    Evidence,
    ModelRecord,
    Record,
    SignOffRecord,
    canonical_json,
)

WORKSPACE_DIR = ".safescale"
EXPORT_VERSION = 1


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
            LedgerEntry.from_row((*r[:8], author, time, kid, r[8], signature)) for r in self.rows
        ]


class LedgerExport(BaseModel):
    """What ``safescale ledger export --json`` writes: enough to verify without our database."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = EXPORT_VERSION
    public_key_pem: str
    key_id: str
    head: str | None
    """Entry hash of the last entry; pins the history."""
    count: int
    entries: list[LedgerEntry]


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
        if (path / CONFIG_NAME).exists():
            raise UserError(
                Problem("a workspace already exists here; use it, or pick another folder",
                        source=str(path / CONFIG_NAME))
            )  # fmt: skip
        config = WorkspaceConfig(
            **({"database_url": database_url} if database_url else {}),
            **({"author": author} if author else {}),
        )
        # The engine first: a bad database URL is refused before anything is written.
        ws = cls(path, config)
        path.mkdir(parents=True, exist_ok=True)
        (path / config.artifacts).mkdir(exist_ok=True)
        keys = path / config.private_key
        if not keys.exists():
            KeyPair.generate().save(keys, path / config.public_key)
        migrate(ws.engine)
        # The configuration is written last: a workspace exists once it is complete.
        write_config(path / CONFIG_NAME, config)
        return ws

    @classmethod
    def find(cls, path: str | os.PathLike[str] | None = None) -> Workspace | None:
        """The workspace at ``path`` (or the default place), or None if there is none."""
        root = _locate(path)
        if not (root / CONFIG_NAME).exists():
            return None
        ws = cls(root, read_config(root / CONFIG_NAME))
        revision = current_revision(ws.engine)
        if revision != SCHEMA_REVISION:
            migrate(ws.engine)
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
            self._keys = KeyPair.load(self.root / self.config.private_key)
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

    def public_key_pem(self) -> str:
        """The public key as PEM text, to hand to outside reviewers."""
        return public_pem(self.public_key())

    # -- artifacts -----------------------------------------------------------------------
    def artifact_path(self, sha256: str) -> Path:
        """Where the artifact with this sha256 lives (two-character fan-out, as git does)."""
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
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
        a crash at any point leaves either all of ``items`` or none of them.
        """
        if not items:
            return None
        for item in items:
            if item.kind not in RECORD_TYPES:
                raise ValueError(f"unknown entry kind {item.kind!r}")
        keys, author = self.keys, self.author
        kid = keys.id
        # Kinds are plain names; an author with quotes or control characters takes the
        # reference encoder for every header of the transaction.
        encode = header_unchecked if plain(author) else header_bytes
        with write_transaction(self.engine) as conn:
            last = head(conn)
            seq, prev = last if last is not None else (0, GENESIS_HASH)
            time = format_time(datetime.now(UTC))
            signed = seq + len(items)
            rows: list[tuple[Any, ...]] = []
            for item in items:
                seq += 1
                psha = hashlib.sha256(item.payload).hexdigest()
                ehash = hashlib.sha256(
                    encode(seq, item.kind, psha, prev, author, time, kid, signed)
                ).hexdigest()
                rows.append(
                    (seq, item.kind, item.record_id, item.model, item.payload, psha, prev, ehash,
                     signed)
                )  # fmt: skip
                prev = ehash
            head_row = (signed, author, time, kid, keys.sign(prev))
            insert_rows(conn, rows, head_row)
        return AppendResult(
            first_seq=rows[0][0], last_seq=signed, head=prev, rows=rows, head_row=head_row
        )

    def append_many(self, records: Sequence[Record]) -> list[LedgerEntry]:
        """Append records (ModelRecord, Evidence, Determination) in one signed transaction."""
        result = self.append_raw([raw_record(r) for r in records])
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
            return [LedgerEntry.from_row(r) for r in select_rows(conn, kind=kind, model=model)]

    def _records(self, kind: str, model: str | None) -> Iterator[Any]:
        with self.engine.connect() as conn:
            for row in select_rows(conn, kind=kind, model=model):
                yield RECORD_TYPES[kind].model_validate_json(bytes(row[4]))

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
    def _raw_rows(self) -> Iterator[tuple[Any, ...]]:
        # The DB-API cursor directly: verification reads every row, and skipping the
        # SQLAlchemy row wrapper halves its cost.
        with self.engine.connect() as conn:
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(SELECT_ENTRIES + " ORDER BY e.seq")
                while batch := cursor.fetchmany(4096):
                    yield from batch
            finally:
                cursor.close()

    def verify(
        self, public_key_pem: str | bytes | None = None, *, reference: bool = False
    ) -> VerifyReport:
        """Re-derive the chain, every signature and every artifact (see :func:`verify_ledger`).

        ``public_key_pem`` checks against another key than the workspace's own (a reviewer's
        copy); ``reference`` uses the plain, slow verifier.
        """
        public = self.public_key() if public_key_pem is None else load_public_pem(public_key_pem)
        check = verify_ledger_reference if reference else verify_ledger
        return check(self._raw_rows(), public, self.root / self.config.artifacts)

    def export(self) -> LedgerExport:
        """Every entry with the public key, for verification without the database."""
        items = self.entries()
        return LedgerExport(
            public_key_pem=self.public_key_pem(),
            key_id=key_id(self.public_key()),
            head=items[-1].entry_hash if items else None,
            count=len(items),
            entries=items,
        )


def verify_export(
    export: LedgerExport | str | bytes, public_key_pem: str | bytes | None = None
) -> VerifyReport:
    """Verify an export (the model or its JSON) without any database.

    Pass the public key you obtained separately as ``public_key_pem``: the key inside an
    export proves only that the export is self-consistent, not who signed it.
    """
    if not isinstance(export, LedgerExport):
        export = LedgerExport.model_validate_json(export)
    public = load_public_pem(public_key_pem or export.public_key_pem)
    rows = (
        (e.seq, e.kind, e.record_id, e.model, e.payload.encode(), e.payload_sha256, e.prev_hash,
         e.entry_hash, e.author, e.time, e.key_id, e.signed_seq, e.signature)
        for e in export.entries
    )  # fmt: skip
    return verify_ledger(rows, public)
