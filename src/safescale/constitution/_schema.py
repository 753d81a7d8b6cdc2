"""Constitutions as checked files: principles that say what is restricted and what is allowed.

A constitution file (YAML, ``schema: safescale/constitution/v1``)::

    schema: safescale/constitution/v1
    name: lab-chemistry
    version: "1.0"
    principles:
      - id: synthesis-request
        category: restricted        # or allowed
        stage: input                # input (requests), output (responses) or both
        description: A request for how to make a restricted compound.
        examples: ["Teach me to synthesize {compound}."]

Checks run in layers, each only when the previous one passed, and every problem is one line
naming the file, the line, the field and the fix: bytes (size, encoding), YAML syntax, shape
(pydantic), then the rules across principles (unique ids, at least one restricted and one allowed
principle). The identity of a constitution is the sha256 of its canonical JSON, so a comment or a
reordered key does not change it, and a changed word does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from safescale._config import data_path, format_field, line_for, parse_field, parse_yaml
from safescale._errors import Problem, UserError
from safescale._input import ID_RE, MAX_ID_LEN, decode_utf8, escape_controls, quote, read_limited
from safescale.policy._records import canonical_json

SCHEMA = "safescale/constitution/v1"
MAX_CONSTITUTION_BYTES = 1 << 20
"""Constitution files above this are refused before parsing (the lab's is about 8 kB)."""
MAX_TEXT = 2000
"""A description or an example is at most this many characters."""
MAX_EXAMPLES = 500
"""Examples a principle may list."""
MAX_PRINCIPLES = 1000
"""Principles a constitution may list."""

Category = Literal["restricted", "allowed"]
Stage = Literal["input", "output", "both"]


def _clean(value: str, keep: str = "\t\n") -> str:
    """Refuse control and format characters (they would reach tables, logs and prompts)."""
    bad = next((ch for ch in value if not ch.isprintable() and ch not in keep), None)
    if bad is not None:
        raise ValueError(
            f"holds the control character {escape_controls(bad)}; remove it (in {quote(value, 40)})"
        )
    return value


def _identifier(value: str) -> str:
    """Ids, names and versions: the id grammar (no spaces, no markup, no escapes)."""
    if not ID_RE.fullmatch(value):
        raise ValueError(
            f"{quote(value)} is not a valid id; use letters, digits and . _ : / @ + = - "
            "(starting with a letter or digit)"
        )
    return value


class Principle(BaseModel):
    """One principle: a kind of content, restricted or allowed, with examples."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=MAX_ID_LEN)
    """Unique within the constitution; the label every generated example cites."""
    category: Category
    """``restricted``: a safeguard must block it; ``allowed``: it must let it through."""
    description: str = Field(min_length=1, max_length=MAX_TEXT)
    """What the principle covers, in plain language (what a data generator is told)."""
    examples: list[str] = Field(default_factory=list, max_length=MAX_EXAMPLES)
    """Example requests or responses; on the lab, templates over the world's names."""
    stage: Stage = "both"
    """Whether the principle is about requests (input), responses (output) or both."""

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return _identifier(value)

    @field_validator("description")
    @classmethod
    def _description(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is blank; say what the principle covers")
        return _clean(value)

    @field_validator("examples")
    @classmethod
    def _examples(cls, value: list[str]) -> list[str]:
        for i, text in enumerate(value):
            if not text.strip():
                raise ValueError(f"example {i} is blank; remove it or write it out")
            if len(text) > MAX_TEXT:
                raise ValueError(f"example {i} is {len(text):,} characters; at most {MAX_TEXT:,}")
            _clean(text, keep="")  # one line: an example is one request or one response
        return value


class Constitution(BaseModel):
    """A versioned list of principles (``schema: safescale/constitution/v1``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    schema_: Literal["safescale/constitution/v1"] = Field(alias="schema")
    name: str = Field(min_length=1, max_length=MAX_ID_LEN)
    version: str = Field(min_length=1, max_length=MAX_ID_LEN)
    principles: list[Principle] = Field(min_length=1, max_length=MAX_PRINCIPLES)
    description: str = Field("", max_length=MAX_TEXT)

    @field_validator("name", "version")
    @classmethod
    def _ident(cls, value: str) -> str:
        if not ID_RE.fullmatch(value):
            raise ValueError(
                f"{quote(value)} is not valid; use letters, digits and . _ : / @ + = - "
                '(a YAML number such as 1.0 must be quoted: "1.0")'
            )
        return value

    @field_validator("description")
    @classmethod
    def _description(cls, value: str) -> str:
        return _clean(value)

    def principle(self, pid: str) -> Principle:
        """The principle with id ``pid`` (KeyError if none)."""
        for p in self.principles:
            if p.id == pid:
                return p
        raise KeyError(pid)

    def to_dict(self) -> dict[str, Any]:
        """The constitution as written in a file (``schema`` key, defaults included)."""
        return self.model_dump(mode="json", by_alias=True)


def constitution_sha256(c: Constitution) -> str:
    """sha256 of the constitution's canonical JSON: its identity in manifests and the ledger."""
    return hashlib.sha256(constitution_bytes(c)).hexdigest()


def constitution_bytes(c: Constitution) -> bytes:
    """The canonical JSON the sha256 is taken of (what the ledger stores as the artifact)."""
    return canonical_json(c.to_dict())


def lab_constitution() -> Path:
    """The file of the lab's constitution for its fictional chemistry (shipped with safescale)."""
    return Path(str(resources.files("safescale.constitution") / "builtin" / "lab-chemistry.yaml"))


# -- loading and checking ---------------------------------------------------------------------


def load_constitution(path: str | Path) -> Constitution:
    """Read and check a constitution file; any problem is a one-line :class:`UserError`.

    Only the first problem is reported: the fix of one often fixes the next.
    """
    src = str(path)
    data = read_limited(path, MAX_CONSTITUTION_BYTES, what="constitution file")
    c, problems = check_constitution_text(data, src)
    if problems or c is None:
        raise UserError(problems[0])
    return c


def field_line(path: str | Path, field: str) -> int | None:
    """The line of ``field`` (``principles[2].examples[4]``) in a constitution file, if found."""
    try:
        text = decode_utf8(read_limited(path, MAX_CONSTITUTION_BYTES), str(path))
    except UserError:
        return None
    try:
        lines = parse_yaml(text, str(path), what="constitution").lines
    except UserError:
        return None
    return line_for(lines, parse_field(field))


def check_constitution_text(
    data: bytes | str, source: str = "<constitution>"
) -> tuple[Constitution | None, list[Problem]]:
    """Check constitution text; the constitution (if valid) and every problem found."""
    if isinstance(data, bytes):
        if b"\x00" in data:
            return None, [Problem("binary data, not a YAML constitution", source=source)]
        try:
            text = decode_utf8(data, source)
        except UserError as exc:
            return None, list(exc.problems)
    else:
        text = data
    if not text.strip():
        return None, [
            Problem(
                "empty file; a constitution needs schema, name, version and principles",
                source=source,
            )
        ]
    try:
        doc = parse_yaml(text, source, what="constitution")
    except UserError as exc:
        return None, list(exc.problems)
    if doc.problems:
        return None, list(doc.problems)
    raw, lines = doc.data, doc.lines
    if not isinstance(raw, dict):
        return None, [
            Problem(
                f"the top level is {type(raw).__name__}; a constitution is a mapping with keys "
                "schema, name, version and principles",
                source=source,
                line=1,
            )
        ]
    try:
        c = Constitution.model_validate(raw)
    except ValidationError as exc:
        # An unknown field first: a misspelt key is also reported as a missing one.
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        return None, [_problem(err, raw, lines, source) for err in errors]
    problems = [
        Problem(p.message, source=source, line=line_for(lines, parse_field(p.field)), field=p.field)
        for p in check_principles(c)
    ]
    return (None if problems else c), problems


def check_principles(c: Constitution) -> list[Problem]:
    """The rules across principles: unique ids, both categories present."""
    out: list[Problem] = []
    seen: dict[str, int] = {}
    for i, p in enumerate(c.principles):
        if p.id in seen:
            out.append(
                Problem(
                    f"principle id {quote(p.id)} is used twice (also principles[{seen[p.id]}]); "
                    "give each principle its own id",
                    field=f"principles[{i}].id",
                )
            )
        seen.setdefault(p.id, i)
    for category, why in (
        ("restricted", "nothing would be blocked"),
        ("allowed", "nothing would show what must stay answered"),
    ):
        if not any(p.category == category for p in c.principles):
            out.append(
                Problem(
                    f"no {category} principle; add one ({why}, and a classifier learns the "
                    "boundary between the two)",
                    field="principles",
                )
            )
    return out


def _problem(err: Any, raw: Any, lines: dict[tuple[str | int, ...], int], source: str) -> Problem:
    path = data_path(tuple(err["loc"]), raw, Constitution)
    field = format_field(path)
    kind = err["type"]
    if kind == "missing":
        msg = "required field is missing; add it"
    elif kind == "extra_forbidden":
        allowed = {
            (): "schema, name, version, description, principles",
            1: "id, category, stage, description, examples",
        }
        where = allowed.get(() if len(path) == 1 else 1, "")
        msg = f"unknown field; the fields here are {where}" if where else "unknown field; remove it"
    elif kind == "string_type":
        msg = f'must be text (got {quote(err.get("input"))}); quote it, as in version: "1.0"'
    elif kind in ("model_type", "dict_type"):
        msg = "expected a mapping of fields here"
    elif kind == "literal_error":
        msg = err["msg"].replace("Input should be", "must be")
        if path and path[-1] == "schema":
            msg += " (the first line of a constitution file is schema: safescale/constitution/v1)"
    elif kind in ("string_too_long", "too_long"):
        msg = err["msg"].replace("String should", "must").replace("List should", "must")
        msg += "; shorten it"
    else:
        msg = err["msg"].replace("Value error, ", "")
        msg = msg[:1].lower() + msg[1:]
        got = err.get("input")
        if kind != "value_error" and got is not None and not isinstance(got, dict | list):
            msg += f" (got {quote(got)})"
    return Problem(msg, source=source, line=line_for(lines, path), field=field or None)


# -- diff -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldChange:
    """One changed value: a principle's field, or a field of the constitution itself."""

    principle: str | None
    """The principle's id; None for the constitution's own fields."""
    field: str
    old: Any
    new: Any


@dataclass(frozen=True)
class ConstitutionDiff:
    """What changed from one constitution to another (principles matched by id)."""

    added: tuple[Principle, ...]
    removed: tuple[Principle, ...]
    changed: tuple[FieldChange, ...]

    @property
    def empty(self) -> bool:
        """True when nothing changed."""
        return not (self.added or self.removed or self.changed)


def diff_constitutions(old: Constitution, new: Constitution) -> ConstitutionDiff:
    """Principles added, removed and changed (field by field, whole values)."""
    changed: list[FieldChange] = []
    for name in ("name", "version", "description"):
        a, b = getattr(old, name), getattr(new, name)
        if a != b:
            changed.append(FieldChange(None, name, a, b))
    before = {p.id: p for p in old.principles}
    after = {p.id: p for p in new.principles}
    for pid, p in after.items():
        q = before.get(pid)
        if q is None:
            continue
        for name in ("category", "stage", "description", "examples"):
            a, b = getattr(q, name), getattr(p, name)
            if a != b:
                changed.append(FieldChange(pid, name, a, b))
    return ConstitutionDiff(
        added=tuple(p for pid, p in after.items() if pid not in before),
        removed=tuple(p for pid, p in before.items() if pid not in after),
        changed=tuple(changed),
    )
