"""Any single changed byte of a payload, hash, header field, signature or artifact is detected."""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safescale.ledger import Workspace, _scan
from safescale.ledger._entry import header_bytes, header_reference

from .helpers import evidence, model

ENTRY_COLUMNS = ["record_id", "model", "payload", "payload_sha256", "prev_hash", "entry_hash"]
HEAD_COLUMNS = ["author", "time", "key_id", "signature"]  # shared by a transaction's entries
N_ENTRIES = 7


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pristine") / ".safescale"
    with Workspace.init(root) as ws:
        sha = ws.add_artifact(b"inspect log bytes " * 20)
        ws.append_model(model(0))
        ws.append_many([evidence(i, artifacts={"log": sha}) for i in range(4)])
        ws.append_many([model(1), model(2)])
        assert ws.verify().ok and ws.count() == N_ENTRIES
        # Fold the WAL into the main file so that a copy of the folder is complete.
        with ws.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return root


def _copy(src: Path, parent: Path) -> Path:
    # A fresh folder per example: hypothesis reuses the function's tmp_path.
    dst = parent / uuid.uuid4().hex
    shutil.copytree(src, dst)
    return dst


def _flip(value: bytes, position: int, new: int) -> bytes:
    data = bytearray(value)
    data[position % len(data)] = new if new != data[position % len(data)] else (new + 1) % 256
    return bytes(data)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seq=st.integers(1, N_ENTRIES),
    column=st.sampled_from(ENTRY_COLUMNS + HEAD_COLUMNS),
    position=st.integers(0, 10_000),
    new=st.integers(0, 255),
)
def test_any_stored_byte_change_is_detected(
    pristine: Path, tmp_path: Path, seq: int, column: str, position: int, new: int
) -> None:
    root = _copy(pristine, tmp_path / "ws")
    with sqlite3.connect(root / "ledger.sqlite") as db:
        table, row = "entries", seq
        if column in HEAD_COLUMNS:  # the head row that signs this entry
            table = "heads"
            (row,) = db.execute("SELECT signed_seq FROM entries WHERE seq = ?", (seq,)).fetchone()
        (value,) = db.execute(
            f"SELECT CAST({column} AS BLOB) FROM {table} WHERE seq = ?", (row,)
        ).fetchone()
        changed = _flip(value, position, new)
        try:  # keep text columns text when the new byte still decodes
            stored: bytes | str = changed.decode() if column != "payload" else changed
        except UnicodeDecodeError:
            stored = changed
        db.execute(f"UPDATE {table} SET {column} = ? WHERE seq = ?", (stored, row))
    with Workspace.open(root) as ws:
        fast, reference = ws.verify(), ws.verify(reference=True)
        # The fast pass gives up (and the diagnosing verifier takes over), in one process or
        # split in two (a child checks entries 1 to 1, this process 2 to 7).
        clean, _ = ws._verify_clean(ws.public_key(), root / "artifacts", [])
        assert clean is None
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(_scan, "PARALLEL_MIN_ENTRIES", 2)
            assert _scan.split_point(ws.engine) in (1, None)  # None: the change hit a head
            clean, _ = ws._verify_clean(ws.public_key(), root / "artifacts", [])
            assert clean is None
    assert not fast.ok and seq in fast.bad_seqs
    assert fast.bad_seqs == reference.bad_seqs


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(position=st.integers(0, 10_000), new=st.integers(0, 255))
def test_any_artifact_byte_change_is_detected(
    pristine: Path, tmp_path: Path, position: int, new: int
) -> None:
    root = _copy(pristine, tmp_path / "ws")
    (path,) = [p for p in (root / "artifacts").rglob("*") if p.is_file()]
    path.write_bytes(_flip(path.read_bytes(), position, new))
    with Workspace.open(root) as ws:
        report = ws.verify()
    assert report.bad_seqs == {2, 3, 4, 5}
    assert {p.what for p in report.problems} == {"artifact"}


def test_removing_an_entry_is_detected(pristine: Path, tmp_path: Path) -> None:
    root = _copy(pristine, tmp_path / "ws")
    with sqlite3.connect(root / "ledger.sqlite") as db:
        db.execute("DELETE FROM entries WHERE seq = 3")
    with Workspace.open(root) as ws:
        report = ws.verify()
    assert {(p.seq, p.what) for p in report.problems} >= {(4, "sequence"), (4, "prev_hash")}


def test_cutting_a_transaction_short_is_detected(pristine: Path, tmp_path: Path) -> None:
    root = _copy(pristine, tmp_path / "ws")
    with sqlite3.connect(root / "ledger.sqlite") as db:
        db.execute(f"DELETE FROM entries WHERE seq = {N_ENTRIES}")
    with Workspace.open(root) as ws:
        report = ws.verify()
    # The entry before lost its signed head; the head row left behind is flagged too, and the
    # workspace checkpoint names one entry more than there is.
    assert {(p.seq, p.what) for p in report.problems} == {
        (N_ENTRIES - 1, "signature"),
        (N_ENTRIES, "heads"),
        (None, "checkpoint"),
    }


text_st = st.text(min_size=0, max_size=12)


@given(
    seq=st.integers(1, 2**40), kind=text_st, psha=text_st, prev=text_st, author=text_st,
    time=text_st, kid=text_st, signed=st.integers(1, 2**40), rid=st.none() | text_st,
    model=st.none() | text_st, version=st.sampled_from([1, 2]),
)  # fmt: skip
def test_fast_header_matches_reference(
    seq: int, kind: str, psha: str, prev: str, author: str, time: str, kid: str, signed: int,
    rid: str | None, model: str | None, version: int,
) -> None:  # fmt: skip
    fast = header_bytes(seq, kind, psha, prev, author, time, kid, signed, rid, model, version)
    assert fast == header_reference(
        seq=seq, kind=kind, payload_sha256=psha, prev_hash=prev, author=author, time=time,
        key_id=kid, signed_seq=signed, record_id=rid, model=model, version=version,
    )  # fmt: skip


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE entries SET signed_seq = 7 WHERE seq = 2",  # a later head
        "UPDATE entries SET signed_seq = 1 WHERE seq = 5",  # an earlier head: out of order
        "UPDATE entries SET signed_seq = 'x' WHERE seq = 6",  # not a number
        "UPDATE entries SET signed_seq = 4.5 WHERE seq = 3",
        "DELETE FROM heads WHERE seq = 5",  # a head row gone
        "INSERT INTO heads VALUES (99, 'a', 't', 'k', 's')",  # one no entry names
    ],
)
def test_fast_row_reader_matches_the_join(pristine: Path, tmp_path: Path, change: str) -> None:
    root = _copy(pristine, tmp_path / "ws")
    with sqlite3.connect(root / "ledger.sqlite") as db:
        db.execute(change)
    with Workspace.open(root) as ws:
        fast, joined = list(ws._raw_rows()), [tuple(r) for r in ws._raw_rows_reference()]
        assert fast == joined and len(fast) == N_ENTRIES
        assert not ws.verify().ok and ws.verify().bad_seqs == ws.verify(reference=True).bad_seqs
