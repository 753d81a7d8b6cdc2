"""Safeguard layers: the classifier protocol, and the built-in classifiers.

A layer of a safeguard stack is a :class:`Classifier`: it scores texts for harm in [0, 1] and
flags a text at or above its ``threshold``. An *input* layer scores the user's prompt; an
*output* layer scores the model's output as it streams (every ``every`` new tokens, the text so
far), so a flag stops the generation mid-way. A constitutional classifier implements the same
protocol: ``scores`` for an input classifier, and the same ``scores`` on prefixes for a
streaming output classifier (``prompts`` gives exchange-level context, as in CC++).

Built-ins (``CLASSIFIERS``, entry-point group ``safescale.classifiers``):

* ``keywords``: flags texts containing any listed word or regular expression;
* ``lab-names``: flags texts naming a restricted compound of the lab world (an input filter);
* ``lab-leak``: flags outputs naming any precursor or catalyst of the lab world (a streaming
  output filter: it stops a generation as soon as an ingredient is named);
* ``constitutional-input`` / ``constitutional-output`` (option ``path``): the classifiers
  trained from a constitution's data (:mod:`safescale.constitution`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol

from safescale._errors import Problem, UserError
from safescale._input import check_number
from safescale._registry import Registry


class Classifier(Protocol):
    """A harm classifier usable as a stack layer (input or streaming output)."""

    name: str
    threshold: float
    """Texts scoring at or above this are flagged."""

    def scores(self, texts: Sequence[str], prompts: Sequence[str] | None = None) -> list[float]:
        """Harm scores in [0, 1], one per text; ``prompts`` (same length) when scoring outputs."""
        ...


CLASSIFIERS: Registry[Any] = Registry("classifiers")
"""Classifier factories by name: ``factory(**options) -> Classifier``."""


class _WordClassifier:
    def __init__(self, name: str, words: Sequence[str], threshold: float = 0.5) -> None:
        if not words:
            raise UserError(Problem("a keyword classifier needs at least one word", field="words"))
        self.name, self.threshold = name, float(threshold)
        try:
            self.pattern = re.compile("|".join(f"(?:{w})" for w in words), flags=re.IGNORECASE)
        except re.error as exc:
            raise UserError(Problem(f"bad regular expression ({exc})", field="words")) from None

    def scores(self, texts: Sequence[str], prompts: Sequence[str] | None = None) -> list[float]:
        """1.0 for a text containing a listed word, else 0.0."""
        return [1.0 if self.pattern.search(t) else 0.0 for t in texts]


@CLASSIFIERS.register("keywords")
def keywords(words: Sequence[str] = (), threshold: float = 0.5) -> Classifier:
    """Flags texts containing any of ``words`` (regular expressions, case-insensitive)."""
    if isinstance(words, str) or not all(isinstance(w, str) and w for w in words):
        raise UserError(Problem("give a list of non-empty words or expressions", field="words"))
    return _WordClassifier("keywords", list(words), threshold)


@CLASSIFIERS.register("lab-names")
def lab_names(seed: int = 0, threshold: float = 0.5) -> Classifier:
    """Flags texts naming a restricted compound of the lab world of ``seed``."""
    from safescale.lab import build_world

    world = build_world(int(seed))
    return _WordClassifier(
        "lab-names", [rf"\b{re.escape(c.name)}\b" for c in world.compounds], threshold
    )


@CLASSIFIERS.register("lab-leak")
def lab_leak(seed: int = 0, threshold: float = 0.5) -> Classifier:
    """Flags outputs naming any precursor or catalyst of the lab world of ``seed``."""
    from safescale.lab import build_world

    world = build_world(int(seed))
    names = [*world.precursors, *world.catalysts]
    return _WordClassifier("lab-leak", [rf"\b{re.escape(n)}\b" for n in names], threshold)


@CLASSIFIERS.register("constitutional-input")
def constitutional_input(path: str, threshold: float | None = None) -> Classifier:
    """The input classifier trained by ``safescale constitution train`` (its folder ``path``,
    or the training folder); ``threshold`` overrides the calibrated one."""
    from safescale.constitution import load_classifier

    return load_classifier(path, "input", threshold=threshold)


@CLASSIFIERS.register("constitutional-output")
def constitutional_output(path: str, threshold: float | None = None) -> Classifier:
    """The streaming output classifier trained by ``safescale constitution train``: it scores
    the exchange after every new token, reading only the new tokens (a key/value cache)."""
    from safescale.constitution import load_classifier

    return load_classifier(path, "output", threshold=threshold)


def make_classifier(kind: str, options: dict[str, Any]) -> Classifier:
    """The classifier plugin ``kind`` built with ``options``."""
    factory = CLASSIFIERS.get(kind)
    if options.get("threshold") is not None:  # scores lie in [0, 1]: NaN or 5 flags nothing
        check_number(options["threshold"], "threshold", lo=0, hi=1)
    try:
        clf: Classifier = factory(**options)
    except TypeError as exc:
        raise UserError(
            Problem(f"bad options for classifier {kind!r} ({exc})", field="options")
        ) from None
    return clf
