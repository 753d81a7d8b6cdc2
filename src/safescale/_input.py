"""User input in, checked values out: the one place every edge of safescale reads through.

Anything a user hands us (a flag, a file, a field inside a file) is untrusted until it passes
here. Numbers must be finite and in range; text must be bounded and free of control characters;
files are read with a byte limit (never a whole unbounded stream), must be valid UTF-8, and
JSON in them is bounded in nesting. Every refusal is a :class:`~safescale._errors.UserError`
naming the place (file:line, field or flag) and the fix, so the command prints one line and
exits with status 2 before anything is written.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import unicodedata
from collections.abc import Iterator
from typing import Any, TypeGuard

from safescale._errors import Problem, UserError

QUOTE_LEN = 60
"""A user value is quoted in a message up to this many characters, then cut with '...'."""

LINE_LEN = 1000
"""An error line is cut to this many characters (a message never floods the terminal)."""

MAX_ID_LEN = 128
"""Model, evaluation and record ids are at most this long."""

ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+=-]*")
"""The id grammar: a letter or digit, then letters, digits and ``. _ : / @ + = -``.

Wide enough for Hugging Face names (``org/model-7b``), Inspect model strings
(``openai-api-completions/local/m``) and lab ids (``s0``); narrow enough that an id can never
carry whitespace, a newline, a terminal escape or markup into a table, a log or a report.
"""

MAX_TEXT_LEN = 4096
"""Free text given on the command line (an author, a note) is at most this long."""

MAX_JSON_DEPTH = 64
"""JSON inputs may nest at most this deep (real logs and results nest under 10)."""


def escape_char(ch: str) -> str:
    """One character written as a Python escape (``\\x1b``, ``\\u202e``)."""
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def unsafe_char(ch: str) -> bool:
    """Whether ``ch`` is a control, format or line-separator character."""
    # Cc: C0/C1 controls (newline, ESC, DEL); Cf: format characters such as the bidi
    # overrides that make text read differently from what it is; Zl/Zp: line separators;
    # Cs: a lone surrogate, which is how Python holds a byte of a name or argument that is not
    # UTF-8 (and which no UTF-8 output can write).
    return unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs")


def first_surrogate(text: str) -> str | None:
    """The first lone surrogate in ``text`` (a byte that was not UTF-8, or half a UTF-16 pair
    from a JSON escape), or ``None``."""
    return next((ch for ch in text if "\ud800" <= ch <= "\udfff"), None)


def not_utf8(text: str) -> str | None:
    """The first byte of ``text`` that was not UTF-8 (an argument, an environment variable or a
    file name decoded with ``surrogateescape``), as an escape, or ``None``."""
    bad = first_surrogate(text)
    if bad is None:
        return None
    code = ord(bad)
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else escape_char(bad)


def holds(ch: str) -> str:
    """What is wrong with a text that holds ``ch`` (an :func:`unsafe_char`), for a message."""
    if unicodedata.category(ch) == "Cs":
        return (
            f"holds {escape_char(ch)}, half of a character (a lone surrogate escape), which no "
            "UTF-8 text can hold"
        )
    return f"holds the control character {escape_char(ch)}"


def escape_controls(text: str) -> str:
    """``text`` with every control or format character written as a visible escape."""
    if all(ch.isprintable() for ch in text):
        return text
    return "".join(escape_char(ch) if unsafe_char(ch) else ch for ch in text)


def quote(value: object, limit: int = QUOTE_LEN) -> str:
    """``value`` quoted for a message: control characters escaped, cut after ``limit``."""
    text = value if isinstance(value, str) else repr(value)
    cut = text[:limit]
    shown = escape_controls(cut).replace("'", "\\'")
    return f"'{shown}{'...' if len(text) > limit else ''}'"


def one_line(text: str, limit: int = LINE_LEN) -> str:
    """``text`` as one printable line of at most about ``limit`` characters."""
    out = escape_controls(text)
    return out if len(out) <= limit else out[: limit - 3] + "..."


def _fail(message: str, field: str | None, source: str | None, line: int | None) -> UserError:
    return UserError(Problem(message, source=source, line=line, field=field))


# -- values -------------------------------------------------------------------------------------


def check_number(
    value: Any,
    field: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
    source: str | None = None,
    line: int | None = None,
) -> float:
    """``value`` as a finite float in [``lo``, ``hi``] (open ends where asked).

    Booleans are refused (YAML's ``true`` is not 1); so are NaN, infinities and numbers too
    large for a float (``1e400`` reads as infinity).
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(f"{quote(value)} is not a number; give a finite number", field, source, line)
    try:
        number = float(value)
    except OverflowError:  # an int beyond float range
        number = math.inf
    if not math.isfinite(number):
        shown = f"{number:g}" if isinstance(value, float) else quote(value)
        raise _fail(f"{shown} is not a finite number; give a finite number", field, source, line)
    below = lo is not None and (number <= lo if lo_open else number < lo)
    above = hi is not None and (number >= hi if hi_open else number > hi)
    if below or above:
        left = "-inf" if lo is None else f"{lo:g}"
        right = "inf" if hi is None else f"{hi:g}"
        opening = "(" if lo_open or lo is None else "["
        closing = ")" if hi_open or hi is None else "]"
        span = f"{opening}{left}, {right}{closing}"
        raise _fail(f"{number:g} is out of range; give a number in {span}", field, source, line)
    return number


def check_optional_number(value: Any, field: str, **limits: Any) -> float | None:
    """:func:`check_number`, letting ``None`` (an option not given) through."""
    return None if value is None else check_number(value, field, **limits)


def check_count(
    value: Any,
    field: str,
    *,
    lo: int = 0,
    hi: int,
    source: str | None = None,
    line: int | None = None,
) -> int:
    """``value`` as an integer in [``lo``, ``hi``] (booleans refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(f"{quote(value)} is not a whole number; give one", field, source, line)
    if not lo <= value <= hi:
        raise _fail(
            f"{value} is out of range; give a whole number from {lo} to {hi:,}", field, source, line
        )
    return value


MAX_SEED = 2**32 - 1
"""The largest seed any command takes (numpy's limit; torch and Inspect take it too)."""


def check_seed(value: Any, field: str = "--seed") -> int:
    """A seed: a whole number from 0 to :data:`MAX_SEED`."""
    return check_count(value, field, lo=0, hi=MAX_SEED)


def check_text(
    value: Any,
    field: str,
    *,
    max_len: int = MAX_TEXT_LEN,
    allow_empty: bool = False,
    source: str | None = None,
    line: int | None = None,
) -> str:
    """``value`` as a string of at most ``max_len`` characters with no control characters."""
    if not isinstance(value, str):
        raise _fail(f"{quote(value)} is not text; give a string", field, source, line)
    if not value and not allow_empty:
        raise _fail("is empty; give a value", field, source, line)
    if len(value) > max_len:
        raise _fail(
            f"is {len(value):,} characters long; at most {max_len:,} are allowed (shorten it)",
            field,
            source,
            line,
        )
    byte = not_utf8(value)
    if byte is not None:
        raise _fail(f"is not valid UTF-8 (byte {byte}); give it in UTF-8", field, source, line)
    bad = next((ch for ch in value if unsafe_char(ch) and ch != "\t"), None)
    if bad is not None:
        raise _fail(
            f"{quote(value)} {holds(bad)}; remove it",
            field,
            source,
            line,
        )
    return value


def check_id(
    value: Any,
    field: str,
    *,
    what: str = "id",
    source: str | None = None,
    line: int | None = None,
) -> str:
    """``value`` as an id of the :data:`ID_RE` grammar, at most :data:`MAX_ID_LEN` long."""
    if not isinstance(value, str):
        raise _fail(f"{quote(value)} is not a {what}; give a string", field, source, line)
    if len(value) > MAX_ID_LEN:
        raise _fail(
            f"{what} {quote(value)} is {len(value):,} characters long; use at most {MAX_ID_LEN}",
            field,
            source,
            line,
        )
    if not ID_RE.fullmatch(value):
        raise _fail(
            f"{quote(value)} is not a valid {what}; use letters, digits and . _ : / @ + = - "
            "(starting with a letter or digit)",
            field,
            source,
            line,
        )
    return value


def check_optional_id(value: Any, field: str, *, what: str = "id") -> str | None:
    """:func:`check_id`, letting ``None`` through."""
    return None if value is None else check_id(value, field, what=what)


# -- files --------------------------------------------------------------------------------------


def size_text(n: int) -> str:
    """A byte count for people (``64 MiB``)."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.0f} {unit}"
    return f"{n} bytes"


def regular_file_size(path: str | os.PathLike[str], *, what: str = "file") -> int:
    """The size of ``path`` in bytes, after checking that it is a regular file.

    Devices, pipes and sockets are refused: ``/dev/zero`` never ends and a FIFO blocks.
    """
    src = str(path)
    a = "an" if what[:1] in "aeiou" else "a"
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise UserError(Problem(f"{what} not found; check the path", source=src)) from None
    except OSError as exc:
        raise UserError(Problem(f"cannot read the {what} ({exc.strerror})", source=src)) from None
    if stat.S_ISDIR(info.st_mode):
        raise UserError(Problem(f"is a folder; give {a} {what}", source=src))
    if not stat.S_ISREG(info.st_mode):
        raise UserError(
            Problem(f"is not a regular file (a device or a pipe?); give {a} {what}", source=src)
        )
    return info.st_size


def read_limited(path: str | os.PathLike[str], limit: int, *, what: str = "file") -> bytes:
    """The bytes of the regular file ``path``, refusing anything over ``limit`` bytes.

    Anything but a regular file is refused before it is opened (see
    :func:`regular_file_size`), and the read itself stops at ``limit + 1`` bytes, so a file
    that grows while we read cannot run us out of memory either.
    """
    src = str(path)
    size = regular_file_size(path, what=what)
    too_big = Problem(
        f"is larger than {size_text(limit)}, the most a {what} may be; is this the right file?",
        source=src,
    )
    if size > limit:
        raise UserError(too_big)
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise UserError(Problem(f"cannot read the {what} ({exc.strerror})", source=src)) from None
    if len(data) > limit:
        raise UserError(too_big)
    return data


def decode_utf8(data: bytes, source: str) -> str:
    """``data`` as text; bytes that are not UTF-8 are refused with their line and column.

    A leading byte-order mark is dropped. Nothing is ever silently replaced: a Latin-1 file
    read as UTF-8 would change the very text that gets hashed and scored.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise UserError(
            Problem(
                f"not UTF-8 text (byte 0x{data[exc.start]:02x} at column {column}); "
                "save the file as UTF-8",
                source=source,
                line=line,
            )
        ) from None
    return text[1:] if text.startswith("\ufeff") else text


def read_text_limited(path: str | os.PathLike[str], limit: int, *, what: str = "file") -> str:
    """:func:`read_limited` then :func:`decode_utf8`."""
    return decode_utf8(read_limited(path, limit, what=what), str(path))


def split_lines(
    data: bytes, source: str, *, max_line: int, what: str = "line"
) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) for each line of ``data``; long or non-UTF-8 lines refused.

    The length check runs on the raw bytes before any decoding or parsing, so a 20 MB line is
    refused in the time it takes to find its end.
    """
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if len(raw) > max_line:
            raise UserError(
                Problem(
                    f"the {what} is {size_text(len(raw))} long; at most {size_text(max_line)} is "
                    "allowed (split or shorten it)",
                    source=source,
                    line=number,
                )
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UserError(
                Problem(
                    f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                    "save the file as UTF-8",
                    source=source,
                    line=number,
                )
            ) from None
        if number == 1 and text.startswith("\ufeff"):
            text = text[1:]
        yield number, text.removesuffix("\r")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValueError(f"the key {quote(twice)} is given twice; keep one")
    return obj


def json_depth(obj: Any) -> int:
    """How deeply ``obj`` (parsed JSON) nests lists and objects (a scalar is 0)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(obj, 0)]
    while stack:
        cur, depth = stack.pop()
        if isinstance(cur, dict):
            children: Any = cur.values()
        elif isinstance(cur, list):
            children = cur
        else:
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def loads_json(
    text: str,
    source: str,
    *,
    line: int | None = None,
    max_depth: int = MAX_JSON_DEPTH,
    fix: str = "fix the JSON",
    allow_nan: bool = False,
    unique_keys: bool = False,
) -> Any:
    """Parse JSON text strictly: no NaN or Infinity, nesting at most ``max_depth`` deep.

    ``line`` is the file line the text starts on (for JSONL); otherwise the parser's line is
    reported. ``allow_nan`` lets the non-standard constants through, for formats that write
    them (Inspect logs mark unscored values NaN); the caller then checks its numbers itself.
    ``unique_keys`` refuses an object that gives a key twice (the parser would keep the last).
    """
    try:
        obj = json.loads(
            text,
            parse_constant=None if allow_nan else _refuse_constant,
            object_pairs_hook=_unique_object if unique_keys else None,
        )
    except json.JSONDecodeError as exc:
        where = line if line is not None else exc.lineno
        raise UserError(
            Problem(f"not valid JSON ({exc.msg}); {fix}", source=source, line=where)
        ) from None
    except ValueError as exc:  # NaN / Infinity, or a key given twice
        why = str(exc)
        if "digits" in why:  # an int beyond Python's str-to-int limit (4,300 digits)
            why = "a number has thousands of digits; write a finite number in range"
        elif "twice" not in why:
            why += "; write a finite number"
        raise UserError(Problem(why, source=source, line=line)) from None
    except RecursionError:
        obj = None
        depth = max_depth + 1
    else:
        depth = json_depth(obj)
    if depth > max_depth:
        raise UserError(
            Problem(
                f"JSON nested more than {max_depth} levels deep; this is not the expected file",
                source=source,
                line=line,
            )
        )
    if _SURROGATE_ESCAPE.search(text):  # rare: only then is every string looked at
        _refuse_lone_surrogates(obj, source, line)
    return obj


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
"""A JSON escape of half a UTF-16 pair: a pair is one character once parsed, a lone half stays
a surrogate, which no UTF-8 text can hold (it broke tokenizers and terminals)."""


