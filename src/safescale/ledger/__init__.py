"""The evidence ledger: a workspace whose records are hash-chained, signed and verifiable.

Every ModelRecord, Evidence and Determination is appended as a :class:`LedgerEntry` carrying
the sha256 of its canonical JSON, the previous entry's hash and an ed25519 signature by the
workspace key. :meth:`Workspace.verify` re-derives all of it and checks that the ledger extends
its signed checkpoints (:class:`Checkpoint`); an export lets an outside reviewer do the same
without our database.
"""

from safescale.ledger._checkpoint import Checkpoint, read_checkpoint
from safescale.ledger._config import MAX_AUTHOR_LEN
from safescale.ledger._entry import RECORD_TYPES, LedgerEntry
from safescale.ledger._export import LedgerExport, verify_export
from safescale.ledger._keys import KeyPair, load_public_pem
from safescale.ledger._protect import refuse_workspace_file, refuse_workspace_folder
from safescale.ledger._verify import VerifyProblem, VerifyReport, verify_ledger
from safescale.ledger._workspace import AppendResult, RawRecord, Workspace, raw_record

init_workspace = Workspace.init
"""Create a workspace (alias of :meth:`Workspace.init`)."""

__all__ = [
    "MAX_AUTHOR_LEN",
    "RECORD_TYPES",
    "AppendResult",
    "Checkpoint",
    "KeyPair",
    "LedgerEntry",
    "LedgerExport",
    "RawRecord",
    "VerifyProblem",
    "VerifyReport",
    "Workspace",
    "init_workspace",
    "load_public_pem",
    "raw_record",
    "read_checkpoint",
    "refuse_workspace_file",
    "refuse_workspace_folder",
    "verify_export",
    "verify_ledger",
]
