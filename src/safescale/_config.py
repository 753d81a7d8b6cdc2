"""Configuration files at the edge: YAML read safely and within bounds, then a pydantic model,
every problem one line naming the file, the line, the field and the fix.

Policies, constitutions, audit configs and stack files are all read here (see
:func:`load_yaml_model`); the byte-level checks they build on are in :mod:`safescale._input`.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar, get_args

import yaml
from pydantic import BaseModel, ValidationError

from safescale._errors import Problem, UserError
from safescale._input import (
    MAX_JSON_DEPTH,
    QUOTE_LEN,
    escape_controls,
    holds,
    one_line,
    quote,
    read_text_limited,
    unsafe_char,
)

MAX_CONFIG_BYTES = 1 << 20
"""A configuration file (an audit config, a stack file) may be at most this large."""

MAX_YAML_NODES = 200_000
"""Values a YAML document may expand to: stops anchor-and-alias bombs (real files have far
fewer; the largest built-in policy about 3,000)."""

MAX_YAML_DEPTH = MAX_JSON_DEPTH
"""YAML may nest at most this deep."""

FieldPath = tuple[str | int, ...]
"""Where a value sits in a parsed document: keys and list indexes from the top."""


class YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader (plain data only: no objects, no code) that leaves dates as text,
    so that the pydantic model parses them and names the field when they are wrong."""


YamlLoader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True)
class YamlDocument:
    """A parsed YAML document and the line of every value in it."""

    data: Any
    """The plain data (dicts, lists, strings, numbers, booleans, None)."""
    lines: dict[FieldPath, int]
    """1-based line of each value (and of each mapping key), by path."""
    problems: tuple[Problem, ...]
    """Duplicate keys (PyYAML would silently keep the last one)."""


class YamlSyntaxError(UserError):
    """The text is not YAML at all (as opposed to YAML beyond the size or depth bounds)."""


class _TooBig(Exception):
    pass


class _TooDeep(Exception):
    pass


