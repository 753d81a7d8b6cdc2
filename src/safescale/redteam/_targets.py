"""Targets: what a campaign attacks. A local lab/HF folder, any Inspect model, or a stack.

Local folders generate through the evals room's engine (:class:`~safescale.evals.LocalLM`):
every prompt of a campaign round runs in left-padded batches, greedy, stopping a row at the end
of the assistant's line; a streaming output classifier watches each row's text as it grows and,
when it flags, stops that row (``stop=True``) or only records where it would have stopped
(``stop=False``, "shadow mode", so the model's own behaviour is still observed). Inspect models
are called concurrently through Inspect's model API.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from safescale.evals._models import inspect_model
from safescale.redteam._layers import Classifier

USER_FORMAT = "User: {prompt}\nAssistant:"
"""The lab's dialogue format (a local folder is prompted this way)."""
SYSTEM_FORMAT = "System: {system}\n"


@dataclass(frozen=True)
class Generation:
    """One response, and what the output layers saw of it."""

    text: str
    """The model's response (cut at the end of the assistant's line)."""
    input_tokens: int
    output_tokens: int
    output_flags: dict[str, int] = field(default_factory=dict)
    """Output layer name -> characters of ``text`` seen when it first flagged (absent: never)."""
    stopped: bool = False
    """Generation was stopped by an output layer (``text`` is then the partial output)."""


class Target(Protocol):
    """Something that answers prompts."""

    name: str

    def generate(self, prompts: Sequence[str]) -> list[Generation]:
        """One generation per prompt, in order."""
        ...


@dataclass
class StreamStats:
    """Time spent in streaming output classifiers, and how often they ran."""

    seconds: float = 0.0
    calls: int = 0


class _StreamWatch:
    """A transformers stopping criterion running output classifiers on each row's new text."""

    def __init__(
        self,
        lm: Any,
        rows: list[int],
        prompts: Sequence[str],
        width: int,
        classifiers: Sequence[tuple[Classifier, int]],
        stop: bool,
        stats: StreamStats,
    ) -> None:
        import torch

        self.lm, self.rows, self.width = lm, rows, width
        self.prompts = [prompts[i] for i in rows]
        """The batch's prompts in its row order (``rows``: their indices in the call)."""
        self.classifiers, self.stop, self.stats = classifiers, stop, stats
        # Classifiers that stream with a cache (a constitutional output classifier) get one
        # session per batch: each check then reads only the new tokens.
        self.sessions = {
            clf.name: clf.stream(self.prompts) for clf, _ in classifiers if hasattr(clf, "stream")
        }
        self.flags: list[dict[str, int]] = [{} for _ in rows]
        self.flagged = torch.zeros(len(rows), dtype=torch.bool)
        self.steps = 0
        self.closed: set[int] = set()
        self.text = [""] * len(rows)

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        self.steps += 1
        t0 = time.perf_counter()
        # Rows whose turn has ended (a line break, or end of text) were scored on their final
        # text already; re-reading them every step would cost quadratic time for nothing.
        live = [i for i in range(len(self.rows)) if i not in self.closed]
        if live:
            ids = input_ids[live, self.width :].tolist()
            texts = self.lm.tokenizer.batch_decode(ids, skip_special_tokens=True)
            eos = self.lm.tokenizer.eos_token_id
            for i, row_ids, text in zip(live, ids, texts, strict=True):
                if "\n" in text or (eos is not None and eos in row_ids):
                    self.closed.add(i)
                self.text[i] = text.split("\n", 1)[0]
        for clf, every in self.classifiers:
            last = self.steps % every == 0
            rows = [
                i
                for i in range(len(self.rows))
                if clf.name not in self.flags[i]
                and (i in live)
                and (last or i in self.closed)  # a row's final text is always checked
            ]
            if not rows:
                continue
            texts = [self.text[i] for i in rows]
            session = self.sessions.get(clf.name)
            if session is not None:
                values = session.scores(rows, texts)
            else:
                values = clf.scores(texts, [self.prompts[i] for i in rows])
            self.stats.calls += 1
            for i, text, v in zip(rows, texts, values, strict=True):
                if v >= clf.threshold:
                    self.flags[i][clf.name] = len(text)
                    self.flagged[i] = True
        self.stats.seconds += time.perf_counter() - t0
        if self.stop:
            return self.flagged.clone().to(input_ids.device)
        return torch.zeros(len(self.rows), dtype=torch.bool, device=input_ids.device)


