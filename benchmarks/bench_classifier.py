"""Constitutional classifiers: training time, input throughput, streaming cost per token.

1. Training the input and output classifiers on the lab's data set (the constitution's default
   lab data: 1,200 plain requests, every augmentation family) with the default configuration.
   Target: under 2 minutes.
2. Input classification throughput: the test split's prompts scored in batches (ours) against
   one prompt at a time (the reference), prompts per second and the ratio.
3. Streaming output classification, per generated token: the test split's exchanges replayed
   token by token in batches of 64 rows through a :class:`StreamSession` (key/value cache: each
   step reads only the new tokens) against the named reference, running the classifier once on
   the whole output after generation; and against re-reading every prefix without a cache
   (what a text-only streaming hook would do). Printed: milliseconds per token and the ratios.

Torch on ``THREADS`` threads (``SAFESCALE_BENCH_THREADS``, default 1); best of ``ROUNDS``.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

TRAIN_TARGET_S = 120.0
ROUNDS = 3
BATCH = 64
THREADS = int(os.environ.get("SAFESCALE_BENCH_THREADS", "1"))


def main() -> bool:
    import torch
    from transformers.utils import logging as hf_logging

    from safescale.constitution import (
        StreamSession,
        generate_lab_dataset,
        lab_constitution,
        load_classifier,
        load_constitution,
        train_classifiers,
    )

    torch.set_num_threads(THREADS)
    hf_logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ds = generate_lab_dataset(load_constitution(lab_constitution()))
        print(f"lab data set: {len(ds.examples)} examples in {time.perf_counter() - t0:.1f} s")
        trained = train_classifiers(ds, Path(tmp) / "clf")
        print(
            f"training both classifiers: {trained.seconds:.1f} s (input "
            f"{trained.input.card.training['seconds']:.1f} s, output "
            f"{trained.output.card.training['seconds']:.1f} s; target < {TRAIN_TARGET_S:.0f} s): "
            f"{'met' if trained.seconds < TRAIN_TARGET_S else 'MISSED'}"
        )
        inp = load_classifier(trained.path, "input")
        out = load_classifier(trained.path, "output")

        prompts = [e.prompt for e in ds.examples if e.stage == "input" and e.split == "test"]
        t_batch, t_one = [], []
        for _ in range(ROUNDS):
            t = time.perf_counter()
            batched = inp.scores(prompts)
            t_batch.append(time.perf_counter() - t)
            t = time.perf_counter()
            single = [inp.scores([p])[0] for p in prompts]
            t_one.append(time.perf_counter() - t)
        worst = max(abs(a - b) for a, b in zip(batched, single, strict=True))
        ours, ref = len(prompts) / min(t_batch), len(prompts) / min(t_one)
        print(
            f"input classifier, {len(prompts)} prompts: batched {ours:.0f} prompts/s, one at a "
            f"time {ref:.0f} prompts/s: {ours / ref:.1f}x (largest score difference {worst:.1e})"
        )

        exchanges = [
            (e.prompt, e.response) for e in ds.examples if e.stage == "output" and e.split == "test"
        ]
        tok = out.tokenizer
        pieces = []
        for _, r in exchanges:
            ids = tok(r.strip(), add_special_tokens=False)["input_ids"]
            pieces.append([tok.decode(ids[: i + 1]) for i in range(len(ids))])
        tokens = sum(len(p) for p in pieces)

        def streamed() -> tuple[float, list[float]]:
            t = time.perf_counter()
            final: list[float] = []
            for b in range(0, len(exchanges), BATCH):
                rows = list(range(b, min(b + BATCH, len(exchanges))))
                session = StreamSession(out, [exchanges[i][0] for i in rows])
                last = [0.0] * len(rows)
                for step in range(max(len(pieces[i]) for i in rows)):
                    live = [j for j, i in enumerate(rows) if step < len(pieces[i])]
                    values = session.scores(live, [pieces[rows[j]][step] for j in live])
                    for j, v in zip(live, values, strict=True):
                        last[j] = v
                final += last
            return time.perf_counter() - t, final

        def after() -> tuple[float, list[float]]:
            t = time.perf_counter()
            values = out.scores([r for _, r in exchanges], [p for p, _ in exchanges])
            return time.perf_counter() - t, values

        def no_cache() -> float:
            t = time.perf_counter()
            for b in range(0, len(exchanges), BATCH):
                rows = list(range(b, min(b + BATCH, len(exchanges))))
                for step in range(max(len(pieces[i]) for i in rows)):
                    live = [i for i in rows if step < len(pieces[i])]
                    out.scores([pieces[i][step] for i in live], [exchanges[i][0] for i in live])
            return time.perf_counter() - t

        t_stream, t_after, t_nocache = [], [], []
        for _ in range(ROUNDS):
            s, final_stream = streamed()
            t_stream.append(s)
            s, final_after = after()
            t_after.append(s)
            t_nocache.append(no_cache())
        worst = max(abs(a - b) for a, b in zip(final_stream, final_after, strict=True))
        per = {k: min(v) / tokens * 1000 for k, v in
               (("stream", t_stream), ("after", t_after), ("nocache", t_nocache))}  # fmt: skip
        print(f"output classifier, {len(exchanges)} exchanges, {tokens} response tokens:")
        print(
            f"  streaming with the cache: {per['stream']:.3f} ms/token; whole output after "
            f"generation (reference): {per['after']:.3f} ms/token: streaming costs "
            f"{per['stream'] / per['after']:.1f}x the reference, and stops a harmful output early"
        )
        print(
            f"  streaming without a cache (every prefix re-read): {per['nocache']:.3f} ms/token: "
            f"the cache is {per['nocache'] / per['stream']:.1f}x faster "
            f"(final scores equal to the reference within {worst:.1e})"
        )
        return trained.seconds < TRAIN_TARGET_S and worst < 1e-4


if __name__ == "__main__":
    import sys

    sys.exit(0 if main() else 1)