def format_field(path: Iterable[str | int]) -> str:
    """``("checks", 0, "kind")`` -> ``checks[0].kind`` (the field names in messages)."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_field(field: str | None) -> FieldPath:
    """``checks[0].kind`` -> ``("checks", 0, "kind")`` (the inverse of :func:`format_field`)."""
    if not field:
        return ()
    parts: list[str | int] = []
    for chunk in field.replace("]", "").split("."):
        head, *idx = chunk.split("[")
        if head:
            parts.append(head)
        parts.extend(int(i) for i in idx)
    return tuple(parts)


def yaml_problem(exc: yaml.YAMLError, source: str, text: str) -> Problem:
    """A YAML syntax error as one problem with its line (and, for a bracket or quote left
    open, the line it was opened on)."""
    mark = getattr(exc, "problem_mark", None)
    start = getattr(exc, "context_mark", None)
    line = mark.line + 1 if mark is not None else None
    if isinstance(exc, yaml.reader.ReaderError):  # a character YAML refuses: its position only
        line = text.count("\n", 0, exc.position) + 1
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        return Problem(
            f"invalid YAML: the character {escape_controls(char)} is not allowed; remove it "
            "or write it as an escape in a double-quoted string",
            source=source,
            line=line,
        )
    what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    if context and start is not None and (line is None or start.line + 1 != line):
        what += f" ({context}, which starts on line {start.line + 1})"
    return Problem(f"invalid YAML: {one_line(what, 200)}; fix the syntax", source=source, line=line)


def _index(
    node: yaml.Node,
    out: dict[FieldPath, int],
    dupes: list[Problem],
    source: str,
    max_nodes: int,
    max_depth: int,
) -> None:
    """Record the line of every value by path and report duplicate keys, walking the node
    tree as the data will be built: an alias counts each time it is used, so a billion-laughs
    document stops at ``max_nodes``, long before it is expanded. Iterative: deep nesting
    costs no recursion."""
    stack: list[tuple[yaml.Node, FieldPath]] = [(node, ())]
    seen_nodes = 0
    while stack:
        cur, path = stack.pop()
        seen_nodes += 1
        if seen_nodes > max_nodes:
            raise _TooBig
        if len(path) > max_depth:
            raise _TooDeep
        out.setdefault(path, cur.start_mark.line + 1)
        if isinstance(cur, yaml.MappingNode):
            keys: set[str] = set()
            children: list[tuple[yaml.Node, FieldPath]] = []
            for key_node, value_node in cur.value:
                # A complex key (``? [a, b]``) is refused when the data is built.
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
                child = (*path, key)
                if key in keys:
                    dupes.append(
                        Problem(
                            f"key '{one_line(str(key), QUOTE_LEN)}' appears twice in the same "
                            "mapping; keep one",
                            source=source,
                            line=key_node.start_mark.line + 1,
                            field=format_field(child),
                        )
                    )
                keys.add(key)
                out[child] = key_node.start_mark.line + 1
                children.append((value_node, child))
            stack.extend(reversed(children))  # depth first, in file order
        elif isinstance(cur, yaml.SequenceNode):
            stack.extend((item, (*path, i)) for i, item in reversed(list(enumerate(cur.value))))


def parse_yaml(
    text: str,
    source: str,
    *,
    what: str = "file",
    max_nodes: int = MAX_YAML_NODES,
    max_depth: int = MAX_YAML_DEPTH,
) -> YamlDocument:
    """Parse YAML (JSON is YAML too) safely and within bounds, or raise a :class:`UserError`.

    Only plain data is built (the safe loader: no tags that make objects or run code); the
    document may expand to at most ``max_nodes`` values, aliases counted each time they are
    used, and nest at most ``max_depth`` deep; characters YAML refuses (control characters)
    are reported with their line. Text values are not checked here (see
    :func:`check_yaml_strings`).
    """
    lines: dict[FieldPath, int] = {}
    dupes: list[Problem] = []
    loader = None
    try:
        loader = YamlLoader(text)  # checks every character first
        node = loader.get_single_node()
        if node is not None:
            _index(node, lines, dupes, source, max_nodes, max_depth)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(yaml_problem(exc, source, text)) from None
    except (RecursionError, _TooDeep):
        raise UserError(
            Problem(
                f"the YAML is nested too deeply (more than {max_depth} levels); a {what} is "
                "only a few levels deep (unbalanced brackets?)",
                source=source,
            )
        ) from None
    except _TooBig:
        raise UserError(
            Problem(
                f"the YAML expands to more than {max_nodes:,} values (anchors and aliases?); a "
                f"{what} is far smaller",
                source=source,
            )
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
    return YamlDocument(data, lines, tuple(dupes))


def line_for(lines: dict[FieldPath, int], path: FieldPath) -> int | None:
    """The line of the value at ``path``, or of the nearest enclosing value that has one."""
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return None


def check_yaml_strings(doc: YamlDocument, source: str, *, allowed: str = "\t\n") -> None:
    """Refuse control and format characters (terminal escapes, bidi overrides, NUL) in any
    key or text value, which a double-quoted YAML string can spell as escapes (``"\\e[31m"``);
    ``allowed`` are kept (tabs and newlines, for multi-line text)."""
    stack: list[tuple[Any, FieldPath]] = [(doc.data, ())]
    while stack:
        cur, path = stack.pop()
        if isinstance(cur, dict):
            items: Iterable[tuple[Any, Any]] = cur.items()
        elif isinstance(cur, list):
            items = enumerate(cur)
        else:
            items = ()
            if isinstance(cur, str):
                bad = next((ch for ch in cur if unsafe_char(ch) and ch not in allowed), None)
                if bad is not None:
                    raise UserError(
                        Problem(
                            f"{quote(cur)} {holds(bad)}; remove it",
                            source=source,
                            line=line_for(doc.lines, path),
                            field=format_field(path) or None,
                        )
                    )
        for key, value in items:
            if isinstance(key, str):
                stack.append((key, (*path, key)))
            stack.append((value, (*path, key)))


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _inner_model(tp: Any) -> Any:
    if _is_model(tp):
        return tp
    for arg in get_args(tp):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def allowed_fields(root: type[BaseModel], path: FieldPath) -> list[str]:
    """The field names a ``root`` document allows at ``path`` (for did-you-mean hints)."""
    model: Any = root
    for part in path:
        if isinstance(part, int):
            continue
        fields = model.model_fields if _is_model(model) else {}
        key = next((n for n, f in fields.items() if (f.alias or n) == part), None)
        if key is None:
            return []
        model = _inner_model(fields[key].annotation)
        if model is None:
            return []
    if not _is_model(model):
        return []
    return [f.alias or name for name, f in model.model_fields.items()]


def data_path(loc: tuple[Any, ...], raw: Any, root: type[BaseModel]) -> FieldPath:
    """Pydantic's error location, less the tags it adds for unions, as a path into ``raw``."""
    aliases = {name: f.alias for name, f in root.model_fields.items() if f.alias}
    out: list[str | int] = []
    cur = raw
    for part in loc:
        if isinstance(cur, dict) and isinstance(part, str):
            if part in cur:
                out.append(part)
                cur = cur[part]
            elif part in aliases and aliases[part] in cur:  # e.g. schema_ for "schema"
                out.append(aliases[part])
                cur = cur[aliases[part]]
            elif cur.get("kind") == part:  # discriminated-union tag
                continue
            else:
                out.append(part)
                cur = None
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            out.append(part)
            cur = cur[part]
        elif isinstance(part, str | int):
            out.append(part)
            cur = None
    return tuple(out)


