"""Constitution files: identity, checks across principles, diff."""

from __future__ import annotations

from pathlib import Path

import pytest

from safescale._errors import UserError
from safescale.constitution import (
    check_constitution_text,
    constitution_sha256,
    diff_constitutions,
    lab_constitution,
    load_constitution,
)


def test_identity_ignores_layout_not_content(tmp_path: Path) -> None:
    text = lab_constitution().read_text()
    lab = load_constitution(lab_constitution())
    # Comments and key order are layout; a word of a description is content.
    moved = text.replace(
        'name: lab-chemistry\nversion: "1.0"\n', 'version: "1.0"\nname: lab-chemistry\n'
    )
    (tmp_path / "a.yaml").write_text("# a comment\n" + moved)
    assert constitution_sha256(load_constitution(tmp_path / "a.yaml")) == constitution_sha256(lab)
    (tmp_path / "b.yaml").write_text(text.replace("however it is phrased", "however phrased"))
    assert constitution_sha256(load_constitution(tmp_path / "b.yaml")) != constitution_sha256(lab)


def test_lab_constitution_covers_both_stages_and_categories() -> None:
    lab = load_constitution(lab_constitution())
    kinds = {(p.category, p.stage) for p in lab.principles}
    assert kinds == {
        ("restricted", "input"),
        ("restricted", "output"),
        ("allowed", "input"),
        ("allowed", "output"),
    }
    assert lab.principle("synthesis-request").category == "restricted"
    with pytest.raises(KeyError):
        lab.principle("nope")


def test_every_problem_is_listed_with_its_line() -> None:
    text = """schema: safescale/constitution/v1
name: x
version: "1"
principles:
  - {id: a, category: restricted, description: d}
  - {id: a, category: restricted, description: d}
"""
    c, problems = check_constitution_text(text, "c.yaml")
    assert c is None
    shown = [str(p) for p in problems]
    assert shown == [
        "c.yaml:6: principles[1].id: principle id 'a' is used twice (also principles[0]); "
        "give each principle its own id",
        "c.yaml:4: principles: no allowed principle; add one (nothing would show what must stay "
        "answered, and a classifier learns the boundary between the two)",
    ]


def test_load_refuses_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("schema: safescale/constitution/v1\nname: [x\n")
    with pytest.raises(UserError) as err:
        load_constitution(tmp_path / "c.yaml")
    assert len(err.value.problems) == 1 and "c.yaml:" in str(err.value)


def test_diff_api() -> None:
    lab = load_constitution(lab_constitution())
    same = diff_constitutions(lab, lab)
    assert same.empty
    fewer = lab.model_copy(update={"principles": lab.principles[1:]})
    d = diff_constitutions(lab, fewer)
    assert [p.id for p in d.removed] == ["synthesis-request"] and not d.added and not d.changed
    assert [p.id for p in diff_constitutions(fewer, lab).added] == ["synthesis-request"]


def test_reading_constitutions_loads_no_machine_learning_stack() -> None:
    """``validate``, ``show`` and ``diff`` stay quick: torch and Inspect load only for data."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from safescale.constitution import lab_constitution, load_constitution\n"
        "load_constitution(lab_constitution())\n"
        "heavy = [m for m in ('torch', 'transformers', 'inspect_ai') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_template_families_are_the_red_teaming_rooms() -> None:
    from safescale.constitution import FAMILIES
    from safescale.constitution._augment import TEMPLATE_FAMILIES
    from safescale.redteam import TEMPLATES

    assert tuple(TEMPLATES) == TEMPLATE_FAMILIES
    assert set(FAMILIES) == {*TEMPLATES, "composition", "best-of-n", "lab-jailbreak"}
