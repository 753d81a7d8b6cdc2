"""The ``safescale`` Inspect model provider: a local Hugging Face folder, batched, offline.

``--model safescale/PATH`` (or ``get_model("safescale/PATH", dtype=..., device=...)``). Three
kinds of request reach :meth:`LocalModelAPI.generate`:

1. a grouped log-likelihood request (message metadata ``safescale_loglikelihood`` holding a
   context text and its continuation texts, sent by :func:`loglikelihood_choice`): the shared
   context is computed once for every choice;
2. ``GenerateConfig(prompt_logprobs=k)``, as Inspect's ``perplexity()`` and
   ``target_perplexity()`` scorers send it (vLLM's convention: every prompt token but the first
   gets a log-probability); pre-tokenized prompts come as ``metadata["prompt_token_ids"]``;
3. ordinary generation.

Concurrent samples' requests are gathered for a few milliseconds and run as micro-batches,
sorted by length, in a worker thread, so the event loop keeps feeding the model.

When the requests of a whole task are known before it starts (a multiple-choice JSONL task),
:meth:`LocalModelAPI.prefetch` scores them all in one batched pass first, and each sample's
model call is then answered from that pass. This is faster than scoring while Inspect runs
the samples: the worker thread and Inspect's per-sample Python then contend for the GIL, and
every torch operation in a forward pass waits for its turn (up to ``sys.getswitchinterval()``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from inspect_ai.model import (
    ChatCompletionChoice,
    ChatMessage,
    ChatMessageAssistant,
    GenerateConfig,
    Logprob,
    Logprobs,
    ModelAPI,
    ModelOutput,
    ModelUsage,
)
from inspect_ai.tool import ToolChoice, ToolInfo

from safescale.evals._lm import (
    ContinuationScore,
    LocalLM,
    LocalModelConfig,
    LoglikelihoodGroup,
    PairGroups,
    ScoredText,
    encode_pairs,
    load_local_model,
)

LL_KEY = "safescale_loglikelihood"
"""Message metadata key of a grouped log-likelihood request: {"context": str,
"continuations": [str, ...]}, texts split into tokens as lm-eval splits them."""

GATHER_SECONDS = 0.003
"""How long the batcher waits for more concurrent requests before it runs a micro-batch."""

In = TypeVar("In")
Out = TypeVar("Out")


class MicroBatcher(Generic[In, Out]):
    """Gathers concurrent requests and runs them together in a worker thread."""

    def __init__(self, run: Callable[[list[In]], list[Out]], wait: float = GATHER_SECONDS) -> None:
        self._run = run
        self._wait = wait
        self._pending: list[tuple[In, asyncio.Future[Out]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: In) -> Out:
        """Queue ``item``; resolves once the micro-batch holding it has run."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Out] = loop.create_future()
        self._pending.append((item, fut))
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        while self._pending:
            await asyncio.sleep(self._wait)
            items, self._pending = self._pending, []
            try:
                results = await asyncio.to_thread(self._run, [i for i, _ in items])
            except Exception as exc:  # a failed batch fails each of its requests
                for _, fut in items:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), res in zip(items, results, strict=True):
                if not fut.done():
                    fut.set_result(res)


@dataclass(frozen=True)
class _GenRequest:
    prompt: tuple[int, ...]
    max_new_tokens: int
    temperature: float | None
    top_p: float | None
    seed: int | None


