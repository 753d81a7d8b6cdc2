"""The ledger contract, on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from safescale import UserError
from safescale.ledger import KeyPair, Workspace, verify_export
from safescale.policy import ModelRecord

from .helpers import evidence, model


def test_append_and_read_back(ws: Workspace) -> None:
    e1 = ws.append_model(model(0, assessed=True))
    entries = ws.append_many([evidence(i) for i in range(3)])
    assert e1.seq == 1 and [e.seq for e in entries] == [2, 3, 4]
    assert entries[0].prev_hash == e1.entry_hash
    # One transaction, one signed head that every entry of it carries.
    assert {e.signed_seq for e in entries} == {4}
    assert len({e.signature for e in entries}) == 1
    assert [m.id for m in ws.models()] == ["m0"]
    assert [e.id for e in ws.evidence("m0")] == ["e0", "e1", "e2"]
    assert ws.evidence("other") == []
    assert ws.entries()[1].record() == evidence(0).model_copy(
        update={"created": ws.evidence()[0].created}
    )
    report = ws.verify()
    assert report.ok, report.problems
    assert (report.entries, report.signatures) == (4, 2)
    assert report.head == entries[-1].entry_hash


def test_reopen_by_path_and_env(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    ws.append_model(model(0))
    again = Workspace.open(ws.root.parent)  # the folder holding .safescale works too
    assert [m.id for m in again.models()] == ["m0"]
    again.close()
    monkeypatch.setenv("SAFESCALE_HOME", str(ws.root))
    found = Workspace.find()
    assert found is not None and found.root == ws.root
    found.close()


def test_missing_workspace_says_run_init(tmp_path: Path) -> None:
    assert Workspace.find(tmp_path / "none") is None
    with pytest.raises(UserError, match="safescale init"):
        Workspace.open(tmp_path / "none")


def test_init_refuses_to_overwrite(ws: Workspace) -> None:
    with pytest.raises(UserError, match="already exists"):
        Workspace.init(ws.root)


def test_artifacts_are_content_addressed(ws: Workspace, tmp_path: Path) -> None:
    sha = ws.add_artifact(b"an eval log")
    (tmp_path / "f.txt").write_bytes(b"an eval log")
    assert ws.add_artifact(tmp_path / "f.txt") == sha
    assert ws.artifact_path(sha).read_bytes() == b"an eval log"
    ws.append_evidence(evidence(0, artifacts={"log": sha}))
    assert ws.verify().ok
    ws.artifact_path(sha).write_bytes(b"an eval log, edited")
    report = ws.verify()
    assert not report.ok and report.bad_seqs == {1}
    assert report.problems[0].what == "artifact"


def test_missing_artifact_is_reported(ws: Workspace) -> None:
    sha = ws.add_artifact(b"x")
    ws.append_evidence(evidence(0, artifacts={"log": sha}))
    ws.artifact_path(sha).unlink()
    report = ws.verify()
    assert [(p.seq, p.what) for p in report.problems] == [(1, "artifact")]


def test_other_public_key_fails_clearly(ws: Workspace) -> None:
    ws.append_many([model(0), model(1)])
    other = KeyPair.generate()
    from safescale.ledger._keys import public_pem

    report = ws.verify(public_pem(other.public))
    assert not report.ok
    key_problem = [p for p in report.problems if p.what == "key"]
    assert len(key_problem) == 1
    assert "none of the 1 signatures verifies" in key_problem[0].message
    assert ws.keys.id in key_problem[0].message


def test_export_verifies_without_database(ws: Workspace) -> None:
    ws.append_model(model(0))
    ws.append_many([evidence(i) for i in range(4)])
    text = ws.export().model_dump_json()
    ws.close()
    assert verify_export(text, ws.public_key_pem()).ok
    tampered = text.replace('"value\\":0.25', '"value\\":0.05', 1)
    assert tampered != text
    report = verify_export(tampered, ws.public_key_pem())
    assert report.bad_seqs == {2}


def test_models_lists_each_id_once(ws: Workspace) -> None:
    ws.append_model(ModelRecord(id="a", flops=1.0))
    ws.append_model(ModelRecord(id="a", flops=2.0, assessed=True))
    assert [(m.id, m.flops) for m in ws.models()] == [("a", 2.0)]


def test_bad_config_names_the_field(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "w")
    ws.close()
    cfg = tmp_path / "w" / "safescale.toml"
    cfg.write_text(cfg.read_text() + "colour = 1\n")
    with pytest.raises(UserError) as info:
        Workspace.open(tmp_path / "w")
    assert "colour" in str(info.value) and "safescale.toml" in str(info.value)


def test_author_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFESCALE_AUTHOR", "rso@lab.example")
    with Workspace.init(tmp_path / "w") as ws:
        assert ws.append_model(model(0)).author == "rso@lab.example"
    with Workspace.init(tmp_path / "v", author="ceo@lab.example") as ws:
        assert ws.append_model(model(0)).author == "ceo@lab.example"


def test_head_is_the_last_entry_hash(tmp_path):
    from safescale.ledger import Workspace
    from safescale.policy import ModelRecord

    ws = Workspace.init(tmp_path / "ws")
    assert ws.head() is None
    ws.append_model(ModelRecord(id="a", flops=1e20))
    entry = ws.append_model(ModelRecord(id="b", flops=2e20))
    assert ws.head() == entry.entry_hash == ws.entries()[-1].entry_hash


def test_every_append_path_refuses_a_parent_that_is_not_recorded(ws: Workspace) -> None:
    # The raw appends as well as append_new_model: a lineage is a tree of recorded models.
    child = model(1).model_copy(update={"parent": "ghost"})
    for append in (ws.append_model, ws.append, lambda r: ws.append_many([r])):
        with pytest.raises(UserError, match="'ghost' of model 'm1' is not recorded"):
            append(child)
    with pytest.raises(UserError, match="names itself as its parent"):
        ws.append_model(model(1).model_copy(update={"parent": "m1"}))
    assert ws.entries() == []
    # A parent recorded earlier in the same transaction, or before, is accepted.
    ws.append_many([model(0), model(1).model_copy(update={"parent": "m0"})])
    ws.append_model(model(2).model_copy(update={"parent": "m1"}))
    assert [m.parent for m in ws.models()] == [None, "m0", "m1"]
    assert ws.verify().ok
