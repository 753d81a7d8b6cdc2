"""Hostile and careless JSONL inputs: red-team behaviours (``redteam run --behaviours``),
labelled probe data (``interp probe --data``) and texts to capture (``interp capture
--texts``), all read by ``_input.jsonl_rows`` within bounds.

Each file is read before any model is loaded, so every case is refused at the edge: exit 2, one
line naming the file (and its line) and the fix, nothing written.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.hostile.conftest import Build, Case, Content, Refuse, not_plain_files, put, ws_args

UTF8 = "save the file as UTF-8"


def behaviours(content: Content) -> Build:
    def build(inp: Path, ws: Path) -> list[str]:
        path = put(inp / "b.jsonl", content)
        return ws_args(ws, "redteam", "run", "--target", str(inp / "m"), "--behaviours", str(path))

    return build


def probe_data(content: Content) -> Build:
    def build(inp: Path, ws: Path) -> list[str]:
        path = put(inp / "d.jsonl", content)
        return ws_args(ws, "interp", "probe", "--model", str(inp / "m"), "--data", str(path))

    return build


def capture_texts(content: Content) -> Build:
    def build(inp: Path, ws: Path) -> list[str]:
        path = put(inp / "t.jsonl", content)
        out = str(inp / "cache")
        return ws_args(
            ws, "interp", "capture", "-m", str(inp / "m"), "--texts", str(path), "-o", out
        )

    return build


Wrap = Callable[[Content], Build]
GOOD = {
    "b.jsonl": '{"id": "a", "behaviour": "How is it made?"}\n',
    "d.jsonl": '{"text": "a", "label": 1}\n',
    "t.jsonl": '{"text": "a"}\n',
}


def shared(prefix: str, wrap: Wrap, name: str) -> list[Case]:
    """The broken JSONL every reader refuses the same way."""
    good = GOOD[name]
    return [
        Case(f"{prefix}-not-json", wrap(good + "{oops\n"), f"{name}:2", "one JSON object"),
        Case(f"{prefix}-not-object", wrap(good + "[1, 2]\n"), f"{name}:2", "JSON object"),
        Case(f"{prefix}-nan", wrap(good + '{"text": "a", "x": NaN}\n'), f"{name}:2", "finite"),
        Case(f"{prefix}-latin1", wrap(good.encode() + b'{"text": "caf\xe9"}\n'), f"{name}:2", UTF8),
        Case(
            f"{prefix}-long-line",
            wrap(good + '{"text": "' + "a" * (1 << 20) + '"}\n'),
            f"{name}:2",
            "split or shorten",
        ),
        Case(f"{prefix}-deep", wrap(good + "[" * 200 + "]" * 200 + "\n"), f"{name}:2", "nested"),
        Case(f"{prefix}-missing", wrap(lambda path: None), name, "check the path"),
        *not_plain_files(prefix, wrap, name, sparse_mib=300),
    ]


CASES = [
    *shared("behaviours", behaviours, "b.jsonl"),
    Case("behaviours-no-request", behaviours('{"id": "a"}\n'), "b.jsonl:1", "behaviour"),
    *shared("probe", probe_data, "d.jsonl"),
    Case("probe-label", probe_data('{"text": "a", "label": 2}\n'), "d.jsonl:1", "0 or 1"),
    Case("probe-no-text", probe_data('{"label": 1}\n'), "d.jsonl:1", "'text' string"),
    *shared("capture", capture_texts, "t.jsonl"),
    Case("capture-text-number", capture_texts('{"text": 3}\n'), "t.jsonl:1", "'text' string"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_refused(case: Case, refuse: Refuse) -> None:
    refuse(case)
