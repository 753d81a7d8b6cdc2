"""One ledger entry: its header, how its hash is derived, and how it is signed.

An entry wraps one record's canonical JSON (the payload). Its *header* names the sequence
number, the record kind, the payload's sha256, the previous entry's hash, the author, the time,
the signing key and the signed head; the entry hash is sha256 of the header's canonical JSON.
Because each header holds the previous hash, changing any earlier entry changes every later
hash (a hash chain, as in Haber and Stornetta 1991 and Crosby and Wallach 2009).

Signatures are per transaction: the last entry written by a transaction (its *head*) is signed,
and every entry of that transaction carries that signature and the head's sequence number
(``signed_seq``, which is part of the hashed header). A signature over a head covers every
entry before it through the chain, the way a signed tree head covers a Certificate
Transparency log (RFC 6962, section 3.5). A single append is its own head.

Header version 2 also names the ``record_id`` and ``model`` columns, which queries and reports
select by, so that they are covered by the hash as well. Entries written before (version 1)
keep their hashes and signatures; verification checks those two columns against their
payload instead (see ``safescale.ledger._verify``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from safescale.policy import Determination, Evidence, ModelRecord, Record, SignOffRecord

ENTRY_VERSION = 2
"""The header version of new entries (1: before ``record_id`` and ``model`` were hashed)."""
GENESIS_HASH = "0" * 64
"""The ``prev_hash`` of entry 1."""

EntryKind = Literal["model", "evidence", "determination", "signoff"]
RECORD_TYPES: dict[str, type[Record]] = {
    "model": ModelRecord,
    "evidence": Evidence,
    "determination": Determination,
    "signoff": SignOffRecord,
}

# The order in which entry columns are stored, read and verified.
COLUMNS = (
    "seq",
    "kind",
    "record_id",
    "model",
    "payload",
    "payload_sha256",
    "prev_hash",
    "entry_hash",
    "author",
    "time",
    "key_id",
    "signed_seq",
    "signature",
    "version",
)


def format_time(moment: datetime) -> str:
    """UTC time as a fixed-width ISO-8601 string (microseconds, ``Z``), stored as text."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def header_reference(
    *,
    seq: int,
    kind: str,
    payload_sha256: str,
    prev_hash: str,
    author: str,
    time: str,
    key_id: str,
    signed_seq: int,
    record_id: str | None = None,
    model: str | None = None,
    version: int = ENTRY_VERSION,
) -> bytes:
    """Canonical JSON of an entry header (sorted keys, no spaces, UTF-8): what gets hashed.

    Version 2 adds ``record_id`` and ``model``; version 1 (older entries) has neither.
    """
    header: dict[str, Any] = {
        "author": author,
        "key_id": key_id,
        "kind": kind,
        "payload_sha256": payload_sha256,
        "prev_hash": prev_hash,
        "seq": seq,
        "signed_seq": signed_seq,
        "time": time,
        "v": version,
    }
    if version != 1:
        header["record_id"] = record_id
        header["model"] = model
    return json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def plain(text: object) -> bool:
    # A string that json.dumps writes as '"' + text + '"' (ensure_ascii=False): no quote, no
    # backslash, nothing unprintable. Anything else goes through the reference encoder.
    return isinstance(text, str) and text.isprintable() and '"' not in text and "\\" not in text


def header_bytes(
    seq: int,
    kind: str,
    payload_sha256: str,
    prev_hash: str,
    author: str,
    time: str,
    key_id: str,
    signed_seq: int,
    record_id: str | None = None,
    model: str | None = None,
    version: int = ENTRY_VERSION,
) -> bytes:
    """Fast path of :func:`header_reference` (same bytes; a test checks it).

    Formatting the header directly is about 8x cheaper than ``json.dumps`` of a dict, which
    matters when appending or verifying 100,000 entries.
    """
    if type(seq) is int and type(signed_seq) is int and version in (1, 2):
        # One check of the fields joined instead of one per field (verification does this
        # for every entry): the join succeeds only if every field is a str, and it is plain
        # exactly when each field is.
        try:
            covered = record_id + ("" if model is None else model) if version == 2 else ""  # type: ignore[operator]
            joined = kind + payload_sha256 + prev_hash + author + time + key_id + covered
        except TypeError:
            joined = None
        if plain(joined):
            if version == 2:
                return header_unchecked(
                    seq, kind, payload_sha256, prev_hash, author, time, key_id, signed_seq,
                    record_id, model,  # type: ignore[arg-type]
                )  # fmt: skip
            return header_unchecked_v1(
                seq, kind, payload_sha256, prev_hash, author, time, key_id, signed_seq
            )
    return header_reference(
        seq=seq,
        kind=kind,
        payload_sha256=payload_sha256,
        prev_hash=prev_hash,
        author=author,
        time=time,
        key_id=key_id,
        signed_seq=signed_seq,
        record_id=record_id,
        model=model,
        version=version,
    )


