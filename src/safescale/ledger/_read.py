"""Reading a ledger that may have been changed: every stored row is parsed defensively.

A ledger whose rows were edited in the database (a payload that is not JSON, a missing field,
a kind that does not fit its payload, a deleted entry, a text in a number column) must stop a
command with one line naming the entry (:class:`IntegrityError`, exit 1), never a traceback.
Appends also re-derive the chain they extend (:func:`check_chain`), so that a rewritten entry
is not buried under new, validly signed ones.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection

from safescale._errors import IntegrityError, Problem
from safescale._input import one_line
from safescale.ledger._entry import (
    GENESIS_HASH,
    RECORD_TYPES,
    LedgerEntry,
    header_bytes,
    legacy_columns_match,
)
from safescale.ledger._store import SELECT_ENTRIES

FIX = "run `safescale ledger verify` to see every problem, and restore the ledger from a backup"


def damaged_entry(seq: object, what: str) -> IntegrityError:
    """The one-line error for entry ``seq`` of a changed ledger."""
    return IntegrityError(Problem(one_line(f"entry {seq}: {what}; the ledger was changed: {FIX}")))


def _why(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where + ': ' if where else ''}{err['msg']}"


def entry_from_row(row: Any) -> LedgerEntry:
    """:meth:`LedgerEntry.from_row`, or :class:`IntegrityError` naming the entry."""
    try:
        return LedgerEntry.from_row(row)
    except (ValidationError, TypeError, ValueError) as exc:
        why = _why(exc) if isinstance(exc, ValidationError) else str(exc)
        raise damaged_entry(row[0], f"the stored row is not an entry ({why})") from None


def record_from_row(kind: str, row: Any) -> Any:
    """The record of a stored entry row (``COLUMNS`` order), after checking that its payload
    still hashes to the stored ``payload_sha256``; else :class:`IntegrityError`."""
    seq, payload, psha = row[0], row[4], row[5]
    data = payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else payload
    try:
        data = bytes(data)
    except TypeError:
        raise damaged_entry(seq, "the payload is not text") from None
    if hashlib.sha256(data).hexdigest() != psha:
        raise damaged_entry(seq, "the payload does not hash to payload_sha256")
    try:
        return RECORD_TYPES[kind].model_validate_json(data)
    except ValidationError as exc:
        raise damaged_entry(seq, f"the payload is not a {kind} record ({_why(exc)})") from None
    except (ValueError, RecursionError):
        raise damaged_entry(seq, f"the payload is not a {kind} record") from None


def check_chain(conn: Connection, start: int, prev: str) -> tuple[int, str]:
    """Re-derive every entry after ``start`` (whose entry hash is ``prev``): numbering, payload
    hash, link and entry hash; and no transaction head row past the last entry. Returns the last
    entry's ``(seq, entry_hash)``; the first problem is an :class:`IntegrityError`."""
    expected = start + 1
    sha256 = hashlib.sha256
    for row in conn.exec_driver_sql(f"{SELECT_ENTRIES} WHERE e.seq > {int(start)} ORDER BY e.seq"):
        seq, kind, rid, model, payload, psha, prev_hash, ehash, author, time, kid, sseq, _, v = row
        if seq != expected:
            raise damaged_entry(expected, f"missing (the next entry is {seq})")
        try:
            data = payload if type(payload) is bytes else bytes(payload)
            if sha256(data).hexdigest() != psha:
                raise damaged_entry(seq, "the payload does not hash to payload_sha256")
            if prev_hash != prev:
                raise damaged_entry(seq, "prev_hash does not link to the entry before")
            header = header_bytes(
                seq, kind, psha, prev_hash, author, time, kid, sseq, rid, model, v
            )
        except (TypeError, ValueError):
            raise damaged_entry(seq, "a column no longer holds what was hashed") from None
        if sha256(header).hexdigest() != ehash:
            raise damaged_entry(seq, "the header does not hash to entry_hash")
        if v == 1 and not legacy_columns_match(kind, rid, model, data):
            raise damaged_entry(seq, "record_id or model no longer says what the payload says")
        expected, prev = seq + 1, ehash
    last = expected - 1
    stray = conn.exec_driver_sql(f"SELECT MIN(seq) FROM heads WHERE seq > {int(last)}").scalar()
    if stray is not None:
        raise damaged_entry(stray, "a transaction head row with no entry (its entries were "
                            "deleted)")  # fmt: skip
    return last, prev


class CheckedPrefix:
    """The part of a ledger this process has re-derived before reading records from it.

    A command that reads records (a report, `compute show`, `ledger log`, an export) trusts
    the ``kind``, ``model`` and ``record_id`` columns to select them: one changed in the
    database would move a record to another model, or out of a listing, without a word. So
    the first read re-derives the chain from the first entry (:func:`check_chain`: hashes,
    links, numbering, and the version-1 columns against their payloads; not the signatures,
    which ``ledger verify`` checks), about 4 microseconds an entry, and later reads only the
    entries appended since.
    """

    def __init__(self) -> None:
        self.last: tuple[int, str] | None = None

    def check(self, conn: Connection) -> None:
        """Re-derive what was not yet; the first problem is an :class:`IntegrityError`."""
        start, prev = 0, GENESIS_HASH
        if self.last is not None:
            seq, entry_hash = self.last
            found = conn.exec_driver_sql(
                f"SELECT entry_hash FROM entries WHERE seq = {int(seq)}"
            ).scalar()
            if found == entry_hash:
                start, prev = seq, entry_hash
        last, head = check_chain(conn, start, prev)
        self.last = (last, head) if last else None
