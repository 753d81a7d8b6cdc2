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