class LocalModelAPI(ModelAPI):
    """Inspect provider for a local Hugging Face causal-LM folder (see module docstring)."""

    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        config: GenerateConfig = GenerateConfig(),
        **model_args: Any,
    ) -> None:
        super().__init__(model_name, base_url, api_key, [], config)
        path = Path(str(model_args.pop("model_path", model_name)))
        max_length = model_args.pop("max_length", None)
        self.settings = LocalModelConfig(
            path=path,
            dtype=str(model_args.pop("dtype", "float32")),
            device=str(model_args.pop("device", "cpu")),
            batch_size=int(model_args.pop("batch_size", 32)),
            max_length=int(max_length) if max_length is not None else None,
        )
        if model_args:
            raise ValueError(f"unknown model arguments for safescale/: {sorted(model_args)}")
        self.lm: LocalLM = load_local_model(self.settings)
        self._ll = MicroBatcher(self.lm.loglikelihood)
        self._gen = MicroBatcher(self._generate_batch)
        self._prefetched: dict[tuple[str, tuple[str, ...]], ScoredText] = {}

    def max_connections(self) -> int:
        # Every sample may have a request in flight; the batcher, not the connection limit,
        # decides what runs together.
        return max(256, 8 * self.settings.batch_size)

    def max_tokens(self) -> int | None:
        return 256

    async def count_text_tokens(self, text: str) -> int:
        return len(self.lm.encode(text))

    async def tokenize(self, text: str) -> list[int]:
        return self.lm.encode(text)

    def score_requests(
        self,
        requests: Sequence[tuple[str, Sequence[str]]],
        progress: Callable[[int, int], None] | None = None,
    ) -> list[ScoredText]:
        """Score (context, continuations) requests in one batched pass, in request order.

        Texts are split into tokens as lm-eval splits them; each distinct request is scored
        once. ``progress`` is called with (contexts done, distinct contexts in all).
        """
        distinct = list(dict.fromkeys((c, tuple(x)) for c, x in requests))
        plans = [PairGroups.of(p) for p in encode_pairs(self.lm.tokenizer, distinct)]
        groups = [g for plan in plans for g in plan.groups]
        for g in groups:
            self._check(g)
        scores = iter(self.lm.loglikelihood(groups, progress))
        found = {
            key: plan.scored([next(scores) for _ in plan.groups])
            for key, plan in zip(distinct, plans, strict=True)
        }
        return [found[(c, tuple(x))] for c, x in requests]

    def prefetch(
        self,
        requests: Sequence[tuple[str, Sequence[str]]],
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        """Score (context, continuations) requests now, in one batched pass.

        Later calls of :meth:`score_text` for the same texts are answered from this pass until
        :meth:`clear_prefetch`. The scores are those :meth:`score_text` would compute (same
        engine, same token ids; only the batch composition differs, which can move a result by
        float rounding). ``progress`` is called with (contexts done, distinct contexts in all).
        """
        todo = [(c, tuple(x)) for c, x in requests if (c, tuple(x)) not in self._prefetched]
        for (c, x), scored in zip(todo, self.score_requests(todo, progress), strict=True):
            self._prefetched[(c, x)] = scored

    def clear_prefetch(self) -> None:
        """Forget the scores kept by :meth:`prefetch`."""
        self._prefetched.clear()

    async def score_text(self, context: str, continuations: Sequence[str]) -> ScoredText:
        """Score each continuation after ``context``, split into tokens as lm-eval splits them.

        Answered from :meth:`prefetch` when it scored these texts, else through the batcher.
        """
        key = (context, tuple(continuations))
        hit = self._prefetched.get(key)
        if hit is not None:
            return hit
        (pairs,) = encode_pairs(self.lm.tokenizer, [key])
        plan = PairGroups.of(pairs)
        return plan.scored(await asyncio.gather(*[self.loglikelihood(g) for g in plan.groups]))

    def _check(self, group: LoglikelihoodGroup) -> None:
        self.lm.check_ids(group.context)
        for c in group.continuations:
            self.lm.check_ids(c)
        if any(len(c) > self.lm.max_length for c in group.continuations):
            self.lm.loglikelihood([group])  # raises the one-line error

    async def loglikelihood(self, group: LoglikelihoodGroup) -> list[ContinuationScore]:
        """Score one group of token ids through the micro-batcher."""
        self._check(group)
        return await self._ll.submit(group)

    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> ModelOutput:
        meta = (input[-1].metadata or {}) if input else {}
        if LL_KEY in meta:
            return await self._grouped(meta[LL_KEY])
        if config.prompt_logprobs is not None:
            return await self._prompt_logprobs(input, meta)
        return await self._generate(input, config)

    async def _grouped(self, request: dict[str, Any]) -> ModelOutput:
        context = str(request["context"])
        continuations = [str(c) for c in request["continuations"]]
        return self.grouped_output(await self.score_text(context, continuations))

    def grouped_output(self, scored: ScoredText) -> ModelOutput:
        """The reply to a grouped log-likelihood request: per-choice sums in the metadata.

        Per-token log-probabilities are left out on purpose: with them, condensing and writing
        each sample to the log costs more than scoring it.
        """
        n = scored.input_tokens
        return ModelOutput(
            model=self.model_name,
            choices=[
                ChatCompletionChoice(
                    message=ChatMessageAssistant(content="", model=self.model_name),
                    stop_reason="max_tokens",
                )
            ],
            usage=ModelUsage(input_tokens=n, output_tokens=0, total_tokens=n),
            metadata={
                "loglikelihoods": [s.logprob for s in scored.scores],
                "is_greedy": [s.is_greedy for s in scored.scores],
            },
        )

    async def _prompt_logprobs(self, input: list[ChatMessage], meta: dict[str, Any]) -> ModelOutput:
        ids = [int(t) for t in meta.get("prompt_token_ids") or self.lm.encode(_prompt_text(input))]
        if len(ids) < 2:
            raise ValueError("prompt_logprobs needs a prompt of at least two tokens")
        # vLLM's convention: the first prompt token has no left context and no log-probability.
        group = LoglikelihoodGroup(context=tuple(ids[:1]), continuations=(tuple(ids[1:]),))
        (score,) = await self.loglikelihood(group)
        return ModelOutput(
            model=self.model_name,
            choices=[
                ChatCompletionChoice(
                    message=ChatMessageAssistant(content="", model=self.model_name),
                    stop_reason="max_tokens",
                    prompt_logprobs=self._logprobs(ids[1:], score),
                )
            ],
            usage=ModelUsage(input_tokens=len(ids), output_tokens=0, total_tokens=len(ids)),
        )

    async def _generate(self, input: list[ChatMessage], config: GenerateConfig) -> ModelOutput:
        text = self._chat_text(input)
        ids = tuple(self.lm.encode(text))
        req = _GenRequest(
            prompt=ids,
            max_new_tokens=config.max_tokens or 256,
            temperature=config.temperature,
            top_p=config.top_p,
            seed=config.seed,
        )
        new = await self._gen.submit(req)
        completion = self.lm.decode(new)
        stop_reason = "max_tokens" if len(new) >= req.max_new_tokens else "stop"
        for stop in config.stop_seqs or []:
            if stop and stop in completion:
                completion, stop_reason = completion[: completion.index(stop)], "stop"
        output = ModelOutput.from_content(model=self.model_name, content=completion)
        output.choices[0].stop_reason = stop_reason  # type: ignore[assignment]
        output.usage = ModelUsage(
            input_tokens=len(ids), output_tokens=len(new), total_tokens=len(ids) + len(new)
        )
        return output

    def _generate_batch(self, reqs: list[_GenRequest]) -> list[list[int]]:
        # Requests with the same settings run together; order of results follows ``reqs``.
        out: list[list[int]] = [[] for _ in reqs]
        keys: dict[tuple[Any, ...], list[int]] = {}
        for i, r in enumerate(reqs):
            keys.setdefault((r.max_new_tokens, r.temperature, r.top_p, r.seed), []).append(i)
        for (max_new, temp, top_p, seed), idx in keys.items():
            gen = self.lm.generate([reqs[i].prompt for i in idx], max_new, temp, top_p, seed)
            for i, g in zip(idx, gen, strict=True):
                out[i] = g
        return out

    def _chat_text(self, input: list[ChatMessage]) -> str:
        tok = self.lm.tokenizer
        if getattr(tok, "chat_template", None):
            messages = [{"role": m.role, "content": m.text} for m in input]
            return str(
                tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            )
        return _prompt_text(input)

    def _logprobs(self, ids: Sequence[int], score: ContinuationScore) -> Logprobs:
        tokens = self.lm.token_strings(ids)
        return Logprobs(
            content=[
                Logprob(token=t, logprob=v)
                for t, v in zip(tokens, score.token_logprobs, strict=True)
            ]
        )


def _prompt_text(input: list[ChatMessage]) -> str:
    """A base model's prompt: one user message is sent as is; a conversation as ``role: text``."""
    if len(input) == 1:
        return input[0].text
    return "".join(f"{m.role}: {m.text}\n" for m in input) + "assistant:"
