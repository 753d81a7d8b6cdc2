"""Lab training throughput: the fast loop against the plain reference loop, and MFU.

For each demo ladder size, in fp32 and in bf16: tokens per second of ``train_model`` (packing,
fused AdamW, bf16 autocast in the bf16 pass) and its model FLOP utilisation against this
machine's matmul peak in that precision, measured in the same run. On the largest demo size
the plain reference loop (fp32, one padded document per row, Hugging Face forward with labels,
torch AdamW) runs on the same model and data. Target: at least 2x the reference's tokens per
second in both precisions. Last, what certifying an organism costs against fine-tuning it.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from safescale import UserError
from safescale.lab import (
    LADDER_PRESETS,
    SIZES,
    ModelSize,
    build_model,
    measure_matmul_speed,
    resolve_precision,
    train_model,
    write_corpus,
)
from safescale.lab._data import encode_documents
from safescale.lab._reference import reference_train

TARGET = 2.0


def matmul_peak(dtype: torch.dtype, n: int = 1024, reps: int = 20) -> float:
    """Best FLOP/s of an n x n matmul in ``dtype`` on this machine, now."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def flops_per_token(size: ModelSize, seq_len: int, vocab: int) -> float:
    """Training FLOP per token: 6N + attention scores (Kaplan et al. 2020) + the output head."""
    return (
        6 * size.non_embedding_params()
        + 6 * size.n_layers * seq_len * size.d_model
        + 6 * size.d_model * vocab
    )


def main() -> bool:
    torch.set_num_threads(2)
    preset = LADDER_PRESETS["demo"]
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_corpus(Path(tmp) / "corpus", tokens=100_000, seed=0)
        vocab = 2048
        largest = SIZES[preset.sizes[-1]]
        docs = encode_documents(corpus.path / "train.txt", corpus.path / "tokenizer")
        model = build_model(largest, vocab, preset.train.seq_len, seed=0)
        ref = reference_train(
            model,
            docs,
            seq_len=preset.train.seq_len,
            batch_size=preset.train.batch_size,
            steps=40,
            lr=1e-3,
        )
        print(
            f"{largest.name} reference (fp32, padded, HF labels, torch AdamW): "
            f"{ref.tokens_per_second:,.0f} tok/s"
        )
        speed = measure_matmul_speed()
        print(
            f"matmul 512x512: fp32 {speed.fp32_gflops:.0f} GFLOP/s, bf16 "
            f"{speed.bf16_gflops:.0f} GFLOP/s; --precision auto takes "
            f"{resolve_precision('auto', torch.device('cpu'))}"
        )
        last = None
        for precision in ("fp32", "bf16"):
            peak = matmul_peak(torch.bfloat16 if precision == "bf16" else torch.float32)
            print(f"-- {precision}: matmul peak (1024, measured) {peak / 1e9:.1f} GFLOP/s")
            ours_tps = 0.0
            for name in preset.sizes:
                size = SIZES[name]
                cfg = replace(
                    preset.train,
                    size=size,
                    tokens=preset.train.batch_size * preset.train.seq_len * 40,
                    precision=precision,  # type: ignore[arg-type]
                )
                folder = Path(tmp) / f"{name}-{precision}"
                rec = train_model(cfg, corpus.path, folder).record
                mfu = rec.tokens_per_second * flops_per_token(size, cfg.seq_len, vocab) / peak
                tps = rec.tokens_per_second
                print(f"{name}: N={rec.params:>9,}  ours {tps:>8,.0f} tok/s  MFU {mfu:.1%}")
                ours_tps, last = tps, folder
            ratio = ours_tps / ref.tokens_per_second
            print(
                f"{largest.name} {precision}: ours/reference = {ratio:.2f}x (target >= {TARGET}x)"
            )
            ok = ok and ratio >= TARGET
        assert last is not None
        ok = _certification_cost(last, corpus.path) and ok
    return ok


def _certification_cost(base: Path, corpus: Path) -> bool:
    """What certifying an organism costs, against fine-tuning it (one round)."""
    from safescale.lab import OrganismConfig, build_organism, load_certificate

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            build_organism("chat", base, corpus, Path(tmp) / "chat", OrganismConfig(max_rounds=1))
        except UserError as exc:  # a 40-step base may not learn it: the cost is what we time
            print(f"(certificate failed on this tiny base, as it may: {exc})")
        total = time.perf_counter() - t0
        cert = load_certificate(Path(tmp) / "chat")
    if cert is not None:
        share = cert.seconds / total
        print(
            f"chat organism: fine-tune + certify {total:.1f} s, of which certification "
            f"{cert.seconds:.1f} s ({share:.0%}; {sum(c.n for c in cert.claims)} held-out prompts)"
        )
    return True