def pydantic_problem(
    err: Any, raw: Any, lines: dict[FieldPath, int], source: str, root: type[BaseModel]
) -> Problem:
    """One of pydantic's errors (from ``root.model_validate(raw)``) as a :class:`Problem`
    naming the file, the line, the field (``checks[0].kind``) and a fix."""
    path = data_path(tuple(err["loc"]), raw, root)
    field = format_field(path)
    line = line_for(lines, path)
    kind = err["type"]
    if kind == "missing":
        msg = "required field is missing; add it"
    elif kind == "extra_forbidden":
        allowed = allowed_fields(root, path[:-1])
        close = difflib.get_close_matches(str(path[-1]), allowed, n=1) if allowed else []
        if close:
            hint = f"did you mean '{close[0]}'?"
        elif "options" in allowed:  # a layer's own settings (threshold, every) go one level in
            hint = f"if it is a setting of this part, put it under options: ({path[-1]} there)"
        else:
            hint = "remove it or fix its spelling"
        msg = f"unknown field; {hint}"
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        field = f"{field}.kind" if field else "kind"
        line = line_for(lines, (*path, "kind"))
        expected = err.get("ctx", {}).get("expected_tags", "")
        msg = f"unknown kind {quote(err.get('ctx', {}).get('tag', ''))}; use one of {expected}"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        got = err.get("input")
        what = "a list" if isinstance(got, list) else quote(got)
        msg = f"expected a mapping of fields here, got {what}"
    elif kind == "literal_error":
        msg = f"{err['msg'].replace('Input should be', 'must be')}"
    else:
        msg = err["msg"].replace("Value error, ", "")
        msg = msg[0].lower() + msg[1:] if msg else msg
        got = err.get("input")
        if not isinstance(got, dict | list) and got is not None and kind != "value_error":
            msg += f" (got {quote(got)})"
    return Problem(msg, source=source, line=line, field=field or None)


M = TypeVar("M", bound=BaseModel)


def load_yaml_model(
    path: str | os.PathLike[str],
    model: type[M],
    *,
    what: str,
    limit: int = MAX_CONFIG_BYTES,
) -> M:
    """Read a YAML (or JSON) file into ``model``, checked at every layer, or raise a
    :class:`UserError` with one problem: file, line, field and fix.

    The layers: a regular file within ``limit`` bytes (:func:`read_limited`), UTF-8
    (:func:`decode_utf8`), YAML within bounds (:func:`parse_yaml`), no duplicate keys, no
    control characters in keys or text (:func:`check_yaml_strings`), a mapping at the top,
    then ``model`` (which should forbid unknown fields and non-finite numbers).
    """
    src = str(path)
    doc = parse_yaml(read_text_limited(path, limit, what=what), src, what=what)
    if doc.data is None:  # nothing but blanks and comments
        raise UserError(
            Problem(f"the file is empty; give a {what} (a mapping of fields)", source=src)
        )
    if doc.problems:
        raise UserError(doc.problems[0])
    check_yaml_strings(doc, src)
    if not isinstance(doc.data, dict):
        got = "a list" if isinstance(doc.data, list) else quote(doc.data)
        raise UserError(
            Problem(f"the top level is {got}; a {what} is a mapping of fields", source=src, line=1)
        )
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:
        errors = exc.errors()
        # A misspelt field is also a missing one: the unknown name, with its did-you-mean, is
        # the better one line.
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        raise UserError(pydantic_problem(first, doc.data, doc.lines, src, model)) from None