def _refuse_lone_surrogates(obj: Any, source: str, line: int | None) -> None:
    stack = [obj]
    while stack:
        cur = stack.pop()
        if isinstance(cur, dict):
            stack.extend(cur.keys())
            stack.extend(cur.values())
        elif isinstance(cur, list):
            stack.extend(cur)
        elif isinstance(cur, str):
            bad = first_surrogate(cur)
            if bad is not None:
                raise UserError(Problem(f"{quote(cur)} {holds(bad)}; remove it", source=source,
                                        line=line))  # fmt: skip


def read_json_limited(
    path: str | os.PathLike[str], limit: int, *, what: str = "JSON file", fix: str = "fix the JSON"
) -> Any:
    """Read, decode and parse a JSON file within ``limit`` bytes (see :func:`loads_json`)."""
    return loads_json(read_text_limited(path, limit, what=what), str(path), fix=fix)


MAX_JSONL_BYTES = 256 << 20
"""A JSONL input (behaviours, labelled texts, texts to capture) may be at most this large."""

MAX_JSONL_LINE = 1 << 20
"""One JSONL line may be at most this long."""


def jsonl_rows(
    path: str | os.PathLike[str],
    what: str,
    *,
    limit: int = MAX_JSONL_BYTES,
    max_line: int = MAX_JSONL_LINE,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) of each non-blank line of a JSONL file, read within ``limit``
    bytes and ``max_line`` bytes a line, strict UTF-8 and JSON (see :func:`loads_json`); a
    problem is a one-line :class:`UserError` naming the file and the line."""
    src = str(path)
    data = read_limited(path, limit, what=what)
    for number, line in split_lines(data, src, max_line=max_line):
        if not line.strip():
            continue
        # A key given twice is refused: the parser kept the last, so a line could say one
        # thing to a reader of the file and another to the command.
        row = loads_json(line, src, line=number, fix=f"each line of a {what} is one JSON object",
                         unique_keys=True)  # fmt: skip
        if not isinstance(row, dict):
            raise UserError(
                Problem(f"each line of a {what} must be a JSON object", source=src, line=number)
            )
        yield number, row


def is_sha256(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a sha256 as written everywhere here: 64 lowercase hex digits."""
    return (
        isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    )
