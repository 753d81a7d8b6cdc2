"""Log-likelihood backends: how a model is asked for log P(continuation | context).

The multiple-choice solver does not know which model class it talks to. It asks
:func:`select_backend` for the first backend in :data:`LL_BACKENDS` (by ``priority``) whose
``available`` check passes, and each check looks at what the model can do, not what it is:

* ``grouped``: the model API scores one context with several continuations in one request
  (it has a ``score_text`` method: the :class:`GroupedScoring` protocol). The in-process
  provider does; so can any outside provider that implements the method.
* ``prompt-logprobs``: any model that returns prompt log-probabilities for a pre-tokenized
  prompt (Inspect's ``openai-api-completions`` against vLLM or ``safescale serve-model``,
  ``vllm-completions``, the in-process provider too). The texts are split into context and
  continuation tokens with a local tokenizer, exactly as lm-eval splits them, so it needs one.

Outside packages add backends through the ``safescale.ll_backend`` entry points.
"""

from __future__ import annotations

import asyncio
import contextlib
import warnings
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

from safescale._errors import Problem, UserError
from safescale._registry import Registry
from safescale.evals._lm import ContextWarning, ScoredText, encode_pair


@dataclass(frozen=True)
class Loglikelihoods:
    """Per-continuation log-likelihoods of one context."""

    values: tuple[float, ...]
    """log P(continuation_i | context), summed over the continuation's tokens."""
    is_greedy: tuple[bool, ...] | None = None
    """Whether each continuation is the greedy one (None when the backend cannot tell)."""


@runtime_checkable
class GroupedScoring(Protocol):
    """A model API that scores several continuations of one context in one request."""

    async def score_text(self, context: str, continuations: Sequence[str]) -> ScoredText:
        """Scores of ``continuations`` after ``context``."""
        ...