def header_unchecked(
    seq: int,
    kind: str,
    payload_sha256: str,
    prev_hash: str,
    author: str,
    time: str,
    key_id: str,
    signed_seq: int,
    record_id: str,
    model: str | None,
) -> bytes:
    """:func:`header_bytes` (version 2) for fields already known to be :func:`plain`
    (appends check the author once per transaction and each record's id and model; hashes,
    time and key id are ours)."""
    shown = "null" if model is None else f'"{model}"'
    return (
        f'{{"author":"{author}","key_id":"{key_id}","kind":"{kind}","model":{shown},'
        f'"payload_sha256":"{payload_sha256}","prev_hash":"{prev_hash}",'
        f'"record_id":"{record_id}","seq":{seq},"signed_seq":{signed_seq},"time":"{time}",'
        f'"v":2}}'
    ).encode()


def header_unchecked_v1(
    seq: int,
    kind: str,
    payload_sha256: str,
    prev_hash: str,
    author: str,
    time: str,
    key_id: str,
    signed_seq: int,
) -> bytes:
    """The version-1 header (no ``record_id``, no ``model``) of :func:`plain` fields."""
    return (
        f'{{"author":"{author}","key_id":"{key_id}","kind":"{kind}",'
        f'"payload_sha256":"{payload_sha256}","prev_hash":"{prev_hash}","seq":{seq},'
        f'"signed_seq":{signed_seq},"time":"{time}","v":1}}'
    ).encode()


def legacy_columns_match(kind: object, record_id: object, model: object, payload: object) -> bool:
    """Whether a version-1 entry's ``record_id`` and ``model`` columns say what its payload
    says (the payload is hashed; these two columns were not, before version 2)."""
    try:
        doc = json.loads(payload)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    if not isinstance(doc, dict):
        return False
    # The same mapping as ``raw_record``: a model record is about itself.
    about = doc.get("id") if kind == "model" else doc.get("model")
    return doc.get("id") == record_id and about == model


class LedgerEntry(BaseModel):
    """One entry as stored and exported. ``payload`` is the record's canonical JSON text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = ENTRY_VERSION
    """Header version: 2 hashes ``record_id`` and ``model`` too; 1 (older entries) does not."""
    seq: int = Field(ge=1)
    kind: str
    record_id: str
    model: str | None
    payload: str
    payload_sha256: str
    prev_hash: str
    entry_hash: str
    author: str
    time: str
    key_id: str
    signed_seq: int
    """Sequence number of the head whose signature covers this entry (itself if signed alone)."""
    signature: str
    """Hex ed25519 signature over the head's entry hash."""

    @classmethod
    def from_row(cls, row: Any) -> LedgerEntry:
        """Build from a stored row (columns in :data:`COLUMNS` order)."""
        values = dict(zip(COLUMNS, row, strict=True))
        payload = values["payload"]
        if isinstance(payload, bytes | bytearray | memoryview):
            values["payload"] = bytes(payload).decode("utf-8", errors="replace")
        for name in ("payload_sha256", "prev_hash", "entry_hash", "signature"):
            if isinstance(values[name], bytes):  # only after tampering; keep it visible
                values[name] = values[name].decode("utf-8", errors="replace")
        return cls.model_validate(values)

    def record(self) -> Record:
        """The record this entry holds, parsed into its pydantic type."""
        return RECORD_TYPES[self.kind].model_validate_json(self.payload)
