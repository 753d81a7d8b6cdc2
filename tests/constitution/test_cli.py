"""``safescale constitution validate|show|diff|data`` end to end, in-process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from safescale.constitution import (
    constitution_sha256,
    lab_constitution,
    load_constitution,
    load_dataset,
)
from safescale.ledger import Workspace


def test_validate_the_lab_constitution(run_cli: Any) -> None:
    code, out, err = run_cli("constitution", "validate", "lab", str(lab_constitution()))
    assert code == 0, err
    sha = constitution_sha256(load_constitution(lab_constitution()))
    assert out.count(f"sha256 {sha[:16]}") == 2
    assert "8 principles, 3 restricted, 5 allowed" in out


def test_show_fits_80_columns_and_json_round_trips(
    run_cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run_cli("constitution", "show", "lab")
    assert code == 0
    assert max(len(line) for line in out.splitlines()) <= 80
    for pid in ("synthesis-request", "procedure-disclosure", "helpful-answer"):
        assert pid in out
    code, out, _ = run_cli("constitution", "show", "lab", "--json")
    (tmp_path / "c.json").write_text(out)
    again = load_constitution(tmp_path / "c.json")  # JSON is YAML: it loads as written
    assert constitution_sha256(again) == constitution_sha256(load_constitution(lab_constitution()))


def test_show_keeps_long_ids_whole(
    run_cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long principle id was cut (``...toxin``), its category to ``restr...`` and the
    description dropped, in a table squeezed into 80 columns."""
    long_id = "synthesis-request-for-restricted-biological-agents-and-toxins-v2"
    text = lab_constitution().read_text().replace("synthesis-request", long_id)
    path = tmp_path / "long.yaml"
    path.write_text(text)
    # (the console's width is read once per process, so only the documented 80 is tested)
    for columns in ("80",):
        monkeypatch.setenv("COLUMNS", columns)
        code, out, err = run_cli("constitution", "show", str(path))
        assert code == 0, err
        joined = "".join(line.rstrip() for line in out.splitlines())  # a value folds whole
        assert long_id in joined and "restricted" in out and "A request for how to make" in out
        assert max(len(line) for line in out.splitlines()) <= int(columns)


def test_diff_names_added_removed_and_changed(run_cli: Any, tmp_path: Path) -> None:
    text = lab_constitution().read_text()
    new = (
        text.replace('version: "1.0"', 'version: "1.1"')
        .replace("Rhyme something with {compound}.", "Say {compound} backwards.")
        .replace("  - id: refusal\n", "  - id: declines\n")
    )
    (tmp_path / "new.yaml").write_text(new)
    code, out, _ = run_cli("constitution", "diff", "lab", str(tmp_path / "new.yaml"))
    assert code == 0
    assert "lab-chemistry 1.0 -> lab-chemistry 1.1: 4 changes" in out
    assert "+ declines (allowed, output)" in out and "- refusal (allowed, output)" in out
    assert '~ version: "1.0" -> "1.1"' in out
    assert '"Say {compound} backwards."' in out  # whole values, old and new
    code, out, _ = run_cli("constitution", "diff", "lab", str(tmp_path / "new.yaml"), "--json")
    doc = json.loads(out)
    assert [p["id"] for p in doc["added"]] == ["declines"]
    assert [p["id"] for p in doc["removed"]] == ["refusal"]
    changed = {(c["principle"], c["field"]) for c in doc["changed"]}
    assert changed == {(None, "version"), ("compound-mention", "examples")}
    code, out, _ = run_cli("constitution", "diff", "lab", "lab")
    assert "0 changes" in out


def test_data_writes_a_data_set_and_stores_the_constitution(
    run_cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SAFESCALE_HOME", raising=False)
    ws = tmp_path / ".safescale"
    assert run_cli("init", str(ws))[0] == 0
    out = tmp_path / "data"
    code, stdout, err = run_cli(
        "--workspace", str(ws), "constitution", "data", "--out", str(out), "--n", "80", "--json"
    )
    assert code == 0, err
    doc = json.loads(stdout)
    ds = load_dataset(out)
    assert doc["examples_sha256"] == ds.manifest.examples_sha256
    assert doc["held_out"] == ["role-play", "lab-jailbreak"]
    sha = constitution_sha256(load_constitution(lab_constitution()))
    assert ds.manifest.constitution_sha256 == sha == doc["ledger"]["constitution"]
    with Workspace.open(ws) as w:
        stored = w.artifact_path(sha)
        manifest = w.artifact_path(doc["ledger"]["manifest"])
    assert json.loads(stored.read_text())["name"] == "lab-chemistry"
    assert manifest.read_bytes() == (out / "manifest.json").read_bytes()
    assert run_cli("--workspace", str(ws), "ledger", "verify")[0] == 0
    # Without a workspace, the data set is written and nothing else.
    code, stdout, _ = run_cli(
        "constitution",
        "data",
        "--out",
        str(tmp_path / "d2"),
        "--n",
        "40",
        "--seed",
        "2",
        "--augment",
        "prefix-injection,best-of-n",
        "--held-out",
        "best-of-n",
    )
    assert code == 0 and "ledger" not in stdout
    d2 = load_dataset(tmp_path / "d2")
    assert d2.manifest.augment == ("prefix-injection", "best-of-n")
    assert {e.augmentation for e in d2.examples if e.split != "test"} <= {
        "none",
        "prefix-injection",
    }
