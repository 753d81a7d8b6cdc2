"""Keys, an existing database and edited checkpoints: each refused before anything is signed
or overwritten (real workspaces, real files)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from safescale.ledger import Workspace

from .helpers import model


def _ws(root: Path, n: int = 2) -> Path:
    with Workspace.init(root / ".safescale", author="t") as ws:
        for i in range(n):
            ws.append(model(i))
    return root / ".safescale"


def test_keygen_never_replaces_a_public_key(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "k.pem.pub").write_text("old\n")
    code, _, err = run_cli("ledger", "keygen", str(tmp_path / "k.pem"))
    assert code == 2 and "k.pem.pub: already exists" in err
    assert (tmp_path / "k.pem.pub").read_text() == "old\n"  # it was replaced without a word
    (tmp_path / "d.pem.pub").mkdir()
    code, _, err = run_cli("ledger", "keygen", str(tmp_path / "d.pem"))
    assert code == 2 and not (tmp_path / "d.pem").exists()  # it was left half-made
    code, _, _ = run_cli("ledger", "keygen", str(tmp_path / "ok.pem"))
    assert code == 0 and (tmp_path / "ok.pem.pub").exists()


def test_init_refuses_a_database_that_holds_a_ledger(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """It made a new key and a checkpoint of no entries over it: every old signature failed."""
    old = _ws(tmp_path / "old")
    new = tmp_path / "new"
    new.mkdir()
    shutil.copy(old / "ledger.sqlite", new / "ledger.sqlite")
    before = (new / "ledger.sqlite").read_bytes()
    code, _, err = run_cli("--workspace", str(new), "init")
    assert code == 2, err
    assert err.strip() == (
        f"error: {new}/ledger.sqlite: the database already holds a ledger (2 entries); open the "
        "workspace it belongs to, or give a new database (--database-url)"
    )
    made = [p.name for p in new.iterdir() if not p.name.endswith(("-wal", "-shm"))]
    assert made == ["ledger.sqlite"]  # (SQLite's side files aside, as everywhere)
    assert (new / "ledger.sqlite").read_bytes() == before


def test_an_append_refuses_a_public_key_that_is_not_the_signing_keys(
    run_cli, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """The entries were signed and only verification failed, afterwards."""
    ws, other = _ws(tmp_path / "a"), _ws(tmp_path / "b")
    pub = ws / "keys" / "ed25519.pub.pem"
    shutil.copy(other / "keys" / "ed25519.pub.pem", pub)
    args = ("--workspace", str(ws), "compute", "add", "--model", "n", "--flops", "1e20")
    code, _, err = run_cli(*args)
    assert code == 1, err
    assert err.startswith(f"error: {pub}: is not the public half of the signing key"), err
    with Workspace.open(ws) as w:
        assert w.count() == 2
    pub.unlink()
    pub.mkdir()
    code, _, err = run_cli("--workspace", str(ws), "ledger", "verify")
    assert code == 2 and f"{pub}: is a folder, not the public key" in err, err


@pytest.mark.parametrize("count", ['"2"', "2.0", "true"])
def test_a_checkpoint_whose_count_is_not_an_integer_does_not_verify(
    run_cli, tmp_path: Path, count: str
) -> None:  # type: ignore[no-untyped-def]
    ws = _ws(tmp_path)
    path = ws / "checkpoint.json"
    text = path.read_text()
    assert '"count": 2' in text
    path.write_text(text.replace('"count": 2', f'"count": {count}'))
    code, out, _ = run_cli("--workspace", str(ws), "ledger", "verify")
    assert code == 1 and "checkpoint" in out and "FAILED (1 problem)" in out, out
    kept = tmp_path / "kept.json"
    kept.write_text(json.dumps({**json.loads(text), "count": json.loads(count)}))
    path.write_text(text)
    code, out, err = run_cli("--workspace", str(ws), "ledger", "verify", "--checkpoint", str(kept))
    assert code != 0, out


def test_messages_about_missing_keys_and_empty_ledgers(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ws = _ws(tmp_path, n=0)
    code, out, _ = run_cli("--workspace", str(ws), "ledger", "verify")
    assert code == 0 and out.strip().endswith("head none (an empty ledger)"), out  # was "None"
    code, _, err = run_cli("--workspace", str(ws), "ledger", "checkpoint", "--key",
                           str(tmp_path / "nokey.pem"))  # fmt: skip
    # it said "signing key is missing; restore it from backup", as of the workspace's own
    assert code == 2 and err.strip() == (
        "error: --key: no such key file; give the path of the private key (PEM) to sign with"
    )
