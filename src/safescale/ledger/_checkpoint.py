"""Signed checkpoints: the ledger's size and head hash, signed, kept outside the database.

A checkpoint says "this ledger had ``count`` entries and entry ``count`` had hash ``head``",
signed with ed25519, like a signed tree head in Certificate Transparency (RFC 6962, section
3.5) or a Rekor checkpoint. A ledger *extends* a checkpoint when it still has that entry with
that hash: through the hash chain this pins every entry before it, so nothing up to there was
rewritten, reordered or removed. Checking it is part of one verification pass.

The workspace keeps its latest checkpoint in ``checkpoint.json`` next to the database,
rewritten after each append, so an emptied, deleted or cut-short database fails ``verify``.
Whoever holds the signing key can rewrite that file too; a checkpoint only protects against
them once a copy has left their hands (``safescale ledger checkpoint --out``, given to an
auditor or published).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Connection

from safescale._errors import IntegrityError, Problem, UserError
from safescale._io import atomic_write_bytes
from safescale.ledger._keys import KeyPair, key_id
from safescale.ledger._verify import Anchor, VerifyProblem

CHECKPOINT_VERSION = 1
MAX_BYTES = 65536
CHECKPOINT_NAME = "checkpoint.json"
"""The workspace's own latest checkpoint, in the workspace folder."""
# Domain separation from entry signatures (``safescale-ledger-entry-v1:``): a signature over
# an entry hash can never pass as one over a checkpoint, or the other way round.
CHECKPOINT_CONTEXT = b"safescale-ledger-checkpoint-v1:"


class Checkpoint(BaseModel):
    """A signed statement of the ledger's size and head, to publish or hand to an auditor."""

    # strict: "4" or 4.0 for a count is an edited file, not a count (they verified before)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    version: int = CHECKPOINT_VERSION
    ledger_key_id: str = Field(min_length=1, max_length=64)
    """Key id of the ledger's entry-signing key: which ledger this is a checkpoint of."""
    count: int = Field(ge=0)
    """Entries the ledger had."""
    head: str = Field(pattern=r"^[0-9a-f]{64}$")
    """Entry hash of entry ``count`` (64 zeros for an empty ledger)."""
    time: str = Field(min_length=1, max_length=40)
    """When it was signed (UTC, ISO 8601)."""
    key_id: str = Field(min_length=1, max_length=64)
    """Key id of the key that signed this checkpoint (the ledger's, or a separate one)."""
    signature: str = Field(pattern=r"^[0-9a-f]{128}$")
    """Hex ed25519 signature over :meth:`signed_bytes`."""

    def signed_bytes(self) -> bytes:
        """What the signature covers: the context and the canonical JSON of every other field."""
        body = self.model_dump(exclude={"signature"})
        return CHECKPOINT_CONTEXT + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    def anchor(self, name: str) -> Anchor:
        """The point on the chain this checkpoint pins."""
        return Anchor(name=name, count=self.count, head=self.head)

    def problems(self, public: Ed25519PublicKey, ledger_key: str, name: str) -> list[VerifyProblem]:
        """Why this checkpoint cannot be trusted as signed by ``public`` for the ledger whose
        entry-signing key id is ``ledger_key`` (empty when it can)."""
        ours = key_id(public)
        why = None
        if self.key_id != ours:
            why = f"is signed by key {self.key_id}, not {ours}: pass its key with --checkpoint-key"
        else:
            try:
                public.verify(bytes.fromhex(self.signature), self.signed_bytes())
            except (InvalidSignature, ValueError):
                why = f"has a signature that does not verify with key {ours} (it was changed)"
        if why is None and self.ledger_key_id != ledger_key:
            why = f"is of the ledger signed by key {self.ledger_key_id}, not {ledger_key}"
        return [] if why is None else [VerifyProblem(None, "checkpoint", f"{name} {why}")]


