"""``safescale ledger verify|log|export`` end to end."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from safescale.ledger import KeyPair
from safescale.ledger._keys import public_pem


def test_verify_log_export(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ws = tmp_path / "w"
    assert run_cli("--workspace", str(ws), "init")[0] == 0
    assert (
        run_cli("--workspace", str(ws), "compute", "add", "--model", "m", "--flops", "1e20")[0] == 0
    )
    code, out, _ = run_cli("--workspace", str(ws), "ledger", "verify")
    assert code == 0 and out.startswith("ok: 1 entries")
    code, out, _ = run_cli("--workspace", str(ws), "ledger", "log")
    assert code == 0 and "model" in out
    export = tmp_path / "export.json"
    assert run_cli("--workspace", str(ws), "ledger", "export", "--json", "-o", str(export))[0] == 0
    doc = json.loads(export.read_text())
    assert doc["count"] == 1 and "BEGIN PUBLIC KEY" in doc["public_key_pem"]
    key = tmp_path / "key.pem"
    key.write_text(doc["public_key_pem"])
    assert run_cli("ledger", "verify", "--export", str(export), "--public-key", str(key))[0] == 0
    # Another key: exit 1 with a message that names the keys.
    key.write_text(public_pem(KeyPair.generate().public))
    code, out, _ = run_cli("ledger", "verify", "--export", str(export), "--public-key", str(key))
    assert code == 1 and "none of the 1 signatures verifies" in out
    # A changed payload: exit 1 with the sequence number.
    with sqlite3.connect(ws / "ledger.sqlite") as db:
        db.execute("UPDATE entries SET payload = replace(payload, '1e+20', '1e+19')")
    code, out, _ = run_cli("--workspace", str(ws), "ledger", "verify", "--json")
    assert code == 1 and json.loads(out)["problems"][0]["seq"] == 1


def test_export_file_errors_exit_2(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    code, _, err = run_cli("ledger", "verify", "--export", str(bad))
    assert code == 2 and "bad.json" in err
