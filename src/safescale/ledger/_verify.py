"""Re-derive the chain: every payload hash, entry hash, link, signature and artifact.

:func:`verify_ledger` is the fast path (one pass, each signature checked once per head);
:func:`verify_ledger_reference` is the plain version that checks each entry on its own. A test
holds them to the same verdicts on clean and tampered ledgers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from safescale.ledger._entry import (
    GENESIS_HASH,
    RECORD_TYPES,
    header_bytes,
    header_reference,
    header_unchecked,
    legacy_columns_match,
    plain,
)
from safescale.ledger._keys import key_id, verify_signature


@dataclass(frozen=True)
class Anchor:
    """A point the ledger must still pass through: entry ``count`` has hash ``head``.

    It comes from a signed checkpoint (the workspace's own, or one handed to an auditor); a
    ledger *extends* the checkpoint when it has at least ``count`` entries and the
    ``count``-th re-derives to ``head``, which, through the hash chain, pins every entry
    before it.
    """

    name: str
    """Where it comes from, for messages (a file name)."""
    count: int
    """Entries the ledger had."""
    head: str
    """Entry hash of entry ``count`` (the genesis hash for 0)."""


@dataclass(frozen=True)
class VerifyProblem:
    """One thing that does not check out."""

    seq: int | None
    """The entry it was found at (None for a stray artifact or a key mismatch)."""
    what: str
    """``sequence``, ``payload``, ``prev_hash``, ``entry_hash``, ``columns``, ``signature``,
    ``artifact``, ``key``, ``checkpoint`` or ``heads``."""
    message: str
    """What was expected and what was found."""

    def __str__(self) -> str:
        where = f"entry {self.seq}" if self.seq is not None else "ledger"
        return f"{where}: {self.what}: {self.message}"


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of re-deriving a ledger."""

    ok: bool
    """True when nothing failed."""
    entries: int
    """Entries read."""
    signatures: int
    """Distinct signatures checked (one per transaction head)."""
    artifacts: int
    """Artifact files re-hashed."""
    head: str | None
    """Entry hash of the last entry (give it to a reviewer: it pins the whole history)."""
    key_id: str
    """Fingerprint of the public key the signatures were checked against."""
    problems: tuple[VerifyProblem, ...]
    """Everything that failed, in ledger order."""

    @property
    def bad_seqs(self) -> set[int]:
        """Sequence numbers with at least one problem."""
        return {p.seq for p in self.problems if p.seq is not None}


_LEGACY_MESSAGE = "record_id or model column does not match the payload"


def _sha(data: object) -> str | None:
    if isinstance(data, bytes | bytearray | memoryview):
        return hashlib.sha256(data).hexdigest()
    if isinstance(data, str):
        return hashlib.sha256(data.encode("utf-8", errors="surrogateescape")).hexdigest()
    return None


def _as_bytes(payload: object) -> bytes:
    if isinstance(payload, str):
        return payload.encode("utf-8", errors="surrogateescape")
    return bytes(payload)  # type: ignore[call-overload]


def _artifact_refs(payload: bytes) -> list[str]:
    # Canonical JSON puts '"artifacts":{' in a payload that references artifacts, so most
    # payloads are skipped without parsing.
    if b'"artifacts":{"' not in payload:
        return []
    try:
        refs = json.loads(payload).get("artifacts", {})
    except (ValueError, AttributeError):
        return []
    return [str(v) for v in refs.values()] if isinstance(refs, dict) else []


def _check_artifacts(
    root: Path | None, refs: dict[str, list[int]], problems: list[VerifyProblem]
) -> int:
    """Re-hash every artifact file; report changed files, stray names and missing references."""
    if root is None:
        return 0
    seen: set[str] = set()
    count = 0
    for path in sorted(root.rglob("*")) if root.exists() else []:
        if not path.is_file() or path.name.startswith("."):  # .tmp files of a killed writer
            continue
        count += 1
        name = path.name
        seen.add(name)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != name:
            for seq in refs.get(name, [None]):  # type: ignore[list-item]
                problems.append(
                    VerifyProblem(seq, "artifact", f"{name} changed (content hashes to {digest})")
                )
    for name, seqs in refs.items():
        if name not in seen:
            for seq in seqs:
                problems.append(VerifyProblem(seq, "artifact", f"{name} is missing"))
    return count


def _key_problems(
    public: Ed25519PublicKey, signer_ids: set[str], checked: int, failed: int
) -> list[VerifyProblem]:
    if checked == 0 or failed < checked:
        return []
    ours = key_id(public)
    theirs = ", ".join(sorted(signer_ids - {ours})) or ours
    return [
        VerifyProblem(
            None,
            "key",
            f"none of the {checked} signatures verifies with public key {ours}; the entries "
            f"name signing key {theirs}: check you are using this ledger's public key",
        )
    ]


def _anchor_problem(anchor: Anchor, found: object) -> VerifyProblem:
    return VerifyProblem(
        anchor.count,
        "checkpoint",
        f"{anchor.name} holds entry hash {anchor.head[:16]}… for entry {anchor.count}, the "
        f"ledger re-derives {str(found)[:16]}…: entries up to {anchor.count} were rewritten",
    )


def _short_problems(anchors: Sequence[Anchor], n: int) -> list[VerifyProblem]:
    """Anchors past the ledger's end: entries were removed (or the database replaced)."""
    return [
        VerifyProblem(
            None,
            "checkpoint",
            f"the ledger has {n} entries, {a.name} was taken at {a.count}: entries were removed "
            "from the end or the database was replaced; restore it from a backup",
        )
        for a in anchors
        if a.count > n
    ]


def verify_ledger(
    rows: Iterable[Sequence[Any]],
    public: Ed25519PublicKey,
    artifacts: Path | None = None,
    anchors: Sequence[Anchor] = (),
) -> VerifyReport:
    """Re-derive a ledger from its stored rows (columns in ``COLUMNS`` order, by ``seq``).

    Checks, for every entry: the sequence has no gap, the payload hashes to ``payload_sha256``,
    ``prev_hash`` is the previous entry's hash, the header hashes to ``entry_hash`` (for a
    version-1 entry, whose header does not name ``record_id`` and ``model``, those columns must
    match the payload), and a valid signature by ``public`` over its transaction head covers
    it. Every anchor must lie on the chain. Then every artifact file under ``artifacts`` is
    re-hashed against its name, and every referenced artifact must exist.
    """
    problems: list[VerifyProblem] = []
    anchor_at: dict[int, list[Anchor]] = {}
    for a in anchors:
        if a.count == 0 and a.head != GENESIS_HASH:
            problems.append(_anchor_problem(a, GENESIS_HASH))
        anchor_at.setdefault(a.count, []).append(a)
    refs: dict[str, list[int]] = {}
    signer_ids: set[str] = set()
    expected, prev, n, checked, failed = 1, GENESIS_HASH, 0, 0, 0
    pending: list[tuple[Any, Any, Any]] = []  # (seq, signed_seq, signature) awaiting a head
    sha256, unchecked, last_kid = hashlib.sha256, header_unchecked, object()
    fast_author: Any = None
    fast_time: Any = None
    fast_kid: Any = None
    prev_is_digest = True  # the genesis hash is hex
    for row in rows:
        seq, kind, rid, model, payload, psha, prev_hash, ehash, author, time, kid, sseq, sig, v = (
            row
        )
        n += 1
        if seq != expected:
            problems.append(VerifyProblem(seq, "sequence", f"expected {expected}, found {seq}"))
        expected = seq + 1 if type(seq) is int else expected + 1
        is_bytes = type(payload) is bytes
        computed = sha256(payload).hexdigest() if is_bytes else _sha(payload)
        if computed != psha:
            problems.append(VerifyProblem(seq, "payload", "does not hash to payload_sha256"))
        if prev_hash != prev:
            problems.append(VerifyProblem(seq, "prev_hash", "does not link to the entry before"))
        # header_bytes' fast path, inlined for the common case (a version-2 entry of plain
        # text fields), since this loop runs once per entry. Plainness is known without
        # scanning for most fields: payload_sha256 and prev_hash when they equal hex digests
        # computed here, the transaction's author, time and key id when they equal the
        # previous entry's (checked once per transaction), the kind when it is one we write.
        if author != fast_author or time != fast_time or kid != fast_kid:
            fast_author = fast_time = fast_kid = None
            if plain(author) and plain(time) and plain(kid):
                fast_author, fast_time, fast_kid = author, time, kid
        try:
            covered = rid + ("" if model is None else model)
        except TypeError:
            covered = None
        try:
            if (
                v == 2
                and fast_author is not None
                and psha == computed
                and prev_is_digest
                and prev_hash == prev
                and kind in RECORD_TYPES
                and type(seq) is int
                and type(sseq) is int
                and plain(covered)
            ):
                header = unchecked(seq, kind, psha, prev_hash, author, time, kid, sseq, rid, model)
            else:
                header = header_bytes(
                    seq, kind, psha, prev_hash, author, time, kid, sseq, rid, model, v
                )
            derived = sha256(header).hexdigest()
        except TypeError:  # a column that no longer holds text (a tampered byte)
            derived = ""
        prev_is_digest = derived == ehash
        if derived != ehash:
            problems.append(VerifyProblem(seq, "entry_hash", "header does not hash to entry_hash"))
        if v == 1 and not legacy_columns_match(kind, rid, model, payload):
            problems.append(VerifyProblem(seq, "columns", _LEGACY_MESSAGE))
        if n in anchor_at:
            problems.extend(_anchor_problem(a, derived) for a in anchor_at[n] if derived != a.head)
        prev = ehash
        if kid != last_kid:
            signer_ids.add(str(kid))
            last_kid = kid
        if (is_bytes and b'"artifacts":{"' in payload) or type(payload) is str:
            for ref in _artifact_refs(_as_bytes(payload)):
                refs.setdefault(ref, []).append(seq)
        # Entries of one transaction name its head's seq and carry its signature; each
        # head's signature is checked once, then its copies are compared byte for byte.
        if type(sseq) is not int or sseq < seq:
            problems.append(VerifyProblem(seq, "signature", "signed head precedes the entry"))
            continue
        pending.append((seq, sseq, sig))
        if sseq == seq:
            checked += 1
            valid = verify_signature(public, sig, derived)
            failed += not valid
            for s, ss, sg in pending:
                if ss != seq or sg != sig:
                    problems.append(VerifyProblem(s, "signature", f"does not match head {seq}"))
                elif not valid:
                    problems.append(VerifyProblem(s, "signature", f"head {seq} signature invalid"))
            pending = []
    problems.extend(
        VerifyProblem(s, "signature", f"head {ss} is missing (ledger cut short?)")
        for s, ss, _ in pending
    )
    problems.extend(_key_problems(public, signer_ids, checked, failed))
    return _finish(problems, n, str(prev), checked, refs, public, artifacts, anchors)


def _finish(
    problems: list[VerifyProblem],
    n: int,
    head: str | None,
    signatures: int,
    refs: dict[str, list[int]],
    public: Ed25519PublicKey,
    artifacts: Path | None,
    anchors: Sequence[Anchor],
) -> VerifyReport:
    """Add what is checked after the entries (anchors past the end, artifact files) to
    ``problems`` and make the report."""
    problems.extend(_short_problems(anchors, n))
    count = _check_artifacts(artifacts, refs, problems)
    return VerifyReport(
        ok=not problems,
        entries=n,
        signatures=signatures,
        artifacts=count,
        head=head if n else None,
        key_id=key_id(public),
        problems=tuple(problems),
    )


@dataclass(frozen=True)
class CleanRun:
    """A run of consecutive entries that checked out, from :func:`check_clean_run`."""

    first: int
    """Sequence number before the run (0 at the start of the ledger)."""
    last: int
    """Sequence number of the run's last entry (``first`` when the run is empty)."""
    head: str
    """Entry hash of entry ``last`` (what the next run's first entry must link to)."""
    signatures: int
    """Transaction heads whose signature verified."""
    refs: dict[str, list[int]]
    """Artifact sha256 -> the entries that reference it."""


_ARTIFACTS_MARK = b'"artifacts":{"'


def check_clean_run(
    entries: Iterable[Sequence[Any]],
    heads: Iterable[Sequence[Any]],
    public: Ed25519PublicKey,
    anchors: dict[int, str] | None = None,
    after: tuple[int, str] = (0, GENESIS_HASH),
) -> CleanRun | None:
    """The fast pass over a ledger as stored: True-or-nothing, no diagnosis.

    ``entries`` are rows in ``ENTRY_COLUMNS`` order (seq, kind, record_id, model, payload,
    payload_sha256, prev_hash, entry_hash, signed_seq, version) by ``seq``, starting right
    after entry ``after = (seq, entry_hash)`` at a transaction boundary; ``heads`` are the
    ``heads`` rows (seq, author, time, key_id, signature) from there on, by ``seq``.
    ``anchors`` maps an entry count to the entry hash a checkpoint pins there.

    Returns the run when every entry passes every check :func:`verify_ledger` makes, each
    entry being of the form this code writes (header version 2, plain text fields, each
    transaction's entries followed by their head row); returns None at the first entry that
    is anything else, and the caller runs :func:`verify_ledger`, which says what is wrong.
    So this never accepts what :func:`verify_ledger` would not (a test holds the two to
    that), and the loop only does what a clean entry needs: one sha256 of the stored
    payload bytes, one header formatted and hashed, one signature check per transaction.
    """
    sha256, kinds, marker = hashlib.sha256, RECORD_TYPES, _ARTIFACTS_MARK
    pins = anchors or {}
    next_head = iter(heads).__next__
    expected, prev = after[0] + 1, after[1]
    refs: dict[str, list[int]] = {}
    signatures, tx = 0, 0  # tx: the open transaction's head seq (0: none open)
    # What a transaction's headers share (author, key id, signed_seq, time) is formatted
    # once per transaction: the header's text before the kind, and after the seq.
    before = after_seq = sig = ""
    try:
        for seq, kind, rid, model, payload, psha, prev_hash, ehash, sseq, v in entries:
            if tx == 0:  # a transaction's first entry: its head row must be next in order
                if type(sseq) is not int or sseq < seq:
                    return None
                hseq, author, time, kid, sig = next_head()
                if hseq != sseq or not (plain(author) and plain(time) and plain(kid)):
                    return None
                tx = sseq
                before = f'{{"author":"{author}","key_id":"{kid}","kind":"'
                after_seq = f',"signed_seq":{sseq},"time":"{time}","v":2}}'
            elif sseq != tx or type(sseq) is not int:
                return None
            covered = rid if model is None else rid + model
            if (
                seq != expected
                or v != 2
                or prev_hash != prev
                or kind not in kinds
                or type(payload) is not bytes
                or sha256(payload).hexdigest() != psha
                or type(covered) is not str  # plain(covered), inlined
                or not covered.isprintable()
                or '"' in covered
                or "\\" in covered
            ):
                return None
            # header_unchecked's bytes, inlined (this runs once per entry). Every field is
            # plain: author, time and key id were checked above, record id and model just
            # now, payload_sha256 equals a hex digest, prev_hash the previous entry's hash
            # (checked to be a hex digest of its header), and the kind is one of ours.
            if model is None:
                header = (
                    f'{before}{kind}","model":null,"payload_sha256":"{psha}",'
                    f'"prev_hash":"{prev_hash}","record_id":"{rid}","seq":{seq}{after_seq}'
                )
            else:
                header = (
                    f'{before}{kind}","model":"{model}","payload_sha256":"{psha}",'
                    f'"prev_hash":"{prev_hash}","record_id":"{rid}","seq":{seq}{after_seq}'
                )
            if sha256(header.encode()).hexdigest() != ehash:
                return None
            if seq in pins and pins[seq] != ehash:
                return None
            if marker in payload:
                for ref in _artifact_refs(payload):
                    refs.setdefault(ref, []).append(seq)
            if seq == tx:  # the head: its signature covers the transaction
                if not verify_signature(public, sig, ehash):
                    return None
                signatures += 1
                tx = 0
            prev, expected = ehash, seq + 1
    except (TypeError, ValueError, StopIteration):  # a column of the wrong type, no head row
        return None
    if tx != 0:  # the ledger ends inside a transaction
        return None
    return CleanRun(after[0], expected - 1, prev, signatures, refs)


def anchor_pins(anchors: Sequence[Anchor]) -> dict[int, str] | None:
    """The anchors as ``{entry count: entry hash}`` for :func:`check_clean_run`, or None when
    two disagree or one pins the empty ledger to anything but the genesis hash (then the
    diagnosing verifier reports it)."""
    pins: dict[int, str] = {}
    for a in anchors:
        if pins.setdefault(a.count, a.head) != a.head or (a.count == 0 and a.head != GENESIS_HASH):
            return None
    return pins


def clean_report(
    run: CleanRun, public: Ed25519PublicKey, artifacts: Path | None, anchors: Sequence[Anchor]
) -> VerifyReport:
    """The report :func:`verify_ledger` gives for a ledger whose entries all checked out
    (``run``, from the first entry): what remains is anchors past its end and the artifacts."""
    return _finish([], run.last, run.head, run.signatures, run.refs, public, artifacts, anchors)


def verify_ledger_reference(
    rows: Iterable[Sequence[Any]],
    public: Ed25519PublicKey,
    artifacts: Path | None = None,
    anchors: Sequence[Anchor] = (),
) -> VerifyReport:
    """The plain version of :func:`verify_ledger`: each entry checked on its own.

    Each entry's signature is verified again against its head, found by sequence number, and
    the header is encoded with ``json.dumps``. Slow (one signature check per entry), simple.
    """
    table = [tuple(r) for r in rows]
    by_seq = {r[0]: r for r in table}
    problems: list[VerifyProblem] = []
    refs: dict[str, list[int]] = {}
    checked: set[Any] = set()
    failed: set[Any] = set()

    def derive(r: Sequence[Any]) -> str:
        fields = dict(
            seq=r[0], kind=r[1], payload_sha256=r[5], prev_hash=r[6], author=r[8], time=r[9],
            key_id=r[10], signed_seq=r[11], record_id=r[2], model=r[3], version=r[13],
        )  # fmt: skip
        try:
            return hashlib.sha256(header_reference(**fields)).hexdigest()
        except TypeError:
            return ""

    for i, r in enumerate(table):
        seq = r[0]
        before = table[i - 1][0] if i else 0
        want = before + 1 if type(before) is int else i + 1
        if seq != want:
            problems.append(VerifyProblem(seq, "sequence", f"expected {want}, found {seq}"))
        if _sha(r[4]) != r[5]:
            problems.append(VerifyProblem(seq, "payload", "does not hash to payload_sha256"))
        if r[6] != (table[i - 1][7] if i else GENESIS_HASH):
            problems.append(VerifyProblem(seq, "prev_hash", "does not link to the entry before"))
        if derive(r) != r[7]:
            problems.append(VerifyProblem(seq, "entry_hash", "header does not hash to entry_hash"))
        if r[13] == 1 and not legacy_columns_match(r[1], r[2], r[3], r[4]):
            problems.append(VerifyProblem(seq, "columns", _LEGACY_MESSAGE))
        for a in anchors:
            if a.count == i + 1 and derive(r) != a.head:
                problems.append(_anchor_problem(a, derive(r)))
        for ref in _artifact_refs(_as_bytes(r[4])):
            refs.setdefault(ref, []).append(seq)
        sseq = r[11]
        if type(sseq) is not int or sseq < seq:
            problems.append(VerifyProblem(seq, "signature", "signed head precedes the entry"))
            continue
        head = by_seq.get(sseq)
        between = [by_seq.get(s) for s in range(seq, sseq)]
        if (
            head is None
            or head[11] != head[0]
            or head[12] != r[12]
            or any(x is not None and x[11] == x[0] for x in between)
        ):
            problems.append(VerifyProblem(seq, "signature", "no matching signed head"))
            continue
        checked.add(sseq)
        if not verify_signature(public, r[12], derive(head)):
            failed.add(sseq)
            problems.append(VerifyProblem(seq, "signature", "not covered by a valid signature"))
    problems.extend(_key_problems(public, {str(r[10]) for r in table}, len(checked), len(failed)))
    problems.extend(
        _anchor_problem(a, GENESIS_HASH) for a in anchors if a.count == 0 and a.head != GENESIS_HASH
    )
    last = str(table[-1][7]) if table else None
    return _finish(problems, len(table), last, len(checked), refs, public, artifacts, anchors)
