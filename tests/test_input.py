"""The edge module: quoting, numbers, ids, bounded reads, strict UTF-8 and JSON."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from safescale._errors import UserError
from safescale._input import (
    MAX_ID_LEN,
    QUOTE_LEN,
    check_count,
    check_id,
    check_number,
    check_text,
    decode_utf8,
    loads_json,
    one_line,
    quote,
    read_limited,
    split_lines,
)


def message(exc: pytest.ExceptionInfo[UserError]) -> str:
    return str(exc.value.problems[0])


def test_quote_escapes_and_cuts() -> None:
    assert quote("abc") == "'abc'"
    assert quote("a\nb\x1b[2J") == "'a\\x0ab\\x1b[2J'"
    assert quote("\u202eevil") == "'\\u202eevil'"
    long = quote("x" * 100_000)
    assert long == "'" + "x" * QUOTE_LEN + "...'"
    assert one_line("a\nb" * 1000, 50).endswith("...") and len(one_line("a" * 5000, 50)) == 50


@pytest.mark.parametrize(
    "value", [float("inf"), float("-inf"), float("nan"), 10**400, True, "1.0", None]
)
def test_check_number_refuses_what_is_not_a_finite_number(value: object) -> None:
    with pytest.raises(UserError) as exc:
        check_number(value, "--x")
    assert message(exc).startswith("--x: ")


def test_check_number_ranges() -> None:
    assert check_number(0, "--x", lo=0) == 0.0
    with pytest.raises(UserError, match=r"\(0, 1\]"):
        check_number(0, "--x", lo=0, hi=1, lo_open=True)
    assert check_number(1, "--x", lo=0, hi=1) == 1.0
    with pytest.raises(UserError, match=r"\[0, 1\)"):
        check_number(1, "--x", lo=0, hi=1, hi_open=True)
    assert check_count(3, "--n", hi=3) == 3
    with pytest.raises(UserError):
        check_count(True, "--n", hi=3)


@pytest.mark.parametrize(
    "good", ["s0", "org/model-7b", "openai-api-completions/local/m", "m@v1:2", "a.b_c+d=e"]
)
def test_id_grammar_accepts_real_ids(good: str) -> None:
    assert check_id(good, "--model") == good


@pytest.mark.parametrize(
    "bad", ["", " m", "m n", "a\nb", "\x1b[2J", "-m", "/abs", "m\u202e", "m" * (MAX_ID_LEN + 1)]
)
def test_id_grammar_refuses(bad: str) -> None:
    with pytest.raises(UserError) as exc:
        check_id(bad, "--model")
    assert "\n" not in message(exc) and len(message(exc)) < 300


def test_text_allows_tabs_not_controls() -> None:
    assert check_text("a\tb", "--note") == "a\tb"
    with pytest.raises(UserError, match="remove it"):
        check_text("a\rb", "--note")
    with pytest.raises(UserError, match="shorten it"):
        check_text("a" * 10, "--note", max_len=5)


def test_read_limited_stops_at_the_limit_and_refuses_devices(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    assert read_limited(path, 100) == b"x" * 100
    with pytest.raises(UserError, match="larger than 99 bytes"):
        read_limited(path, 99)
    start = time.perf_counter()
    with pytest.raises(UserError, match="not a regular file"):
        read_limited("/dev/zero", 1 << 20)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it would block until a writer came
    with pytest.raises(UserError, match="not a regular file"):
        read_limited(fifo, 1 << 20)
    assert time.perf_counter() - start < 5.0


def test_utf8_is_strict_and_located() -> None:
    assert decode_utf8("\ufeffcafé".encode(), "f") == "café"
    with pytest.raises(UserError) as exc:
        decode_utf8(b"ok\nline two caf\xe9\n", "f.jsonl")
    assert exc.value.problems[0].line == 2 and "column 13" in message(exc)
    with pytest.raises(UserError) as exc:
        list(split_lines(b'{"a": 1}\n' + b"x" * 2000, "t.jsonl", max_line=1000))
    assert exc.value.problems[0].line == 2


def test_json_is_strict_and_bounded() -> None:
    assert loads_json('{"a": [1, 2.5]}', "f") == {"a": [1, 2.5]}
    for text in ('{"a": NaN}', '{"a": Infinity}', '{"a": -Infinity}'):
        with pytest.raises(UserError, match="write a finite number"):
            loads_json(text, "f")
    assert loads_json('{"a": NaN}', "f", allow_nan=True)["a"] != 0
    with pytest.raises(UserError, match="nested more than 3"):
        loads_json("[[[[1]]]]", "f", max_depth=3)
    with pytest.raises(UserError, match="nested more than"):
        loads_json("[" * 200_000 + "]" * 200_000, "f")  # deeper than the recursion limit
