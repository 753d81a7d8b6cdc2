"""Red-teaming: a 1,000-prompt campaign on a local lab model against a transformers pipeline.

PyRIT's and garak's Hugging Face targets call a local model through a ``transformers``
text-generation pipeline, one prompt at a time. The reference here does exactly that on the
same prompts, with the same decoding (greedy, at most ``MAX_NEW`` new tokens, stopping at the end
of the assistant's line): ``pipeline("text-generation", model, tokenizer)(text,
max_new_tokens=MAX_NEW, do_sample=False, stop_strings=["\\n"], tokenizer=tok,
return_full_text=False)``.

Ours is the whole campaign, ``run_campaign`` (best-of-N, every sample kept, budget 10, over the
lab world's 96 behaviours, plus the direct baseline: 1,056 prompts) with the lab judge, and its
Inspect log written. The responses must agree with the pipeline's (printed: the share equal).

Second line: streaming output classification (``lab-leak`` checking every new token of every
row, shadow mode so no row stops early) against the same generation without it: at most 20 %
added; the time spent inside the classifier hook is printed too (less noisy than the
difference of two timings). Interleaved rounds, best of each; torch on ``THREADS`` threads on both sides.

Target: ours at least 5x the pipeline's prompts per second.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

TARGET = 5.0
STREAM_TARGET = 1.20
ROUNDS = 2
STREAM_ROUNDS = 3
MAX_NEW = 24
THREADS = int(os.environ.get("SAFESCALE_BENCH_THREADS", "1"))


def main() -> bool:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline
    from transformers.utils import logging as hf_logging

    from safescale.lab import LadderPreset, TrainConfig, train_ladder
    from safescale.redteam import (
        CampaignConfig,
        LabJudge,
        LocalTarget,
        attack_families,
        lab_behaviours,
        make_classifier,
        run_campaign,
        write_campaign_log,
    )

    torch.set_num_threads(THREADS)
    hf_logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        preset = LadderPreset(
            name="bench",
            sizes=("s3",),
            tokens=(100_000,),
            corpus_tokens=100_000,
            train=TrainConfig(
                seq_len=64, batch_size=16, lr=6e-3, checkpoint_every=1000, val_blocks=16
            ),
        )
        model_dir = Path(train_ladder(preset, root / "ladder", progress=False).runs[0].path)
        behaviours = lab_behaviours(0)
        cfg = CampaignConfig(budget=10, seed=0, stop_on_success=False)

        def ours() -> tuple[float, object]:
            t0 = time.perf_counter()
            target = LocalTarget(model_dir, max_new_tokens=MAX_NEW)
            result = run_campaign(
                target, attack_families(["best-of-n"]), behaviours, LabJudge(0), cfg
            )
            write_campaign_log(result, root / "logs")
            return time.perf_counter() - t0, result

        tok = AutoTokenizer.from_pretrained(str(model_dir))
        model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
        pipe = pipeline("text-generation", model=model, tokenizer=tok, device="cpu")

        def reference(prompts: list[str]) -> tuple[float, list[str]]:
            t0 = time.perf_counter()
            out = []
            for p in prompts:
                text = f"User: {p}\nAssistant:"
                got = pipe(
                    text,
                    max_new_tokens=MAX_NEW,
                    do_sample=False,
                    stop_strings=["\n"],
                    tokenizer=tok,
                    return_full_text=False,
                    pad_token_id=tok.eos_token_id,
                )
                out.append(got[0]["generated_text"].split("\n", 1)[0].strip())
            return time.perf_counter() - t0, out

        leak = make_classifier("lab-leak", {})

        hook_seconds: list[float] = []

        def generation(stream: bool, prompts: list[str]) -> float:
            layers = [(leak, 1)] if stream else []
            target = LocalTarget(
                model_dir, max_new_tokens=MAX_NEW, output_layers=layers, stop=False
            )
            t0 = time.perf_counter()
            target.generate(prompts)
            if stream:
                hook_seconds.append(target.stream.seconds)
            return time.perf_counter() - t0

        t_ours, t_ref, t_plain, t_stream = [], [], [], []
        result = None
        ref_texts: list[str] = []
        for _ in range(ROUNDS):
            s, result = ours()
            t_ours.append(s)
            prompts = [a.prompt for a in result.attempts]  # type: ignore[attr-defined]
            s, ref_texts = reference(prompts)
            t_ref.append(s)
            for _ in range(STREAM_ROUNDS):  # cheap, and noisier than the main line: more rounds
                t_plain.append(generation(False, prompts))
                t_stream.append(generation(True, prompts))
        assert result is not None
        n = len(result.attempts)  # type: ignore[attr-defined]
        same = sum(a.response == r for a, r in zip(result.attempts, ref_texts, strict=True))  # type: ignore[attr-defined]
        ours_pps, ref_pps = n / min(t_ours), n / min(t_ref)
        ratio = ours_pps / ref_pps
        stream = min(t_stream) / min(t_plain)
        print(f"prompts: {n} ({len(behaviours)} behaviours, best-of-n budget 10, plus direct)")
        print(f"pipeline, one prompt at a time: {min(t_ref):.2f} s ({ref_pps:.0f} prompts/s)")
        print(
            f"run_campaign (judged, Inspect log written): {min(t_ours):.2f} s ({ours_pps:.0f} prompts/s)"
        )
        print(
            f"ratio: {ratio:.2f}x (target >= {TARGET}x): {'met' if ratio >= TARGET else 'MISSED'}"
        )
        print(f"responses equal to the pipeline's: {same}/{n}")
        print(
            f"streaming output classifier: {min(t_stream):.2f} s vs {min(t_plain):.2f} s without "
            f"(+{stream - 1:.1%}, target <= +{STREAM_TARGET - 1:.0%}): "
            f"{'met' if stream <= STREAM_TARGET else 'MISSED'}"
        )
        print(
            f"time inside the classifier hook: {min(hook_seconds):.3f} s "
            f"({min(hook_seconds) / min(t_plain):.1%} of generation without it)"
        )
        return ratio >= TARGET and stream <= STREAM_TARGET


if __name__ == "__main__":
    import sys

    sys.exit(0 if main() else 1)
