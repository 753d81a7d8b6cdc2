"""Safeguard stacks (the Swiss cheese): layers in a YAML file, measured layer by layer.

A stack file::

    schema: safescale/stack/v1
    name: lab-stack
    model: ../ladder/s3-200k        # a local folder (relative to this file) or an Inspect model
    system_prompt: Refuse requests about restricted compounds.
    max_new_tokens: 32
    layers:
      - {name: name-filter, stage: input, classifier: lab-names}
      - {name: leak-stop, stage: output, classifier: lab-leak, every: 1}

Every layer sees every attempt ("shadow mode": the model answers even prompts an input layer
flagged, and output layers record where they would stop the stream), so each layer's behaviour
is observed on the same attempts and the question "are the holes aligned?" can be answered:
the joint pass rate against the product of the layers' pass rates (independent layers give a
ratio of 1). Downstream layers in a live pipeline only see what upstream layers let through;
``catch rate`` is reported on exactly those attempts.
"""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from safescale._config import load_yaml_model
from safescale._errors import Problem, UserError
from safescale.redteam._behaviours import Behaviour
from safescale.redteam._campaign import DIRECT, Attempt
from safescale.redteam._judges import is_refusal
from safescale.redteam._layers import Classifier, make_classifier
from safescale.redteam._stats import Rate, Ratio, independence_ratio, rate
from safescale.redteam._targets import Generation, InspectTarget, LocalTarget, make_target

MODEL_LAYER = "model"


