"""JSONL tasks: read, check line by line, turn into Inspect samples.

Three shapes, one per file:

* multiple choice: ``{"question": str, "choices": [str, ...], "answer": int}`` (0-based index);
* generative: ``{"input": str, "target": str}``;
* perplexity: ``{"text": str}``.

An ``id`` field, when present, becomes the sample id. A bad line is a one-line
:class:`UserError` naming the file and line; nothing is run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from inspect_ai.dataset import Sample

from safescale._errors import Problem, UserError
from safescale._input import MAX_ID_LEN, check_text, loads_json, quote, read_limited, split_lines

MAX_TASK_BYTES = 512 << 20
"""Largest JSONL task read (MMLU's test split is about 8 MB)."""
MAX_LINE_BYTES = 1 << 20
"""Longest line: one sample (a question with its choices) in at most 1 MiB."""
MAX_SAMPLES = 1_000_000
"""Most samples in one task file."""
MAX_ROW_DEPTH = 16
"""A sample's JSON nests at most this deep (metadata included)."""

TaskKind = Literal["multiple_choice", "generative", "perplexity"]


@dataclass(frozen=True)
class TaskData:
    """A checked JSONL task."""

    path: Path
    """The file it was read from."""
    kind: TaskKind
    """Which of the three shapes every line has."""
    samples: tuple[Sample, ...]
    """Inspect samples (choices lettered A, B, ...; the target is the gold letter)."""
    sha256: str
    """sha256 of the file's bytes (the dataset hash in evidence)."""


def _kind_of(row: dict[str, Any]) -> TaskKind | None:
    if "question" in row or "choices" in row or "answer" in row:
        return "multiple_choice"
    if "input" in row or "target" in row:
        return "generative"
    if "text" in row:
        return "perplexity"
    return None


def load_jsonl_task(path: Path) -> TaskData:
    """Read and check a JSONL task file (see module docstring for the shapes)."""
    src = str(path)
    raw = read_limited(path, MAX_TASK_BYTES, what="task file")
    samples: list[Sample] = []
    kind: TaskKind | None = None
    seen: dict[str | int, int] = {}
    for n, line in split_lines(raw, src, max_line=MAX_LINE_BYTES):
        if not line.strip():
            continue
        if len(samples) == MAX_SAMPLES:
            raise UserError(
                Problem(
                    f"more than {MAX_SAMPLES:,} samples; split the task into several files",
                    source=src,
                    line=n,
                )
            )
        row = loads_json(
            line, src, line=n, max_depth=MAX_ROW_DEPTH, fix="write one JSON object per line"
        )
        if not isinstance(row, dict):
            raise UserError(Problem("each line must be a JSON object", source=src, line=n))
        this = _kind_of(row)
        if this is None:
            raise UserError(
                Problem(
                    "line has none of question/choices/answer, input/target or text",
                    source=src,
                    line=n,
                )
            )
        if kind is not None and this != kind:
            raise UserError(
                Problem(
                    f"a {this} line in a {kind} task; keep one shape per file", source=src, line=n
                )
            )
        kind = this
        sample = _sample(row, this, src, n)
        if sample.id is not None:
            if sample.id in seen:
                raise UserError(
                    Problem(
                        f"sample id {quote(sample.id)} is also on line {seen[sample.id]}; "
                        "give every sample its own id",
                        source=src,
                        line=n,
                        field="id",
                    )
                )
            seen[sample.id] = n
        samples.append(sample)
    if kind is None:
        raise UserError(Problem("task is empty; it needs at least one JSON line", source=src))
    return TaskData(
        path=path, kind=kind, samples=tuple(samples), sha256=hashlib.sha256(raw).hexdigest()
    )


def _sample(row: dict[str, Any], kind: TaskKind, src: str, n: int) -> Sample:
    def bad(field: str, message: str) -> UserError:
        return UserError(Problem(message, source=src, line=n, field=field))

    sid = row.get("id")
    if sid is not None and (isinstance(sid, bool) or not isinstance(sid, str | int)):
        raise bad("id", "must be a string or an integer")
    if isinstance(sid, str):
        check_text(sid, "id", max_len=MAX_ID_LEN, source=src, line=n)
    meta = {
        k: v
        for k, v in row.items()
        if k not in {"id", "question", "choices", "answer", "input", "target", "text"}
    }
    if kind == "multiple_choice":
        q, choices, answer = row.get("question"), row.get("choices"), row.get("answer")
        if not isinstance(q, str) or not q:
            raise bad("question", "must be a non-empty string")
        if (
            not isinstance(choices, list)
            or len(choices) < 2
            or not all(isinstance(c, str) for c in choices)
        ):
            raise bad("choices", "must be a list of at least two strings")
        if len(choices) > 26:
            raise bad("choices", "at most 26 choices (lettered A-Z)")
        if isinstance(answer, bool) or not isinstance(answer, int):
            raise bad("answer", "must be the 0-based index of the right choice")
        if not 0 <= answer < len(choices):
            raise bad(
                "answer",
                f"index {answer} is out of range for {len(choices)} choices (0-{len(choices) - 1})",
            )
        return Sample(
            input=q, choices=choices, target=chr(ord("A") + answer), id=sid, metadata=meta or None
        )
    if kind == "generative":
        inp, target = row.get("input"), row.get("target")
        if not isinstance(inp, str) or not inp:
            raise bad("input", "must be a non-empty string")
        if not isinstance(target, str | list):
            raise bad("target", "must be a string (or a list of acceptable strings)")
        return Sample(input=inp, target=target, id=sid, metadata=meta or None)
    text = row.get("text")
    if not isinstance(text, str) or not text:
        raise bad("text", "must be a non-empty string")
    return Sample(input=text, target="", id=sid, metadata=meta or None)
