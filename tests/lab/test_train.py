import itertools
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from tests.conftest import torch_threads
from transformers import AutoModelForCausalLM, AutoTokenizer

from safescale.lab import SIZES, TrainConfig, build_model, load_train_result, train_model
from safescale.lab._data import encode_documents, pack
from safescale.lab._train import lm_loss, lr_at

TINY = TrainConfig(
    size=SIZES["s0"],
    tokens=16 * 64 * 40,
    seq_len=64,
    precision="fp32",
    checkpoint_every=5,
    val_blocks=16,
)


def test_fast_loss_equals_hugging_face_loss_with_labels(small_corpus: Path) -> None:
    blocks = pack(encode_documents(small_corpus / "val.txt", small_corpus / "tokenizer"), 32)[:4]
    model = build_model(SIZES["s0"], 2048, 32, seed=0)
    # The reference loop's loss: Hugging Face shifts the labels inside the model.
    ref = model(input_ids=blocks, labels=blocks).loss
    ours = lm_loss(model, blocks, bf16=False)
    assert math.isfinite(ours.item())
    assert torch.allclose(ours, ref, atol=1e-5)


def test_bf16_loss_is_close_to_fp32(small_corpus: Path) -> None:
    blocks = pack(encode_documents(small_corpus / "val.txt", small_corpus / "tokenizer"), 32)[:4]
    model = build_model(SIZES["s1"], 2048, 32, seed=0)
    assert abs(float(lm_loss(model, blocks, True)) - float(lm_loss(model, blocks, False))) < 0.05


def test_learning_rate_schedule() -> None:
    cfg = replace(TINY, warmup_frac=0.1, lr=1e-3, min_lr_ratio=0.1)
    lrs = [lr_at(s, cfg) for s in range(cfg.steps)]
    assert lrs[0] < lrs[3] == pytest.approx(1e-3)
    assert lrs[-1] == pytest.approx(1e-4, rel=0.05)
    assert all(a >= b for a, b in itertools.pairwise(lrs[4:]))


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="lr"):
        replace(TINY, lr=0)
    with pytest.raises(ValueError, match="tokens"):
        replace(TINY, tokens=10)


def test_trained_run_loads_with_auto_classes_and_has_a_record(
    small_corpus: Path, tmp_path: Path
) -> None:
    result = train_model(TINY, small_corpus, tmp_path / "run", name="tiny")
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path / "run"))
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "run"))
    out = model.generate(**tok("Question: What is 2 + 2?", return_tensors="pt"), max_new_tokens=3)
    assert out.shape[1] > 3
    rec = result.model_record
    assert rec.params == SIZES["s0"].non_embedding_params()
    assert rec.tokens == TINY.tokens_trained
    assert rec.flops == pytest.approx(6 * rec.params * rec.tokens)
    assert rec.extra["val_loss"] == result.record.val_loss
    assert len(rec.extra["loss_curve"]) == TINY.steps // TINY.log_every
    first, last = rec.extra["loss_curve"][0][1], rec.extra["loss_curve"][-1][1]
    assert last < first - 1.0  # it learned something
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    assert load_train_result(tmp_path / "run").record == result.record


_CHILD = """
import sys, torch
from dataclasses import replace
from safescale.lab import SIZES, TrainConfig, train_model
torch.set_num_threads(1)
cfg = TrainConfig(size=SIZES["s0"], tokens=16 * 64 * 200, seq_len=64, precision="fp32",
                  checkpoint_every=5, val_blocks=16, threads=1)
train_model(cfg, sys.argv[1], sys.argv[2])
"""


@pytest.mark.slow
def test_resume_after_sigkill_matches_an_uninterrupted_run(
    small_corpus: Path, tmp_path: Path
) -> None:
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(small_corpus), str(killed)], env=env
    )
    deadline = time.monotonic() + 120
    while not (killed / "checkpoint.pt").exists():
        assert child.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.3)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert not (killed / "train_record.json").exists()  # it really died mid-run
    cfg = TrainConfig(
        size=SIZES["s0"],
        tokens=16 * 64 * 200,
        seq_len=64,
        precision="fp32",
        checkpoint_every=5,
        val_blocks=16,
        threads=1,
    )
    ckpt = torch.load(killed / "checkpoint.pt", weights_only=False)
    assert 0 < ckpt["state"]["step"] < cfg.steps
    resumed = train_model(cfg, small_corpus, killed)
    straight = train_model(cfg, small_corpus, tmp_path / "straight")
    assert resumed.record.val_loss == pytest.approx(straight.record.val_loss, abs=1e-3)
    torch.set_num_threads(torch_threads())
