"""The fast log-likelihood path agrees with the simple reference path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safescale.evals import (
    ContextWarning,
    LocalModelConfig,
    LoglikelihoodGroup,
    load_local_model,
)


def _groups(lm, path: Path) -> list[LoglikelihoodGroup]:
    groups = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        ctx = f"Question: {row['question']}\nAnswer:"
        pairs = [lm.encode_pair(ctx, " " + c) for c in row["choices"]]
        groups.append(LoglikelihoodGroup(tuple(pairs[0][0]), tuple(tuple(p[1]) for p in pairs)))
    return groups


@pytest.mark.parametrize("batch_size", [3, 32])
def test_fast_path_matches_reference(model_dir: Path, mc_small: Path, batch_size: int) -> None:
    lm = load_local_model(LocalModelConfig(model_dir, batch_size=batch_size))
    groups = _groups(lm, mc_small)
    fast = lm.loglikelihood(groups)
    for g, scores in zip(groups, fast, strict=True):
        for cont, s in zip(g.continuations, scores, strict=True):
            ref = lm.loglikelihood_reference(g.context, cont)
            assert s.logprob == pytest.approx(ref.logprob, abs=1e-4)
            assert s.is_greedy == ref.is_greedy
            assert len(s.token_logprobs) == len(cont)


def test_truncation_single_tokens_and_empty_context(model_dir: Path) -> None:
    lm = load_local_model(LocalModelConfig(model_dir, max_length=12))
    long_ctx, _ = lm.encode_pair("The river of Zorbia is red and lies near Quell. Zorbia has", " 7")
    groups = [
        # longer than max_length + 1: scored by the reference path, left-truncated like lm-eval
        LoglikelihoodGroup(
            tuple(long_ctx), (tuple(lm.encode(" 12 towers")), tuple(lm.encode(" 7")))
        ),
        LoglikelihoodGroup(tuple(long_ctx[:4]), ((long_ctx[4],), (long_ctx[5],))),
    ]
    ctx, cont = lm.encode_pair("", "Zorbia")
    assert ctx == [lm.prefix_token_id]
    groups.append(LoglikelihoodGroup(tuple(ctx), (tuple(cont),)))
    with pytest.warns(ContextWarning, match="1 of 3 log-likelihood requests are longer"):
        fast = lm.loglikelihood(groups)
    for g, scores in zip(groups, fast, strict=True):
        for cont_ids, s in zip(g.continuations, scores, strict=True):
            assert s.logprob == pytest.approx(
                lm.loglikelihood_reference(g.context, cont_ids).logprob, abs=1e-4
            )
    assert all(s.logprob < 0 for scores in fast for s in scores)


def test_generation_is_deterministic_and_batched(model_dir: Path) -> None:
    lm = load_local_model(LocalModelConfig(model_dir, batch_size=2))
    prompts = [lm.encode("The river of"), lm.encode("Zorbia has"), lm.encode("The tower")]
    a = lm.generate(prompts, max_new_tokens=5)
    b = [lm.generate([p], max_new_tokens=5)[0] for p in prompts]
    assert a == b
    assert all(0 < len(x) <= 5 for x in a)


def test_asking_for_more_tokens_than_the_context_keeps_the_prompt(model_dir: Path) -> None:
    # Inspect asks for up to its default max_tokens; a small model's context can be shorter.
    import torch
    from transformers import AutoModelForCausalLM

    lm = load_local_model(LocalModelConfig(model_dir, batch_size=2))
    prompts = [lm.encode("The river of"), lm.encode("Zorbia has a tower by the")]
    greedy = lm.generate(prompts, max_new_tokens=lm.max_length * 4)
    hf = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    for prompt, ours in zip(prompts, greedy, strict=True):
        with torch.inference_mode():
            ref = hf.generate(
                torch.tensor([prompt]),
                max_new_tokens=3,
                do_sample=False,
                pad_token_id=lm.tokenizer.eos_token_id,
            )
        expected = [int(t) for t in ref[0, len(prompt) :]]
        eos = lm.tokenizer.eos_token_id
        if eos in expected:
            expected = expected[: expected.index(eos)]
        assert ours[: len(expected)] == expected


def test_batched_encoding_matches_encode_pair(model_dir: Path) -> None:
    from safescale.evals import encode_pair, encode_pairs

    lm = load_local_model(LocalModelConfig(model_dir))
    requests = [
        ("Question: How many towers does Vesh have?\nAnswer:", [" 12", " 7", " 93"]),
        ("The river of Zorbia is ", ["red", "blue and lies near Quell"]),  # trailing space
        ("", ["Zorbia", " Quell"]),  # empty context: the prefix token stands in
        ("Ondel has  ", [" 4", "12 towers"]),
    ]
    batched = encode_pairs(lm.tokenizer, requests)
    for (context, conts), pairs in zip(requests, batched, strict=True):
        assert pairs == [encode_pair(lm.tokenizer, context, c) for c in conts]


def test_shared_contexts_are_scored_once_and_agree(model_dir: Path, mc_small: Path) -> None:
    # The same question twice, a question split over two requests, a group wider than the
    # batch: merged and split inside the engine, every score still matches the reference.
    lm = load_local_model(LocalModelConfig(model_dir, batch_size=3))
    groups = _groups(lm, mc_small)[:6]
    ctx, conts = groups[0].context, groups[0].continuations
    extra = [
        groups[0],
        LoglikelihoodGroup(ctx, conts[:2]),
        LoglikelihoodGroup(ctx, (*conts[2:], tuple(lm.encode(" Zorbia has 12 towers")))),
    ]
    scores = lm.loglikelihood([*groups, *extra])
    seen: list[tuple[int, int]] = []
    scores_partial = lm.loglikelihood(groups, progress=lambda d, t: seen.append((d, t)))
    # 4 choices, at most 3 per merged group: each distinct context makes two groups
    assert seen[-1][0] == seen[-1][1] == 2 * len({g.context for g in groups})
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    for g, s in zip([*groups, *extra], scores, strict=True):
        for cont, score in zip(g.continuations, s, strict=True):
            ref = lm.loglikelihood_reference(g.context, cont)
            assert score.logprob == pytest.approx(ref.logprob, abs=1e-4)
            assert score.is_greedy == ref.is_greedy
    assert [x.logprob for x in scores[0]] == [x.logprob for x in scores[len(groups)]]
    assert [len(x) for x in scores_partial] == [4] * len(groups)
