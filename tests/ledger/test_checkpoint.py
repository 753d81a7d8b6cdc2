"""Signed checkpoints: the workspace's own, and those handed out with ``ledger checkpoint``."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from safescale import UserError
from safescale._errors import IntegrityError
from safescale.ledger import Checkpoint, KeyPair, Workspace, read_checkpoint
from safescale.ledger._checkpoint import CHECKPOINT_NAME, sign_checkpoint, store_checkpoint
from safescale.ledger._entry import GENESIS_HASH
from safescale.ledger._keys import public_pem

from .helpers import evidence, model


def _saved(ws: Workspace) -> Checkpoint:
    return read_checkpoint(ws.root / CHECKPOINT_NAME)


def test_the_workspace_checkpoint_follows_every_append(ws: Workspace) -> None:
    assert (_saved(ws).count, _saved(ws).head) == (0, GENESIS_HASH)
    ws.append(model(0))
    ws.append_many([evidence(i) for i in range(3)])
    saved = _saved(ws)
    assert (saved.count, saved.head) == (4, ws.head())
    assert saved.key_id == saved.ledger_key_id == ws.keys.id
    assert not saved.problems(ws.public_key(), ws.keys.id, "cp")
    assert ws.verify().ok


def test_the_workspace_checkpoint_only_moves_forward(tmp_path: Path) -> None:
    keys = KeyPair.generate()
    path = tmp_path / "cp.json"

    def at(count: int) -> Checkpoint:
        return sign_checkpoint(keys, ledger_key_id=keys.id, count=count, head="a" * 64, time="t")

    assert store_checkpoint(path, at(5))
    assert not store_checkpoint(path, at(3))  # a slower writer of an older transaction
    assert read_checkpoint(path).count == 5
    assert store_checkpoint(path, at(6)) and read_checkpoint(path).count == 6


def test_checkpoint_round_trip_and_a_separate_key(ws: Workspace) -> None:
    ws.append_many([model(0), model(1)])
    own = ws.checkpoint()
    auditor = KeyPair.generate()
    theirs = ws.checkpoint(auditor)
    assert (own.count, own.head, own.key_id) == (2, ws.head(), ws.keys.id)
    assert (theirs.key_id, theirs.ledger_key_id) == (auditor.id, ws.keys.id)
    ws.append(model(2))
    assert ws.verify(checkpoints=[("own", own)]).ok
    assert ws.verify(
        checkpoints=[("theirs", theirs)], checkpoint_key_pem=public_pem(auditor.public)
    ).ok
    # Without the separate key it is not trusted, and verification says how to fix that.
    report = ws.verify(checkpoints=[("theirs", theirs)])
    assert [p.what for p in report.problems] == ["checkpoint"]
    assert "pass its key with --checkpoint-key" in report.problems[0].message
    # A changed checkpoint no longer verifies; one of another ledger is refused.
    forged = own.model_copy(update={"count": 1})
    assert "does not verify" in ws.verify(checkpoints=[("f", forged)]).problems[0].message
    other = KeyPair.generate()
    alien = sign_checkpoint(other, ledger_key_id=other.id, count=0, head=GENESIS_HASH, time="t")
    report = ws.verify(checkpoints=[("a", alien)], checkpoint_key_pem=public_pem(other.public))
    assert f"is of the ledger signed by key {other.id}" in report.problems[0].message


def test_a_rewritten_prefix_fails_the_checkpoint(ws: Workspace) -> None:
    ws.append_many([model(0), model(1), model(2)])
    ws.append(model(3))
    # A checkpoint, validly signed, of a ledger whose entry 3 was different.
    fake = sign_checkpoint(ws.keys, ledger_key_id=ws.keys.id, count=3, head="b" * 64, time="t")
    for reference in (False, True):
        report = ws.verify(checkpoints=[("cp", fake)], reference=reference)
        assert [(p.seq, p.what) for p in report.problems] == [(3, "checkpoint")]
        assert "entries up to 3 were rewritten" in report.problems[0].message


def test_checkpoint_refuses_a_ledger_that_does_not_verify(tmp_path: Path) -> None:
    with Workspace.init(tmp_path / "w") as ws:
        ws.append_many([model(0), model(1)])
    with sqlite3.connect(tmp_path / "w" / "ledger.sqlite") as db:
        db.execute("UPDATE entries SET payload = replace(payload, '1e+20', '1e+19')")
    with (
        Workspace.open(tmp_path / "w") as ws,
        pytest.raises(IntegrityError, match="nothing was signed"),
    ):
        ws.checkpoint()


def test_a_lost_workspace_checkpoint_is_reported_then_rewritten(ws: Workspace) -> None:
    ws.append(model(0))
    (ws.root / CHECKPOINT_NAME).unlink()
    report = ws.verify()
    assert not report.ok and [p.what for p in report.problems] == ["checkpoint"]
    assert "is missing" in report.problems[0].message
    with pytest.raises(IntegrityError, match="workspace checkpoint is missing"):
        ws.append(model(1))  # appending would anchor whatever is there now
    assert ws.count() == 1
    ws.checkpoint()  # the owner's explicit decision, after checking the ledger
    assert ws.verify().ok and _saved(ws).count == 1
    (ws.root / CHECKPOINT_NAME).write_text("{")
    assert "is not a checkpoint" in ws.verify().problems[0].message
    ws.checkpoint()
    assert ws.verify().ok


def test_checkpoint_commands(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    w = ("--workspace", str(tmp_path / "w"))
    assert run_cli(*w, "init")[0] == 0
    assert run_cli(*w, "compute", "add", "--model", "a", "--flops", "1e20")[0] == 0
    code, out, _ = run_cli(*w, "ledger", "checkpoint")
    printed = json.loads(out)
    assert code == 0 and printed["count"] == 1
    key = tmp_path / "outside" / "checkpoints.pem"
    key.parent.mkdir()
    assert run_cli("ledger", "keygen", str(key))[0] == 0
    assert key.exists() and (tmp_path / "outside" / "checkpoints.pem.pub").exists()
    assert (key.stat().st_mode & 0o777) == 0o600
    code, _, err = run_cli("ledger", "keygen", str(key))
    assert code == 2 and "already exists" in err
    cp = tmp_path / "cp.json"
    code, out, _ = run_cli(*w, "ledger", "checkpoint", "--key", str(key), "--out", str(cp))
    assert code == 0 and "checkpoint of 1 entries" in out
    assert json.loads(cp.read_text())["key_id"] != printed["key_id"]
    assert run_cli(*w, "compute", "add", "--model", "b", "--flops", "1e20")[0] == 0
    pub = f"{key}.pub"
    code, out, _ = run_cli(*w, "ledger", "verify", "--checkpoint", str(cp), "--checkpoint-key", pub)
    assert code == 0 and out.startswith("ok: 2 entries")
    code, out, _ = run_cli(*w, "ledger", "verify", "--checkpoint", str(cp))
    assert code == 1 and "pass its key with --checkpoint-key" in out
    # A file that is not a checkpoint is a usage error naming it.
    bad = tmp_path / "bad.json"
    bad.write_text('{"count": -1}')
    code, _, err = run_cli(*w, "ledger", "verify", "--checkpoint", str(bad))
    assert code == 2 and str(bad) in err and len(err.splitlines()) == 1


def test_a_checkpoint_file_is_validated(tmp_path: Path) -> None:
    path = tmp_path / "cp.json"
    path.write_text(json.dumps({"version": 1, "count": 1}))
    with pytest.raises(UserError, match="not a ledger checkpoint"):
        read_checkpoint(path)
    with pytest.raises(UserError, match="cannot read"):
        read_checkpoint(tmp_path / "none.json")
    with pytest.raises(UserError, match="larger than 65536 bytes"):
        read_checkpoint(Path("/dev/zero"))  # read with a bound, not forever
