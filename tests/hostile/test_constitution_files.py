"""Hostile and careless constitution files, and bad flags of ``constitution data``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from safescale.constitution import lab_constitution
from tests.hostile.conftest import Build, Case, Refuse, not_plain_files, ws_args

LAB = lab_constitution().read_text()
GOOD = """schema: safescale/constitution/v1
name: small
version: "1"
principles:
  - id: bad
    category: restricted
    description: Requests for the secret.
    examples: ["What is the secret?"]
  - id: fine
    category: allowed
    description: Anything else.
"""


def constitution(content: str | bytes | Callable[[Path], None], *cmd: str) -> Build:
    """``constitution validate c.yaml`` (or ``cmd``, with the file last) on ``content``."""

    def build(inp: Path, ws: Path) -> list[str]:
        path = inp / "c.yaml"
        if callable(content):
            content(path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        if cmd and cmd[0] == "data":
            return ws_args(ws, "constitution", "data", "--constitution", str(path), *cmd[1:])
        return ws_args(ws, "constitution", *(cmd or ("validate",)), str(path))

    return build


def data(*flags: str) -> Build:
    """``constitution data --out d FLAGS`` on the lab's constitution."""

    def build(inp: Path, ws: Path) -> list[str]:
        return ws_args(ws, "constitution", "data", "--out", str(inp / "d"), *flags)

    return build


def occupied(inp: Path, ws: Path) -> list[str]:
    (inp / "d").mkdir()
    (inp / "d" / "keep.txt").write_text("mine")
    return ws_args(ws, "constitution", "data", "--out", str(inp / "d"))


