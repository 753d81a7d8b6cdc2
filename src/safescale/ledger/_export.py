"""Ledger exports: every entry with the public key, verifiable without any database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from pydantic import BaseModel, ConfigDict

from safescale.ledger._checkpoint import Checkpoint, given_anchors
from safescale.ledger._entry import GENESIS_HASH, LedgerEntry
from safescale.ledger._keys import key_id, load_public_pem
from safescale.ledger._verify import Anchor, VerifyProblem, VerifyReport, verify_ledger

EXPORT_VERSION = 2
"""Version of the export format (2 adds the signed ``checkpoint``)."""

EXPORT_NAME = "the export's checkpoint"


class LedgerExport(BaseModel):
    """What ``safescale ledger export --json`` writes: enough to verify without our database."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = EXPORT_VERSION
    public_key_pem: str
    key_id: str
    head: str | None
    """Entry hash of the last entry; pins the history."""
    count: int
    checkpoint: Checkpoint | None = None
    """A checkpoint of ``count`` and ``head`` signed with the ledger's key: the entries must
    reach it, so an export cut short or emptied (``count`` and ``head`` edited with it) fails."""
    entries: list[LedgerEntry]


def _export_problems(export: LedgerExport, anchored: bool) -> list[VerifyProblem]:
    """The export's own ``count``/``head`` against its entries, and whether a signed checkpoint
    pins them."""
    found: list[VerifyProblem] = []
    n = len(export.entries)
    if export.count != n:
        found.append(VerifyProblem(None, "export", f"the export says {export.count} entries but "
                                   f"holds {n}: entries were removed or added"))  # fmt: skip
    last = export.entries[-1].entry_hash if export.entries else None
    if export.head != last:
        shown, want = str(export.head)[:16], str(last)[:16]
        found.append(VerifyProblem(None, "export", f"the export's head {shown}… is not the "
                                   f"hash of its last entry ({want}…)"))  # fmt: skip
    if not anchored:
        found.append(VerifyProblem(None, "export", "no signed checkpoint pins the export's "
                                   "length (an export cut short would pass): export it again "
                                   "with this version, or give --checkpoint"))  # fmt: skip
    return found


def verify_export(
    export: LedgerExport | str | bytes,
    public_key_pem: str | bytes | None = None,
    *,
    checkpoints: Sequence[tuple[str, Checkpoint]] = (),
    checkpoint_key_pem: str | bytes | None = None,
) -> VerifyReport:
    """Verify an export (the model or its JSON) without any database.

    Pass the public key you obtained separately as ``public_key_pem``: the key inside an
    export proves only that the export is self-consistent, not who signed it. The entries must
    agree with the export's ``count`` and ``head``, reach its signed checkpoint, and extend
    each of ``checkpoints`` (signed with ``checkpoint_key_pem``, else the ledger's key).
    """
    if not isinstance(export, LedgerExport):
        export = LedgerExport.model_validate_json(export)
    public = load_public_pem(public_key_pem or export.public_key_pem)
    ledger_key = key_id(public)
    problems: list[VerifyProblem] = []
    anchors: list[Anchor] = []
    own = export.checkpoint
    if own is not None:
        found = own.problems(public, ledger_key, EXPORT_NAME)
        problems.extend(found)
        if not found:
            anchors.append(own.anchor(EXPORT_NAME))
            if own.count != export.count or own.head != (export.head or GENESIS_HASH):
                problems.append(VerifyProblem(None, "export", f"{EXPORT_NAME} is of "
                                              f"{own.count} entries, the export says "
                                              f"{export.count}: it was edited"))  # fmt: skip
    signer = public if checkpoint_key_pem is None else load_public_pem(checkpoint_key_pem)
    found, given = given_anchors(checkpoints, signer, ledger_key)
    problems.extend(found)
    anchors.extend(given)
    problems.extend(_export_problems(export, bool(anchors)))
    rows = (
        (e.seq, e.kind, e.record_id, e.model, e.payload.encode(), e.payload_sha256, e.prev_hash,
         e.entry_hash, e.author, e.time, e.key_id, e.signed_seq, e.signature, e.version)
        for e in export.entries
    )  # fmt: skip
    report = verify_ledger(rows, public, None, anchors)
    problems.extend(report.problems)
    return replace(report, ok=not problems, problems=tuple(problems))