def given_anchors(
    checkpoints: Sequence[tuple[str, Checkpoint]], signer: Ed25519PublicKey, ledger_key: str
) -> tuple[list[VerifyProblem], list[Anchor]]:
    """The problems of ``checkpoints`` (``(name, checkpoint)`` pairs signed with ``signer``),
    and an anchor for each one without problems, to verify a ledger or an export against."""
    problems: list[VerifyProblem] = []
    anchors: list[Anchor] = []
    for label, given in checkpoints:
        found = given.problems(signer, ledger_key, label)
        problems.extend(found)
        if not found:
            anchors.append(given.anchor(label))
    return problems, anchors


def sign_checkpoint(
    signer: KeyPair, *, ledger_key_id: str, count: int, head: str, time: str
) -> Checkpoint:
    """A checkpoint of a ledger with ``count`` entries ending in ``head``, signed by ``signer``."""
    unsigned = Checkpoint(
        ledger_key_id=ledger_key_id, count=count, head=head, time=time, key_id=signer.id,
        signature="0" * 128,
    )  # fmt: skip
    signature = signer.private.sign(unsigned.signed_bytes()).hex()
    return unsigned.model_copy(update={"signature": signature})


def read_checkpoint(path: Path) -> Checkpoint:
    """Parse a checkpoint file; a missing or malformed one is a :class:`UserError`."""
    try:
        with open(path, "rb") as fh:  # bounded: a checkpoint is a few hundred bytes
            data = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise UserError(Problem(f"cannot read ({exc.strerror})", source=str(path))) from None
    if len(data) > MAX_BYTES:
        raise UserError(Problem(f"larger than {MAX_BYTES} bytes: not a ledger checkpoint; give "
                                "a file written by `safescale ledger checkpoint`",
                                source=str(path)))  # fmt: skip
    try:
        return Checkpoint.model_validate_json(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or None
        raise UserError(
            Problem(f"not a ledger checkpoint ({err['msg']})", source=str(path), field=field)
        ) from None


def checkpoint_text(checkpoint: Checkpoint) -> str:
    """The checkpoint as the JSON text written to files."""
    return checkpoint.model_dump_json(indent=2) + "\n"


def store_checkpoint(path: Path, checkpoint: Checkpoint) -> bool:
    """Replace the workspace checkpoint at ``path`` if ``checkpoint`` is further along.

    Appends commit in chain order but may reach this point in any order; a lock file and the
    count comparison keep the file moving forward only. Returns whether it was written.

    The file is replaced atomically but not fsynced: that would cost more than the append it
    records. After a power loss it may be an older checkpoint, which the ledger still extends.
    """
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = None
        with contextlib.suppress(OSError, ValueError):
            current = Checkpoint.model_validate_json(path.read_bytes())
        if current is not None and current.count >= checkpoint.count:
            return False
        atomic_write_bytes(path, checkpoint_text(checkpoint).encode(), sync=False)
        return True


def check_extends_checkpoint(conn: Connection, path: Path, last: tuple[int, str] | None) -> None:
    """Refuse to append to a ledger that no longer extends the workspace checkpoint at ``path``
    (``last``: the ledger's last ``(seq, entry_hash)``): :class:`IntegrityError`."""
    # Appending to a ledger cut short or rewritten would bury the damage under new,
    # validly signed entries (and move the checkpoint past it): refuse instead.
    try:
        saved = Checkpoint.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise IntegrityError(
            Problem("the workspace checkpoint is missing; run `safescale ledger verify`, and "
                    "`safescale ledger checkpoint` to write a new one if you trust the ledger",
                    source=str(path))
        ) from None  # fmt: skip
    except (OSError, ValueError):
        raise IntegrityError(
            Problem("the workspace checkpoint is not readable; run `safescale ledger verify`",
                    source=str(path))
        ) from None  # fmt: skip
    if saved.count == 0:
        return
    found = None
    if last is not None and last[0] >= saved.count:
        found = conn.exec_driver_sql(
            f"SELECT entry_hash FROM entries WHERE seq = {int(saved.count)}"
        ).scalar()
    if found != saved.head:
        raise IntegrityError(
            Problem(f"the ledger no longer extends its checkpoint of {saved.count} entries "
                    "(entries were removed or rewritten); nothing was written: run "
                    "`safescale ledger verify`", source=str(path))
        )  # fmt: skip