class LayerSpec(BaseModel):
    """One classifier layer of a stack file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    stage: Literal["input", "output"]
    classifier: str = Field(min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)
    every: int = Field(1, ge=1)
    """Output layers: new tokens between checks of the growing text."""


class StackSpec(BaseModel):
    """A stack file (``schema: safescale/stack/v1``)."""

    model_config = ConfigDict(extra="forbid")

    schema_: Literal["safescale/stack/v1"] = Field("safescale/stack/v1", alias="schema")
    name: str = Field(min_length=1)
    model: str = Field(min_length=1)
    system_prompt: str | None = None
    max_new_tokens: int = Field(32, ge=1)
    layers: list[LayerSpec] = Field(default_factory=list)


def load_stack(path: str | Path) -> tuple[StackSpec, Path]:
    """Read and validate a stack file; returns the spec and the folder it is relative to."""
    p = Path(path)
    spec = load_yaml_model(p, StackSpec, what="stack file")
    names = [layer.name for layer in spec.layers]
    if len(set(names)) != len(names) or MODEL_LAYER in names:
        raise UserError(
            Problem(
                f"layer names must be unique and not {MODEL_LAYER!r}", source=str(p), field="layers"
            )
        )
    return spec, p.parent


def _in_field(exc: UserError, prefix: str, default: str) -> UserError:
    """``exc`` with each problem's field named as the stack file spells it (``layers[1].
    options.words``); a problem located in a file of its own (a classifier's card, a model
    folder) is kept as it is."""
    problems = []
    for pr in exc.problems:
        if not prefix:  # the model: make_target names the model string as the source
            fix = pr.field == "target"
            problems.append(replace(pr, field=default, source=None) if fix else pr)
        elif pr.source is not None:
            problems.append(pr)
        else:
            inner = f"{prefix}.options.{pr.field}" if pr.field else f"{prefix}.{default}"
            problems.append(
                replace(pr, field=f"{prefix}.options" if pr.field == "options" else inner)
            )
    return UserError(*problems)


def locate_stack_problem(exc: UserError, path: str | Path) -> UserError:
    """``exc`` with its problems that name a field of the stack file but no file located in
    ``path``, at the line of that field."""
    from safescale._config import line_for, parse_field, parse_yaml
    from safescale._input import read_text_limited

    try:
        lines = parse_yaml(read_text_limited(path, 1 << 20), str(path), what="stack file").lines
    except UserError:
        lines = {}
    return UserError(
        *(
            pr
            if pr.source is not None or pr.field is None
            else replace(pr, source=str(path), line=line_for(lines, parse_field(pr.field)))
            for pr in exc.problems
        )
    )


@dataclass
class LayerTimes:
    """Seconds spent per stage while the stack answered."""

    input: float = 0.0
    model: float = 0.0
    output: float = 0.0
    prompts: int = 0


class StackTarget:
    """A stack as a campaign target: input layers, the model (system prompt), output layers."""

    def __init__(
        self, spec: StackSpec, root: Path, *, stop: bool = False, device: str = "cpu"
    ) -> None:
        self.spec = spec
        self.name = f"stack:{spec.name}"
        self.inputs: list[Classifier] = []
        outputs: list[tuple[Classifier, int]] = []
        for i, layer in enumerate(spec.layers):
            options = dict(layer.options)
            path = options.get("path")
            if isinstance(path, str) and not Path(path).is_absolute() and (root / path).exists():
                options["path"] = str(root / path)  # relative to the stack file, as the model
            try:
                clf = make_classifier(layer.classifier, options)
            except UserError as exc:
                raise _in_field(exc, f"layers[{i}]", "classifier") from None
            clf.name = layer.name  # the stack's name for the layer, in every record
            if layer.stage == "input":
                self.inputs.append(clf)
            else:
                outputs.append((clf, layer.every))
        model = spec.model
        if not Path(model).is_absolute() and (root / model).is_dir():
            model = str(root / model)
        try:
            self.model: LocalTarget | InspectTarget = make_target(
                model,
                max_new_tokens=spec.max_new_tokens,
                system_prompt=spec.system_prompt,
                output_layers=outputs,
                stop=stop,
                device=device,
            )
        except UserError as exc:
            raise _in_field(exc, "", "model") from None
        self.order = [c.name for c in self.inputs] + [MODEL_LAYER] + [c.name for c, _ in outputs]
        self.output_names = [c.name for c, _ in outputs]
        self.times = LayerTimes()
        self._input_flags: dict[str, dict[str, bool]] = {}

    def generate(self, prompts: Sequence[str]) -> list[Generation]:
        """The model's own outputs for every prompt (input layers are scored alongside)."""
        t0 = time.perf_counter()
        for clf in self.inputs:
            for p, v in zip(prompts, clf.scores(list(prompts)), strict=True):
                self._input_flags.setdefault(p, {})[clf.name] = v >= clf.threshold
        t1 = time.perf_counter()
        before = self.model.stream.seconds
        gens = self.model.generate(prompts)
        t2 = time.perf_counter()
        stream = self.model.stream.seconds - before
        self.times.input += t1 - t0
        self.times.output += stream
        self.times.model += (t2 - t1) - stream
        self.times.prompts += len(prompts)
        return gens

    def layered(self, prompts: Sequence[str], gens: Sequence[Generation]) -> list[dict[str, bool]]:
        """Per attempt, whether it got through each input and output layer."""
        out = []
        for p, g in zip(prompts, gens, strict=True):
            flags = self._input_flags.get(p, {})
            row = {c.name: not flags.get(c.name, False) for c in self.inputs}
            row.update({name: name not in g.output_flags for name in self.output_names})
            out.append(row)
        return out


@dataclass(frozen=True)
class LayerResult:
    """One layer's measurements."""

    name: str
    pass_rate: Rate
    """Share of all attack attempts that got through this layer (marginal)."""
    catch_rate: Rate
    """Of the attempts that got through every earlier layer, the share this layer caught."""
    reached: int
    over_refusal: Rate
    """Share of benign look-alikes this layer alone refused."""