@runtime_checkable
class BatchScoring(Protocol):
    """A model API that scores every request of a task in one pass before the task runs."""

    def prefetch(
        self,
        requests: Sequence[tuple[str, Sequence[str]]],
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        """Score (context, continuations) requests now; later requests are answered from it."""
        ...

    def clear_prefetch(self) -> None:
        """Forget the prefetched scores."""
        ...

    def score_requests(
        self,
        requests: Sequence[tuple[str, Sequence[str]]],
        progress: Callable[[int, int], None] | None = None,
    ) -> list[ScoredText]:
        """Score (context, continuations) requests in one batched pass, in request order."""
        ...

    def grouped_output(self, scored: ScoredText) -> Any:
        """The ``ModelOutput`` a grouped request would have been answered with."""
        ...


def supports_prefetch(api: object) -> bool:
    """Whether ``api`` scores a whole multiple-choice task in one pass (:class:`BatchScoring`)."""
    return isinstance(api, BatchScoring) and isinstance(api, GroupedScoring)


class LoglikelihoodBackend(Protocol):
    """Scores continuations after a context through an Inspect model."""

    async def loglikelihoods(self, context: str, continuations: Sequence[str]) -> Loglikelihoods:
        """log P(c | context) for each continuation ``c``."""
        ...


class BackendFactory(Protocol):
    """A kind of backend: when it applies, and how to make one."""

    priority: ClassVar[int]
    """Lower is tried first."""

    @classmethod
    def available(cls, model: Any, tokenizer: str | None) -> bool:
        """Whether this backend can serve ``model`` (an Inspect ``Model``)."""
        ...

    @classmethod
    def create(cls, model: Any, tokenizer: str | None) -> LoglikelihoodBackend:
        """A backend for ``model``."""
        ...


LL_BACKENDS: Registry[type[BackendFactory]] = Registry("ll_backend")
"""Log-likelihood backends; outside packages add theirs (``safescale.ll_backend`` entry points)."""


@LL_BACKENDS.register("grouped")
class GroupedBackend:
    """One request per context through the model's ``generate``, answered by ``score_text``.

    The request goes through Inspect's ``generate`` (so the transcript records it) as a message
    with the texts in its metadata (:func:`~safescale.evals._mc.ll_request`).
    """

    priority: ClassVar[int] = 0

    def __init__(self, model: Any) -> None:
        self.model = model

    @classmethod
    def available(cls, model: Any, tokenizer: str | None) -> bool:
        """The model's API scores grouped requests (:class:`GroupedScoring`)."""
        return isinstance(getattr(model, "api", None), GroupedScoring)

    @classmethod
    def create(cls, model: Any, tokenizer: str | None) -> GroupedBackend:
        """A backend for ``model``."""
        return cls(model)

    async def loglikelihoods(self, context: str, continuations: Sequence[str]) -> Loglikelihoods:
        """Per-choice sums and greedy flags from the reply's metadata."""
        from safescale.evals._mc import LL_CONFIG, ll_request

        out = await self.model.generate([ll_request(context, continuations)], config=LL_CONFIG)
        meta = out.metadata or {}
        return Loglikelihoods(
            tuple(float(v) for v in meta["loglikelihoods"]),
            tuple(bool(v) for v in meta["is_greedy"]),
        )


@LL_BACKENDS.register("prompt-logprobs")
class PromptLogprobsBackend:
    """Each choice sent as a pre-tokenized prompt; its tokens' prompt log-probabilities summed.

    Works with any server that returns prompt log-probabilities (vLLM, ``safescale
    serve-model``) through Inspect's ``openai-api-completions`` or ``vllm-completions``.
    """

    priority: ClassVar[int] = 10

    def __init__(self, model: Any, tokenizer: str, context: int | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.context = context
        """The server's context in tokens (:func:`endpoint_context`); ``None``: not known, and
        a prompt that does not fit is the server's to refuse."""

    @classmethod
    def available(cls, model: Any, tokenizer: str | None) -> bool:
        """A tokenizer folder is given to split the texts into tokens, and the model is reached
        through a completions provider, which sends token ids as the prompt (a chat endpoint
        takes messages: it cannot score a given continuation)."""
        return tokenizer is not None and takes_token_ids(model)

    @classmethod
    def create(cls, model: Any, tokenizer: str | None) -> PromptLogprobsBackend:
        """A backend for ``model`` with the tokenizer folder ``tokenizer``."""
        assert tokenizer is not None
        return cls(model, tokenizer, endpoint_context(model))

    async def loglikelihoods(self, context: str, continuations: Sequence[str]) -> Loglikelihoods:
        """Sum of the continuation tokens' prompt log-probabilities, one request per choice."""
        from inspect_ai.model import ChatMessageUser, GenerateConfig

        from safescale.evals._mc import hf_tokenizer

        tok = hf_tokenizer(self.tokenizer)
        pairs = [encode_pair(tok, context, c) for c in continuations]
        if self.context is not None:
            pairs = [fit_context(ctx, cont, self.context) for ctx, cont in pairs]
        config = GenerateConfig(max_tokens=1, temperature=0, prompt_logprobs=1)
        outs = await asyncio.gather(
            *[
                self.model.generate(
                    [ChatMessageUser(content="", metadata={"prompt_token_ids": ctx + cont})],
                    config=config,
                )
                for ctx, cont in pairs
            ]
        )
        return Loglikelihoods(
            tuple(continuation_ll(o, len(cont)) for o, (_, cont) in zip(outs, pairs, strict=True))
        )


def fit_context(
    context: list[int], continuation: list[int], limit: int
) -> tuple[list[int], list[int]]:
    """``(context, continuation)`` token ids cut to a server's context of ``limit`` tokens.

    The API generates at least one token after the prompt, so the prompt may hold
    ``limit - 1``; a longer one loses the start of its context, as lm-eval cuts it, with a
    :class:`~safescale.evals.ContextWarning`. A local model keeps ``max_length + 1`` tokens
    (its last is never fed), so a server of context ``N`` cuts as a local model of
    ``max_length`` ``N - 2`` does.

    Raises:
        UserError: the continuation alone leaves no token of context.
    """
    room = limit - 1
    if len(context) + len(continuation) <= room:
        return context, continuation
    if len(continuation) >= room:
        raise UserError(
            Problem(
                f"a continuation of {len(continuation)} tokens does not fit the server's context "
                f"of {limit} tokens with a token of its prompt and the token the API generates; "
                "shorten the choice, or serve the model with a larger context "
                "(serve-model --max-length)"
            )
        )
    warnings.warn(
        f"prompts longer than the server's context of {limit} tokens (one of them for the "
        "token the API generates) are cut from the left, as lm-eval cuts them, so the model "
        "does not see the start of those prompts; serve the model with a larger context "
        "(serve-model --max-length) if it allows one",
        ContextWarning,
        stacklevel=2,
    )
    return context[len(context) + len(continuation) - room :], continuation


_CONTEXTS: weakref.WeakKeyDictionary[Any, int | None] = weakref.WeakKeyDictionary()


def endpoint_context(model: Any) -> int | None:
    """The context of the model behind ``model`` (an Inspect model reached through an
    endpoint) as its server reports it (:func:`~safescale.evals.served_context`); asked once
    per model API object. ``None`` when the server does not say (a hosted API) or cannot be
    asked: a prompt that does not fit is then the server's to refuse."""
    from safescale.evals._identity import served_context

    api = getattr(model, "api", None)
    with contextlib.suppress(KeyError, TypeError):  # TypeError: no weak reference to it
        return _CONTEXTS[api]
    args = {k: v for k in ("base_url", "api_key") if isinstance(v := getattr(api, k, None), str)}
    try:
        found = served_context(str(model), args)
    except UserError:  # refused key, unknown name: the run's own requests say so
        found = None
    with contextlib.suppress(TypeError):
        _CONTEXTS[api] = found
    return found


def continuation_ll(output: Any, n_tokens: int) -> float:
    """Sum of the last ``n_tokens`` prompt log-probabilities of an Inspect ``ModelOutput``."""
    plp = output.choices[0].prompt_logprobs if output.choices else None
    if plp is None or len(plp.content) < n_tokens:
        raise RuntimeError(
            "the model returned no prompt log-probabilities; use a provider that supports "
            "prompt_logprobs (safescale/, openai-api-completions, vllm-completions)"
        )
    return float(sum(lp.logprob for lp in plp.content[-n_tokens:]))


def select_backend(model: Any, tokenizer: str | None = None) -> LoglikelihoodBackend:
    """The first backend (by priority) that can serve ``model``.

    Raises:
        UserError: none can; for a model behind an endpoint, the tokenizer is missing.
    """
    kinds = sorted((LL_BACKENDS.get(n) for n in LL_BACKENDS.names()), key=lambda k: k.priority)
    for kind in kinds:
        if kind.available(model, tokenizer):
            return kind.create(model, tokenizer)
    if tokenizer is not None and not takes_token_ids(model):
        raise UserError(
            Problem(
                f"log-likelihood scoring of {model} needs a completions endpoint, which takes "
                "token ids (a chat endpoint cannot score a given continuation): use "
                f"{' or '.join(p + '/...' for p in TOKEN_ID_PROVIDERS)}",
                field="--model",
            )
        )
    raise UserError(
        Problem(
            f"log-likelihood scoring of {model} needs its tokenizer folder to split prompts into "
            "context and continuation tokens; give it with --tokenizer DIR",
            field="--tokenizer",
        )
    )


TOKEN_ID_PROVIDERS = ("openai-api-completions", "vllm-completions")
"""Inspect providers whose requests carry token ids as the prompt
(``metadata["prompt_token_ids"]``), to a server's completions endpoint."""


def takes_token_ids(model: Any) -> bool:
    """Whether ``model`` (an Inspect model) sends token ids as the prompt: Inspect's providers
    in :data:`TOKEN_ID_PROVIDERS`, or an outside provider whose API says so with a true
    ``takes_token_ids`` attribute (Inspect's own APIs declare nothing)."""
    api = getattr(model, "api", None)
    return str(model).split("/", 1)[0] in TOKEN_ID_PROVIDERS or bool(
        getattr(api, "takes_token_ids", False)
    )
