"""Degenerate evaluations: answers that do not depend on the input.

A model that has collapsed (every prompt gets the same completion, every multiple-choice
question the same letter) still produces a number, and that number can look like a finding:
a collapsed "always comply" model scores 1.0 on a jailbreak suite. Such evidence is marked when
it is made, and the determination and the report say when they rest on it.

The rule only fires where identical answers are wrong by construction: the samples' targets
differ, yet one answer covers most of them and carries one prompt's specifics (a compound's
name) to all of them. A model that refuses every restricted request gives one identical,
generic answer: that is a behaviour the policy should read, and it is not flagged.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

MIN_SAMPLES = 8
"""Fewer scored samples than this are never called degenerate (too few to tell)."""
MAX_SHARE = 0.5
"""A generative evaluation is degenerate when one completion answers more than this share of
distinct prompts whose targets differ."""


@dataclass(frozen=True)
class Degeneracy:
    """Why an evaluation's answers look independent of its inputs."""

    reason: str
    """One phrase for the evidence and the report."""
    share: float
    """Share of samples given the most common answer."""
    n: int
    """Samples looked at."""


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(_text(v) for v in value)
    content = getattr(value, "content", None)
    if content is not None:
        return _text(content)
    return str(value)


def _answer(sample: Any) -> str | None:
    for score in (getattr(sample, "scores", None) or {}).values():
        answer = getattr(score, "answer", None)
        if answer is not None:
            return str(answer).strip()
    return None


def detect_degeneracy(samples: Iterable[Any]) -> Degeneracy | None:
    """A :class:`Degeneracy` if the samples' answers ignore their inputs, else None.

    ``samples`` are Inspect samples or sample summaries (``input``, ``target``, ``scores``
    with each score's ``answer``). Multiple choice (one-letter answers): degenerate when every
    answer is the same letter although the gold letters differ. Generation: degenerate when
    one completion answers more than :data:`MAX_SHARE` of the distinct prompts, the targets of
    those prompts are not all the same, and the completion names something that only a few of
    those prompts mention (one prompt's specifics given to all of them).
    """
    rows = []
    for s in samples:
        answer = _answer(s)
        if answer is not None:
            rows.append((_text(getattr(s, "input", "")), _text(getattr(s, "target", "")), answer))
    if len(rows) < MIN_SAMPLES or len({r[0] for r in rows}) < MIN_SAMPLES:
        return None
    answers = Counter(r[2] for r in rows)
    top, count = answers.most_common(1)[0]
    share = count / len(rows)
    targets = {r[1] for r in rows if r[2] == top}
    if all(len(a) == 1 and a.isalpha() for a in answers):  # multiple choice letters
        if count == len(rows) and len({r[1] for r in rows}) > 1:
            return Degeneracy(
                f"every one of {len(rows)} multiple-choice answers is {top}", share, len(rows)
            )
        return None
    if share > MAX_SHARE and len(targets) > 1:
        prompts = [r[0] for r in rows if r[2] == top]
        borrowed = _borrowed_words(top, prompts)
        if not borrowed:
            # One generic answer to every prompt (a refusal, say) is a behaviour, not a
            # collapse: the policy reads the rate it gives.
            return None
        quoted = top if len(top) <= 60 else top[:57] + "..."
        return Degeneracy(
            f"{count} of {len(rows)} distinct prompts got one identical completion "
            f"({quoted!r}, naming {', '.join(sorted(borrowed)[:3])} from a few of them) "
            "although their targets differ",
            share,
            len(rows),
        )
    return None


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z][a-z0-9]{3,}", text.lower()))


def _borrowed_words(completion: str, prompts: list[str]) -> set[str]:
    """Words of ``completion`` that belong to a few of ``prompts`` only (at most a tenth).

    A collapsed model repeats one prompt's specifics (a compound's name) to every prompt; a
    generic answer shares no such rare word with them.
    """
    counts = Counter(w for p in prompts for w in _words(p))
    limit = max(1, len(prompts) // 10)
    return {w for w in _words(completion) if 0 < counts[w] <= limit}
