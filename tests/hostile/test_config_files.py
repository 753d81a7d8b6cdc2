"""Hostile and careless configuration files: the audit config (``audit --config``) and the
stack file (``redteam run --target stack.yaml``), both read by ``_config.load_yaml_model``.

One table of broken YAML runs through both commands, then a few cases each command's model
refuses. Each case: exit 2, one line naming the file (its line and field where there is one)
and the fix, nothing written.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.hostile.conftest import Build, Case, Content, Refuse, not_plain_files, put, ws_args

AUDIT = "checks:\n  - {id: probe, kind: defection_probe, layer: 1}\nsae:\n  k: 4\n"
STACK = (
    "name: s\nmodel: m\nmax_new_tokens: 8\nlayers:\n"
    "  - {name: screen, stage: input, classifier: keywords}\n"
)
UTF8 = "save the file as UTF-8"


def audit(content: Content) -> Build:
    """``audit --config a.yaml`` (the config is read before the model or corpus)."""

    def build(inp: Path, ws: Path) -> list[str]:
        path = put(inp / "a.yaml", content)
        return ws_args(
            ws,
            "audit",
            "--model",
            str(inp / "model"),
            "--corpus",
            str(inp / "corpus"),
            "--config",
            str(path),
        )

    return build


def stack(content: Content) -> Build:
    """``redteam run --target s.yaml --behaviours lab:2`` (the stack is read before any model)."""

    def build(inp: Path, ws: Path) -> list[str]:
        path = put(inp / "s.yaml", content)
        return ws_args(ws, "redteam", "run", "--target", str(path), "--behaviours", "lab:2")

    return build


def laughs(levels: int = 9) -> str:
    """A billion-laughs document: each level lists the one before ten times."""
    out = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    out += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(out) + "\n"


def add(text: str | bytes) -> Callable[[str], Content]:
    """The good file with ``text`` appended (bytes: the whole file as bytes)."""
    if isinstance(text, bytes):
        return lambda good: good.encode() + text
    return lambda good: good + text


def only(text: str) -> Callable[[str], Content]:
    """``text`` in place of the good file."""
    return lambda good: text


def deep_mapping(levels: int) -> str:
    return "".join(f"{' ' * i}k{i}:\n" for i in range(levels)) + " " * levels + "v: 1\n"


# (id, broken file from the good one, what follows the file name in the line, the fix): the
# same breakage for both files. Appended lines come after the good file's last line.
Broken = tuple[str, Callable[[str], Content], str, str]
SHARED: list[Broken] = [
    ("latin1", add("# caf\xe9\n".encode("latin-1")), ":{n}", UTF8),
    ("latin1-first-line", lambda good: ("\xe9" + good).encode("latin-1"), ":1", UTF8),
    ("nul", add("x: \x00\n"), ":{n}", "is not allowed"),
    ("raw-escape", add("x: \x1b[31mred\n"), ":{n}", "is not allowed"),
    ("c1-control", add("x: a\x9bb\n"), ":{n}", "is not allowed"),
    ("quoted-escape", add('x: "\\e[31mred"\n'), ":{n}: x:", "control character \\x1b"),
    ("quoted-cr-in-key", add('"a\\rb": 1\n'), ":{n}: a\\x0db", "control character \\x0d"),
    ("bidi", add("x: abc\u202edef\n"), ":{n}: x:", "control character \\u202e"),
    ("deep-20000", only("x: " + "[" * 20_000 + "]" * 20_000 + "\n"), "", "nested too deeply"),
    ("deep-100", only("x: " + "[" * 100 + "]" * 100 + "\n"), "", "nested too deeply"),
    ("deep-mapping", only(deep_mapping(80)), "", "nested too deeply"),
    ("billion-laughs", only(laughs()), "", "anchors and aliases"),
    ("python-tag", add("x: !!python/object/apply:os.system [echo hi]\n"), ":{n}", "invalid YAML"),
    ("unclosed", add("x: [1, 2\n"), ":", "fix the syntax"),
    ("tab-indent", add("x:\n\t- 1\n"), ":", "fix the syntax"),
    ("duplicate-key", lambda good: good + good.splitlines()[0] + "\n", ":{n}:", "appears twice"),
    ("empty", only(""), "", "the file is empty"),
    ("comment-only", only("\n  \n# nothing\n"), "", "the file is empty"),
    ("top-list", only("- 1\n- 2\n"), ":1", "a mapping of fields"),
    ("top-string", only("just text\n"), ":1", "a mapping of fields"),
    ("unknown-field", add("colour: red\n"), ":{n}: colour", "unknown field"),
    ("complex-key", add("? [a, b]\n: 1\n"), ":", "invalid YAML"),
]
SHARED_SPECIAL = ("zero", "fifo", "folder", "sparse")


def _shared(name: str, wrap: Callable[[Content], Build], good: str) -> list[Case]:
    n = good.count("\n") + 1  # the first line added to the good file
    return [
        Case(f"{name}-{id_}", wrap(make(good)), f"{name[0]}.yaml{where.format(n=n)}", fix)
        for id_, make, where, fix in SHARED
    ] + not_plain_files(name, wrap, f"{name[0]}.yaml", sparse_mib=2, kinds=SHARED_SPECIAL)


def sub(good: str, old: str, new: str) -> str:
    assert old in good, old
    return good.replace(old, new, 1)


AUDIT_CASES = _shared("audit", audit, AUDIT) + [
    Case(
        "audit-missing",
        lambda inp, ws: audit(AUDIT)(inp, ws)[:-1] + [str(inp / "none.yaml")],
        "none.yaml",
        "not found; check the path",
    ),
    Case("audit-checks-number", audit("checks: 5\n"), "a.yaml:1: checks", "valid list"),
    Case("audit-checks-empty", audit("checks: []\n"), "a.yaml:1: checks", "at least 1 item"),
    Case("audit-no-checks", audit("sae: {k: 4}\n"), "a.yaml: checks", "required field is missing"),
    Case(
        "audit-kind",
        audit(sub(AUDIT, "defection_probe", "magic")),
        "a.yaml:2: checks[0].kind",
        "must be 'defection_probe' or 'feature'",
    ),
    Case(
        "audit-layer-text",
        audit(sub(AUDIT, "layer: 1", "layer: one")),
        "a.yaml:2: checks[0].layer",
        "valid integer",
    ),
    Case(
        "audit-layer-fraction",
        audit(sub(AUDIT, "layer: 1", "layer: 1.5")),
        "a.yaml:2: checks[0].layer",
        "valid integer",
    ),
    Case("audit-k-inf", audit(sub(AUDIT, "k: 4", "k: .inf")), "a.yaml:4: sae.k", "finite number"),
    Case("audit-k-nan", audit(sub(AUDIT, "k: 4", "k: .nan")), "a.yaml:4: sae.k", "finite number"),
    Case("audit-k-zero", audit(sub(AUDIT, "k: 4", "k: 0")), "a.yaml:4: sae.k", "greater than"),
    Case(
        "audit-sae-typo",
        audit(sub(AUDIT, "k: 4", "kk: 4")),
        "a.yaml:4: sae.kk",
        "did you mean 'k'?",
    ),
    Case(
        "audit-check-typo",
        audit(sub(AUDIT, "layer:", "layers:")),
        "checks[0].layers",
        "did you mean 'layer'?",
    ),
    Case(
        "audit-sae-list",
        audit(sub(AUDIT, "sae:\n  k: 4", "sae: [4]")),
        "a.yaml:3: sae",
        "expected a mapping of fields here, got a list",
    ),
    Case(
        "audit-sae-seeds-many",
        audit(sub(AUDIT, "sae:\n  k: 4", "sae:\n  k: 4\n  seeds: 1000000")),
        "a.yaml:5: sae.seeds",
        "less than or equal to 32",
    ),
    Case(
        "audit-sae-seed-negative",
        audit(sub(AUDIT, "sae:\n  k: 4", "sae:\n  k: 4\n  seed: -1")),
        "a.yaml:5: sae.seed",
        "greater than or equal to 0",
    ),
    Case(
        "audit-feature-concept",
        audit("checks:\n  - {id: f, kind: feature}\n"),
        "a.yaml: checks[0].concept",
        "feature checks need a concept",
    ),
]

STACK_CASES = _shared("stack", stack, STACK) + [
    Case(  # a layer's own setting at the layer's level: it said only "unknown field"
        "stack-threshold-outside-options",
        stack(sub(STACK, "classifier: keywords}", "classifier: keywords, threshold: 0.5}")),
        "s.yaml:5: layers[0].threshold",
        "put it under options:",
    ),
    Case(
        "stack-schema",
        stack("schema: safescale/stack/v9\n" + STACK),
        "s.yaml:1: schema",
        "must be 'safescale/stack/v1'",
    ),
    Case(
        "stack-no-model",
        stack(sub(STACK, "model: m\n", "")),
        "s.yaml: model",
        "required field is missing",
    ),
    Case(
        "stack-empty-name",
        stack(sub(STACK, "name: s", "name: ''")),
        "s.yaml:1: name",
        "at least 1 character",
    ),
    Case(
        "stack-tokens-text",
        stack(sub(STACK, "max_new_tokens: 8", "max_new_tokens: many")),
        "s.yaml:3: max_new_tokens",
        "valid integer",
    ),
    Case(
        "stack-tokens-inf",
        stack(sub(STACK, "max_new_tokens: 8", "max_new_tokens: .inf")),
        "s.yaml:3: max_new_tokens",
        "finite number",
    ),
    Case(
        "stack-tokens-zero",
        stack(sub(STACK, "max_new_tokens: 8", "max_new_tokens: 0")),
        "s.yaml:3: max_new_tokens",
        "greater than",
    ),
    Case(
        "stack-layers-map",
        stack(sub(STACK, "layers:\n  -", "layers:\n  x:")),
        "s.yaml:4: layers",
        "valid list",
    ),
    Case(
        "stack-stage",
        stack(sub(STACK, "stage: input", "stage: middle")),
        "s.yaml:5: layers[0].stage",
        "must be 'input' or 'output'",
    ),
    Case(
        "stack-every-zero",
        stack(sub(STACK, "keywords}", "keywords, every: 0}")),
        "s.yaml:5: layers[0].every",
        "greater than",
    ),
    Case(
        "stack-layer-typo",
        stack(sub(STACK, "classifier:", "clasifier:")),
        "s.yaml:5: layers[0].clasifier",
        "did you mean 'classifier'?",
    ),
    Case(
        "stack-options-list",
        stack(sub(STACK, "keywords}", "keywords, options: [1]}")),
        "s.yaml:5: layers[0].options",
        "expected a mapping of fields",
    ),
    Case(
        "stack-layer-named-model",
        stack(sub(STACK, "name: screen", "name: model")),
        "s.yaml: layers",
        "unique",
    ),
    Case(
        "stack-prompt-escape",
        stack(STACK + 'system_prompt: "be \\e]0;owned\\a nice"\n'),
        "s.yaml:6: system_prompt",
        "control character \\x1b",
    ),
]


@pytest.mark.parametrize("case", AUDIT_CASES + STACK_CASES, ids=lambda c: c.id)
def test_refused(case: Case, refuse: Refuse) -> None:
    refuse(case)


@pytest.mark.parametrize(("wrap", "good"), [(audit, AUDIT), (stack, STACK)], ids=["audit", "stack"])
def test_the_good_files_pass_the_loader(
    wrap: Callable[[Content], Build], good: str, tmp_path: Path
) -> None:
    # The tables above break these files; unbroken, they load (multi-line text included).
    from safescale.interp import load_audit_config
    from safescale.redteam import load_stack

    path = put(
        tmp_path / "g.yaml",
        good + ("system_prompt: |\n  line one\n  line\ttwo\n" if wrap is stack else ""),
    )
    if wrap is audit:
        assert load_audit_config(path).sae.k == 4
    else:
        spec, root = load_stack(path)
        assert spec.system_prompt == "line one\nline\ttwo\n" and root == tmp_path