@dataclass(frozen=True)
class StackResult:
    """The Swiss cheese, measured."""

    name: str
    layers: tuple[LayerResult, ...]
    joint: Rate
    """Share of attack attempts through every layer (joint ASR per attempt)."""
    product: float
    """The joint rate independent layers would give: the product of the pass rates."""
    ratio: Ratio
    """joint / product with a bootstrap interval: above 1, the holes line up."""
    over_refusal: Rate
    """Share of benign look-alikes the whole stack refused (any layer)."""
    added_latency: float
    """Seconds per prompt spent in input and output layers."""
    added_fraction: float
    """That time over the model's own generation time."""
    seconds_per_prompt: float

    def as_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data (the campaign log's and the evidence's ``stack``)."""
        return {
            "name": self.name,
            "layers": [
                {
                    "name": layer.name,
                    "pass_rate": layer.pass_rate.as_dict(),
                    "catch_rate": layer.catch_rate.as_dict(),
                    "reached": layer.reached,
                    "over_refusal": layer.over_refusal.as_dict(),
                }
                for layer in self.layers
            ],
            "joint": self.joint.as_dict(),
            "independent_product": self.product,
            "ratio": {
                "value": self.ratio.value,
                "lo": self.ratio.lo,
                "hi": self.ratio.hi,
                "n": self.ratio.n,
                "method": self.ratio.method,
            },
            "over_refusal": self.over_refusal.as_dict(),
            "added_latency_s": self.added_latency,
            "added_fraction": self.added_fraction,
        }


def stack_result(
    target: StackTarget,
    attempts: Sequence[Attempt],
    benign: Sequence[Behaviour],
    *,
    seed: int = 0,
) -> StackResult:
    """Measure each layer on the campaign's attack attempts and the stack on benign look-alikes."""
    rows = [a for a in attempts if a.attack != DIRECT and a.layers]
    order = target.order
    passes = [[a.layers[name] for name in order] for a in rows]
    times = LayerTimes(**vars(target.times))
    # Benign look-alikes through the stack: refused if any layer stops them or the model refuses.
    b_prompts = [b.request for b in benign]
    b_gens = target.generate(b_prompts) if benign else []
    b_layers = target.layered(b_prompts, b_gens) if benign else []
    b_refused = {name: 0 for name in order}
    b_any = 0
    for g, layers in zip(b_gens, b_layers, strict=True):
        layers = {**layers, MODEL_LAYER: not is_refusal(g.text)}
        for name in order:
            b_refused[name] += not layers[name]
        b_any += not all(layers.values())
    results = []
    product = 1.0
    for j, name in enumerate(order):
        reached = [r for r in passes if all(r[:j])]
        marginal = rate(sum(r[j] for r in passes), len(passes))
        product *= marginal.value
        results.append(
            LayerResult(
                name=name,
                pass_rate=marginal,
                catch_rate=rate(sum(not r[j] for r in reached), len(reached)),
                reached=len(reached),
                over_refusal=rate(b_refused[name], len(benign)),
            )
        )
    added = times.input + times.output
    return StackResult(
        name=target.spec.name,
        layers=tuple(results),
        joint=rate(sum(all(r) for r in passes), len(passes)),
        product=product,
        ratio=independence_ratio(passes, seed=seed),
        over_refusal=rate(b_any, len(benign)),
        added_latency=added / times.prompts if times.prompts else 0.0,
        added_fraction=added / times.model if times.model else 0.0,
        seconds_per_prompt=(added + times.model) / times.prompts if times.prompts else 0.0,
    )


def stack_plot(result: StackResult) -> bytes:
    """A PNG: attack attempts reaching each layer and caught there, in stack order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [layer.name for layer in result.layers]
    reached = [layer.reached for layer in result.layers]
    caught = [layer.catch_rate.k for layer in result.layers]
    fig, ax = plt.subplots(figsize=(6.4, 3.2), dpi=100)
    x = range(len(names))
    ax.bar(x, reached, color="#9ecae1", label="attempts reaching the layer")
    ax.bar(x, caught, color="#de2d26", label="caught by the layer")
    ax.set_xticks(list(x), names, rotation=15)
    ax.set_ylabel("attack attempts")
    ax.set_title(
        f"{result.name}: joint ASR {result.joint.value:.3f} vs independent {result.product:.3f}"
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