class LocalTarget:
    """A local Hugging Face causal-LM folder, prompted in the lab's dialogue format."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_new_tokens: int = 32,
        batch_size: int = 64,
        device: str = "cpu",
        system_prompt: str | None = None,
        output_layers: Sequence[tuple[Classifier, int]] = (),
        stop: bool = True,
    ) -> None:
        from safescale.evals import LocalModelConfig, load_local_model

        self.path = Path(path)
        self.name = f"safescale/{self.path}"
        self.lm = load_local_model(
            LocalModelConfig(self.path, batch_size=batch_size, device=device)
        )
        self.max_new_tokens = max_new_tokens
        self.system_prompt = system_prompt
        self.output_layers = list(output_layers)
        self.stop = stop
        self.stream = StreamStats()
        self._newline: Any = None

    def format(self, prompt: str) -> str:
        """The full text the model reads for ``prompt``."""
        system = SYSTEM_FORMAT.format(system=self.system_prompt) if self.system_prompt else ""
        return system + USER_FORMAT.format(prompt=prompt)

    def _stops(self, watches: list[_StreamWatch], prompts: Sequence[str]) -> Any:
        from transformers import StoppingCriteriaList, StopStringCriteria

        if self._newline is None:  # built once: it precomputes a table over the vocabulary
            self._newline = StopStringCriteria(self.lm.tokenizer, ["\n"])

        def factory(rows: list[int], width: int) -> Any:
            crit = [self._newline]
            if self.output_layers:
                w = _StreamWatch(
                    self.lm, rows, prompts, width, self.output_layers, self.stop, self.stream
                )
                watches.append(w)
                crit.append(w)
            return StoppingCriteriaList(crit)

        return factory

    def generate(self, prompts: Sequence[str]) -> list[Generation]:
        """Greedy generations for ``prompts``, batched."""
        ids = [self.lm.encode(self.format(p)) for p in prompts]
        watches: list[_StreamWatch] = []
        new = self.lm.generate(ids, self.max_new_tokens, stopping=self._stops(watches, prompts))
        flags: list[dict[str, int]] = [{} for _ in prompts]
        for w in watches:
            for j, i in enumerate(w.rows):
                flags[i] = w.flags[j]
        out = []
        for i, toks in enumerate(new):
            text = self.lm.decode(toks).split("\n", 1)[0].strip()
            out.append(
                Generation(
                    text=text,
                    input_tokens=len(ids[i]),
                    output_tokens=len(toks),
                    output_flags=flags[i],
                    stopped=self.stop and bool(flags[i]),
                )
            )
        return out


class InspectTarget:
    """Any Inspect model (``openai/gpt-4o``, ``vllm/...``, ``safescale/DIR``), called concurrently.

    Output layers run on the finished response (an API does not stream to us here), so they
    record whether they would have flagged, not where a stream would have stopped.
    """

    def __init__(
        self,
        model: str,
        *,
        max_new_tokens: int = 256,
        system_prompt: str | None = None,
        output_layers: Sequence[tuple[Classifier, int]] = (),
        model_args: dict[str, Any] | None = None,
    ) -> None:
        self.name = model
        self.max_new_tokens = max_new_tokens
        self.system_prompt = system_prompt
        self.output_layers = list(output_layers)
        self.model_args = model_args or {}
        self.stream = StreamStats()

    def generate(self, prompts: Sequence[str]) -> list[Generation]:
        """Concurrent generations through Inspect."""
        from inspect_ai.model import (
            ChatMessageSystem,
            ChatMessageUser,
            GenerateConfig,
        )

        model = inspect_model(
            self.name,
            "target",
            config=GenerateConfig(temperature=0.0, max_tokens=self.max_new_tokens),
            **self.model_args,
        )

        async def one(p: str) -> Any:
            msgs: list[Any] = [ChatMessageUser(content=p)]
            if self.system_prompt:
                msgs.insert(0, ChatMessageSystem(content=self.system_prompt))
            return await model.generate(msgs)

        async def all_() -> list[Any]:
            return list(await asyncio.gather(*(one(p) for p in prompts)))

        outputs = asyncio.run(all_())
        out = []
        for p, o in zip(prompts, outputs, strict=True):
            text = o.completion.strip()
            flags: dict[str, int] = {}
            t0 = time.perf_counter()
            for clf, _ in self.output_layers:
                if clf.scores([text], [p])[0] >= clf.threshold:
                    flags[clf.name] = len(text)
            self.stream.seconds += time.perf_counter() - t0
            usage = o.usage
            out.append(
                Generation(
                    text=text,
                    input_tokens=usage.input_tokens if usage else 0,
                    output_tokens=usage.output_tokens if usage else 0,
                    output_flags=flags,
                )
            )
        return out


def make_target(
    spec: str,
    *,
    max_new_tokens: int = 32,
    system_prompt: str | None = None,
    output_layers: Sequence[tuple[Classifier, int]] = (),
    stop: bool = True,
    device: str = "cpu",
) -> LocalTarget | InspectTarget:
    """A local folder (a path that exists) or an Inspect model string."""
    path = Path(spec)
    if path.is_dir():
        return LocalTarget(
            path,
            max_new_tokens=max_new_tokens,
            system_prompt=system_prompt,
            output_layers=output_layers,
            stop=stop,
            device=device,
        )
    from safescale._errors import Problem, UserError

    if "/" not in spec:
        raise UserError(
            Problem(
                "target is neither a model folder nor an Inspect model (provider/model); "
                "give a lab folder, a stack .yaml or e.g. openai/gpt-4o",
                field="target",
                source=spec,
            )
        )
    from safescale._input import check_id

    check_id(spec, "target", what="Inspect model (provider/model) or model folder")
    return InspectTarget(
        spec,
        max_new_tokens=max_new_tokens,
        system_prompt=system_prompt,
        output_layers=output_layers,
    )
