"""Log-likelihood multiple choice, scored exactly as lm-evaluation-harness scores it.

For a question with choices c_i and log-likelihoods ll_i = log P(" " + c_i | context)
(Gao et al. 2021-, lm-evaluation-harness, ``ConfigurableTask.process_results``):

* ``acc``       = [argmax_i ll_i == gold]
* ``acc_norm``  = [argmax_i ll_i / len(c_i) == gold]          (length in characters)
* ``acc_bytes`` = [argmax_i ll_i / len(c_i.encode()) == gold]  (length in UTF-8 bytes)

Ties go to the first choice, as with ``numpy.argmax``. The lengths are those of the choice
text without the delimiter, as lm-eval computes them.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspect_ai.model import ChatMessageUser, GenerateConfig, ModelOutput, get_model
from inspect_ai.scorer import Score, Scorer, Target, mean, scorer, stderr
from inspect_ai.solver import Generate, Solver, TaskState, solver

from safescale.evals._provider import LL_KEY

DEFAULT_TEMPLATE = "Question: {question}\nAnswer:"
"""lm-eval's default multiple-choice prompt; each choice follows after one space."""
TARGET_DELIMITER = " "
MC_METRICS = ("acc", "acc_norm", "acc_bytes")
LL_CONFIG = GenerateConfig(max_tokens=1)
"""The generation settings of a grouped log-likelihood request (nothing is generated)."""


@dataclass(frozen=True)
class MCPrediction:
    """The chosen answer of one question under each of lm-eval's three rules."""

    acc: int
    """Index of the highest log-likelihood."""
    acc_norm: int
    """Index of the highest log-likelihood per character of the choice."""
    acc_bytes: int
    """Index of the highest log-likelihood per UTF-8 byte of the choice."""


def _argmax(values: Sequence[float]) -> int:
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best


def mc_predict(loglikelihoods: Sequence[float], choices: Sequence[str]) -> MCPrediction:
    """The answers lm-eval would pick, from per-choice log-likelihoods and the choice texts."""
    if len(loglikelihoods) != len(choices) or not choices:
        raise ValueError("one log-likelihood per choice is needed")
    chars = [max(len(c), 1) for c in choices]
    nbytes = [max(len(c.encode("utf-8")), 1) for c in choices]
    return MCPrediction(
        acc=_argmax(loglikelihoods),
        acc_norm=_argmax([ll / n for ll, n in zip(loglikelihoods, chars, strict=True)]),
        acc_bytes=_argmax([ll / n for ll, n in zip(loglikelihoods, nbytes, strict=True)]),
    )


def ll_request(context: str, continuations: Sequence[str]) -> ChatMessageUser:
    """The message of one grouped log-likelihood request to the ``safescale/`` provider."""
    payload = {"context": context, "continuations": list(continuations)}
    return ChatMessageUser(content=context, metadata={LL_KEY: payload})


def mc_answer(pred: MCPrediction) -> str:
    """The chosen letter (by ``acc``'s rule), as the solver's output and the score name it."""
    return chr(ord("A") + pred.acc)


def mc_score(loglikelihoods: Sequence[float], choices: Sequence[str], target: str) -> Score:
    """A sample's score: ``acc``, ``acc_norm`` and ``acc_bytes`` against the gold letter."""
    gold = ord(target.strip()[:1]) - ord("A")
    pred = mc_predict(loglikelihoods, choices)
    return Score(
        value={m: float(getattr(pred, m) == gold) for m in MC_METRICS}, answer=mc_answer(pred)
    )


@functools.lru_cache(maxsize=8)
def hf_tokenizer(path: str) -> Any:
    """A local tokenizer folder, loaded once; one line naming the folder if it is not one."""
    from transformers import AutoTokenizer

    from safescale._errors import Problem, UserError
    from safescale._model_folder import load_pretrained

    if not Path(path).is_dir():
        raise UserError(Problem("no such folder; give a local tokenizer folder", source=path))
    return load_pretrained(
        AutoTokenizer.from_pretrained, Path(path), "tokenizer", local_files_only=True
    )


@solver
def loglikelihood_choice(template: str = DEFAULT_TEMPLATE, tokenizer: str | None = None) -> Solver:
    """Score every choice by its log-likelihood after the prompt and pick the highest.

    The model is asked through a log-likelihood backend chosen by what the model can do
    (:func:`~safescale.evals._backend.select_backend`): one grouped request per question where
    the model API scores groups (the ``safescale/`` provider), else each choice as a
    pre-tokenized prompt to any provider that returns prompt log-probabilities
    (``openai-api-completions`` against vLLM or ``serve-model``, ``vllm-completions``), with
    ``tokenizer`` (a local tokenizer folder) giving the token ids. Per-choice log-likelihoods go
    to ``state.metadata["loglikelihoods"]``.

    Args:
        template: Prompt with a ``{question}`` field.
        tokenizer: Tokenizer folder, for models that cannot score grouped requests.
    """

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        from safescale.evals._backend import select_backend

        model = get_model()
        context = template.format(question=state.input_text)
        choices = [c.value for c in state.choices]
        conts = [TARGET_DELIMITER + c for c in choices]
        scored = await select_backend(model, tokenizer).loglikelihoods(context, conts)
        lls = list(scored.values)
        pred = mc_predict(lls, choices)
        for i in range(len(choices)):
            state.choices.mark_choice(i, i == pred.acc)
        state.metadata["loglikelihoods"] = lls
        if scored.is_greedy is not None:
            state.metadata["is_greedy"] = list(scored.is_greedy)
        state.output = ModelOutput.from_content(str(model), f"ANSWER: {mc_answer(pred)}")
        return state

    return solve


@scorer(metrics={m: [mean(), stderr()] for m in MC_METRICS})
def loglikelihood_scorer() -> Scorer:
    """``acc``, ``acc_norm`` and ``acc_bytes`` from ``state.metadata["loglikelihoods"]``.

    The log-likelihoods stay in the sample's metadata only; the score carries the values and
    the chosen letter (copying them into every score doubles what each sample logs).
    """

    async def score(state: TaskState, target: Target) -> Score:
        choices = [c.value for c in state.choices]
        return mc_score(state.metadata["loglikelihoods"], choices, target.text)

    return score
