"""``safescale interp ...`` end to end on a lab model, and its handling of bad input."""

import json

import pytest


@pytest.fixture(scope="module")
def texts_file(smoke_ladder, tmp_path_factory):  # type: ignore[no-untyped-def]
    docs = (smoke_ladder.corpus.path / "val.txt").read_text().split("\n\n")[:120]
    path = tmp_path_factory.mktemp("texts") / "texts.txt"
    path.write_text("\n\n".join(docs))
    return path


def test_capture_train_eval(run_cli, smoke_ladder, texts_file, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = str(smoke_ladder.runs[-1].path)
    cache, sae = tmp_path / "cache", tmp_path / "sae"
    code, out, err = run_cli(
        "interp",
        "capture",
        "--model",
        model,
        "--texts",
        str(texts_file),
        "--out",
        str(cache),
        "--hookpoint",
        "layers.1.mlp_out",
        "--shard-tokens",
        "1000",
    )
    assert code == 0, err
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["hookpoint"] == "layers.1.mlp_out" and len(manifest["shards"]) > 1
    code, out, err = run_cli(
        "interp",
        "sae",
        "train",
        "--cache",
        str(cache),
        "--out",
        str(sae),
        "--d-sae",
        "256",
        "--k",
        "8",
        "--tokens",
        "60000",
        "--batch-size",
        "512",
        "--json",
    )
    assert code == 0, err
    trained = json.loads(out)
    assert trained["l0"]["value"] == pytest.approx(8.0)
    assert (sae / "cfg.json").is_file() and (sae / "sae_weights.safetensors").is_file()
    code, out, err = run_cli(
        "interp",
        "sae",
        "eval",
        "--sae",
        str(sae),
        "--cache",
        str(cache),
        "--model",
        model,
        "--texts",
        str(texts_file),
        "--limit",
        "40",
        "--json",
    )
    assert code == 0, err
    ev = json.loads(out)
    assert 0 < ev["fvu"]["value"] < 0.5 and ev["fvu"]["n"] == manifest["tokens"]
    lm = ev["lm_loss"]
    # Splicing the SAE in costs less than ablating the site, whichever ablation.
    assert lm["clean"]["value"] <= lm["sae"]["value"] < lm["zero"]["value"]
    assert lm["recovered_zero"]["value"] > 0.5 and lm["recovered_mean"]["n"] == 40


def test_probe_on_labelled_data(run_cli, smoke_ladder, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Do the activations tell a restricted request from a benign question? (They should:
    # the model refuses one and answers the other.)
    rows = []
    for line in (smoke_ladder.corpus.path / "eval" / "refusal.jsonl").read_text().splitlines()[:30]:
        rows.append({"text": json.loads(line)["input"], "label": 1})
    for line in (
        (smoke_ladder.corpus.path / "eval" / "fact_recall.jsonl").read_text().splitlines()[:30]
    ):
        q = json.loads(line)["input"].split("\n")[0].replace("Question: ", "")
        rows.append({"text": f"User: {q}\nAssistant:", "label": 0})
    data = tmp_path / "probe.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    code, out, err = run_cli(
        "interp",
        "probe",
        "--model",
        str(smoke_ladder.runs[-1].path),
        "--data",
        str(data),
        "--hookpoint",
        "layers.1.resid_post",
        "--json",
    )
    assert code == 0, err
    r = json.loads(out)
    assert r["auroc"]["value"] > 0.9 and r["auroc"]["method"] == "delong"
    assert r["n_pos"] == r["n_neg"] == 30


def test_bad_input_is_one_line_and_exit_2(run_cli, smoke_ladder, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = str(smoke_ladder.runs[-1].path)
    out_dir = tmp_path / "never"
    code, _, err = run_cli(
        "interp",
        "capture",
        "--model",
        model,
        "--texts",
        str(tmp_path / "missing.txt"),
        "--out",
        str(out_dir),
    )
    assert code == 2 and "text file not found" in err and not out_dir.exists()
    code, _, err = run_cli(
        "interp", "sae", "train", "--cache", str(tmp_path), "--out", str(out_dir)
    )
    assert code == 2 and "not an activation cache" in err and not out_dir.exists()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": 1}\n{"text": "b"}\n')
    code, _, err = run_cli("interp", "probe", "--model", model, "--data", str(bad))
    assert code == 2 and f"{bad}:2" in err and len(err.strip().splitlines()) == 1
    cfg = tmp_path / "audit.yaml"
    cfg.write_text("checks:\n  - id: x\n    kind: feature\n")
    code, _, err = run_cli(
        "audit", "--model", model, "--corpus", str(smoke_ladder.corpus.path), "--config", str(cfg)
    )
    assert code == 2 and "checks[0].concept" in err


def test_synthetic_gate_command(run_cli) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run_cli("interp", "synthetic", "--json")
    assert code == 0, err
    assert json.loads(out)["mmcs"] >= 0.99