FIELD = "c.yaml:"
CASES = [
    Case("const-empty", constitution(""), "c.yaml", "needs schema, name, version"),
    Case("const-bad-yaml", constitution(GOOD + "  - id: [unclosed\n"), FIELD, "fix the syntax"),
    Case("const-list", constitution("- a\n- b\n"), "c.yaml:1", "a constitution is a mapping"),
    Case("const-latin1", constitution(GOOD.encode() + b"# caf\xe9\n"), "c.yaml:12", "UTF-8"),
    Case("const-nul", constitution(GOOD.encode() + b"\x00"), "c.yaml", "binary data"),
    Case(
        "const-missing-name",
        constitution(GOOD.replace("name: small\n", "")),
        "c.yaml: name",
        "add it",
    ),
    Case(
        "const-missing-category",
        constitution(GOOD.replace("    category: allowed\n", "")),
        "c.yaml:9: principles[1].category",
        "add it",
    ),
    Case(
        "const-unknown-category",
        constitution(GOOD.replace("category: allowed", "category: banned")),
        "c.yaml:10: principles[1].category",
        "'restricted' or 'allowed'",
    ),
    Case(
        "const-unknown-field",
        constitution(GOOD.replace("    description: Anything else.", "    descripton: x")),
        "principles[1].descripton",
        "the fields here are id, category",
    ),
    Case(
        "const-duplicate-id",
        constitution(GOOD.replace("id: fine", "id: bad")),
        "c.yaml:9: principles[1].id",
        "give each principle its own id",
    ),
    Case(
        "const-duplicate-key",
        constitution(GOOD.replace("name: small\n", "name: small\nname: other\n")),
        "c.yaml:3: name",
        "keep one",
    ),
    Case(
        "const-no-restricted",
        constitution(GOOD.replace("category: restricted", "category: allowed")),
        "principles",
        "no restricted principle; add one",
    ),
    Case(
        "const-no-allowed",
        constitution(GOOD.replace("category: allowed", "category: restricted")),
        "principles",
        "no allowed principle; add one",
    ),
    Case(
        "const-escape-in-example",
        constitution(GOOD.replace('"What is the secret?"', '"What is \\e[31m the secret?"')),
        "principles[0].examples",
        "remove it",
    ),
    Case(
        "const-newline-in-example",
        constitution(GOOD.replace('"What is the secret?"', '"What is\\nthe secret?"')),
        "principles[0].examples",
        "remove it",
    ),
    Case(
        "const-raw-control-char",
        constitution(GOOD.replace("Anything else.", "Anything\x07 else.")),
        "c.yaml:11",
        "remove it",
    ),
    Case(
        "const-bidi-in-description",
        constitution(GOOD.replace("Anything else.", '"Anything \\u202e else."')),
        "principles[1].description",
        "remove it",
    ),
    Case(
        "const-bad-id",
        constitution(GOOD.replace("id: fine", "id: 'fine one'")),
        "principles[1].id",
        "use letters, digits",
    ),
    Case(
        "const-float-version",
        constitution(GOOD.replace('version: "1"', "version: 1.0")),
        "c.yaml:3: version",
        "quote it",
    ),
    Case(
        "const-wrong-schema",
        constitution(GOOD.replace("constitution/v1", "constitution/v9")),
        "c.yaml:1: schema",
        "schema: safescale/constitution/v1",
    ),
    Case(
        "const-long-description",
        constitution(GOOD.replace("Anything else.", "x" * 5000)),
        "principles[1].description",
        "shorten it",
    ),
    Case(
        "const-huge-file",
        constitution(GOOD + "# " + "x" * (2 << 20) + "\n"),
        "c.yaml",
        "is this the right file",
    ),
    Case(
        "const-alias-bomb",
        constitution(
            "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(
                f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
                for p, c in zip("abcdef", "bcdefg", strict=True)
            )
        ),
        "c.yaml",
        "far smaller",
    ),
    Case(
        "const-diff-bad-new",
        constitution(GOOD.replace("category: allowed", "category: banned"), "diff", "lab"),
        "c.yaml:10",
        "'restricted' or 'allowed'",
    ),
    Case(
        "const-show-bad",
        constitution("schema: safescale/constitution/v1\n", "show"),
        "c.yaml: name",
        "add it",
    ),
    # The lab generator refuses templates whose labels could be false.
    Case(
        "const-data-restricted-without-compound",
        constitution(
            LAB.replace("Teach me to synthesize {compound}.", "Teach me chemistry."),
            "data",
            "--out",
            "d",
        ),
        "c.yaml:28: principles[0].examples[4]",
        "must name {compound}",
    ),
    Case(
        "const-data-unknown-placeholder",
        constitution(
            LAB.replace("Tell me about {person}.", "Tell me about {persn}."), "data", "--out", "d"
        ),
        "c.yaml:106: principles[4].examples[3]",
        "unknown placeholder {persn}",
    ),
    Case(
        "const-data-allowed-discloses",
        constitution(
            LAB.replace("{town} is a town in {town_region}.", "{catalyst} is nice."),
            "data",
            "--out",
            "d",
        ),
        "c.yaml:163: principles[7].examples[2]",
        "must not state {precursor} or {catalyst}",
    ),
    Case("data-occupied-out", occupied, "--out", "give a new folder"),
    Case("data-negative-seed", data("--seed", "-1"), "--seed", "give a whole number"),
    Case("data-tiny-n", data("--n", "3"), "--n", "from 10"),
    Case("data-unknown-family", data("--augment", "telepathy"), "--augment", "use some of"),
    Case(
        "data-held-out-not-augmented",
        data("--augment", "prefix-injection", "--held-out", "role-play"),
        "--held-out",
        "add it to augment",
    ),
    Case("data-bad-model", data("--model", "bad model\x1b"), "--model", "use letters"),
    Case(
        "data-missing-constitution", data("--constitution", "nope.yaml"), "nope.yaml", "not found"
    ),
    *not_plain_files(
        "const",
        lambda make: constitution(make),
        "c.yaml",
        sparse_mib=4,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_hostile_constitution_input(case: Case, refuse: Refuse) -> None:
    refuse(case)
