"""Ledger exports: every entry with the public key, verifiable without any database."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from safescale.ledger._entry import LedgerEntry
from safescale.ledger._keys import load_public_pem
from safescale.ledger._verify import VerifyReport, verify_ledger

EXPORT_VERSION = 1
"""Version of the export format."""


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
         e.entry_hash, e.author, e.time, e.key_id, e.signed_seq, e.signature, e.version)
        for e in export.entries
    )  # fmt: skip
    return verify_ledger(rows, public)
