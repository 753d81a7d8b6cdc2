"""The lab data generator: labels true to the world, splits disjoint, held-out families in test."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from safescale._errors import UserError
from safescale.constitution import (
    DEFAULT_HELD_OUT,
    FAMILIES,
    Dataset,
    generate_lab_dataset,
    lab_constitution,
    load_constitution,
    load_dataset,
    write_dataset,
)


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return generate_lab_dataset(load_constitution(lab_constitution()), n=400)


def test_labels_are_true_to_the_world(ds: Dataset) -> None:
    from safescale.lab import build_world

    world = build_world(0)
    truth = {c.name: {c.precursor, c.catalyst} for c in world.compounds}
    ingredients = set(world.precursors) | set(world.catalysts)
    restricted = {"synthesis-request", "ingredient-request", "procedure-disclosure"}
    for e in ds.examples:
        assert e.label == int(e.principle in restricted), e
        words = set(re.findall(r"[a-z]+", e.response.lower()))
        if e.stage == "output" and e.label == 1:
            (compound,) = [c for c in truth if c in e.response]
            assert words & ingredients and words & ingredients <= truth[compound], e
            assert e.response[e.harm_start :].split()[0].strip(",.;") in truth[compound]
        else:
            assert not words & ingredients, e  # harmless: no ingredient named anywhere
            assert e.harm_start == -1
        if e.stage == "input":
            assert e.response == ""
            if e.label == 1:
                assert any(c in e.request for c in truth)


def test_splits_are_disjoint_by_request_and_prompt(ds: Dataset) -> None:
    by_split: dict[str, set[str]] = {}
    prompts: dict[str, set[str]] = {}
    for e in ds.examples:
        by_split.setdefault(e.split, set()).add(e.request)
        prompts.setdefault(e.split, set()).add(e.prompt)
    assert set(by_split) == {"train", "calibration", "test"}
    for a in by_split:
        for b in by_split:
            if a < b:
                assert not by_split[a] & by_split[b]
                assert not prompts[a] & prompts[b]
    ids = [e.id for e in ds.examples]
    assert len(ids) == len(set(ids))
    keys = [(e.stage, e.prompt, e.response) for e in ds.examples]
    assert len(keys) == len(set(keys))


def test_held_out_families_only_in_test(ds: Dataset) -> None:
    for e in ds.examples:
        parts = {p.partition("#")[0] for p in e.recipe.split("+")} if e.recipe else set()
        if e.split != "test":
            assert e.augmentation not in DEFAULT_HELD_OUT
            assert not parts & set(DEFAULT_HELD_OUT), e.recipe
    test_families = {e.augmentation for e in ds.select(split="test", stage="input")}
    assert test_families == {*FAMILIES, "none"}
    for family in DEFAULT_HELD_OUT:
        assert ds.select(split="test", augmentation=family, label=0)
        assert ds.select(split="test", augmentation=family, label=1)


def test_no_evaluation_prompt_reaches_the_data(ds: Dataset) -> None:
    from safescale.lab import build_world
    from safescale.lab._text import REQUESTS
    from safescale.redteam import lab_behaviours, lab_benign

    world = build_world(0)
    evaluation = {r.format(c=c.name) for c in world.compounds for r in REQUESTS}
    evaluation |= {b.request for b in lab_behaviours(0) + lab_benign(0)}
    assert not {e.request for e in ds.examples} & evaluation


def test_deterministic_and_seeded() -> None:
    c = load_constitution(lab_constitution())
    a = generate_lab_dataset(c, n=60, seed=3)
    b = generate_lab_dataset(c, n=60, seed=3)
    other = generate_lab_dataset(c, n=60, seed=4)
    assert a.manifest.examples_sha256 == b.manifest.examples_sha256
    assert a.manifest.options == {"n": 60, "copies": 2}
    assert a.manifest.examples_sha256 != other.manifest.examples_sha256


def test_enough_harmless_data_for_an_over_refusal_budget() -> None:
    ds = generate_lab_dataset(load_constitution(lab_constitution()))
    for split in ("calibration", "test"):
        assert len(ds.select(split=split, label=0)) >= 300
        assert len(ds.select(split=split, label=0, stage="input")) >= 300
    counts = ds.manifest.counts
    assert sum(counts["split"].values()) == ds.manifest.n_examples == len(ds.examples)


def test_write_load_round_trip_and_tamper(ds: Dataset, tmp_path: Path) -> None:
    out = write_dataset(ds, tmp_path / "data")
    back = load_dataset(out)
    assert back.examples == ds.examples and back.manifest == ds.manifest
    assert sorted(p.name for p in out.iterdir()) == ["examples.jsonl", "manifest.json"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["examples_sha256"] == ds.manifest.examples_sha256 == ds.manifest.sha256
    assert "sha256" not in manifest  # an alias, not a second field
    with pytest.raises(UserError, match="exists"):
        write_dataset(ds, out)
    lines = (out / "examples.jsonl").read_text().splitlines()
    row = json.loads(lines[0])
    row["label"] = 1 - row["label"]
    (out / "examples.jsonl").write_text("\n".join([json.dumps(row), *lines[1:]]) + "\n")
    with pytest.raises(UserError, match="does not match the manifest") as err:
        load_dataset(out)
    assert "\n" not in str(err.value)


def test_bad_generator_arguments() -> None:
    c = load_constitution(lab_constitution())
    with pytest.raises(UserError, match="unknown augmentation family"):
        generate_lab_dataset(c, augment=("role-play", "telepathy"), held_out=())
    with pytest.raises(UserError, match="not among the augmentations"):
        generate_lab_dataset(c, augment=("prefix-injection",), held_out=("role-play",))


def test_load_refuses_bad_folders_in_one_line(ds: Dataset, tmp_path: Path) -> None:
    import hashlib

    with pytest.raises(UserError, match="not a data set folder"):
        load_dataset(tmp_path / "nope")
    out = write_dataset(ds, tmp_path / "data")
    manifest = json.loads((out / "manifest.json").read_text())

    def rewrite(lines: list[str], **changes: object) -> None:
        data = ("\n".join(lines) + "\n").encode()
        (out / "examples.jsonl").write_bytes(data)
        doc = {**manifest, "examples_sha256": hashlib.sha256(data).hexdigest(), **changes}
        (out / "manifest.json").write_text(json.dumps(doc))

    good = (out / "examples.jsonl").read_text().splitlines()
    row = json.loads(good[1])
    cases = [
        ({**row, "label": 2}, "examples.jsonl:2: label: must be 0 or 1"),
        ({**row, "split": "dev"}, "examples.jsonl:2: split: must be one of"),
        ({k: v for k, v in row.items() if k != "prompt"}, "examples.jsonl:2: prompt: required"),
        ({**row, "extra": 1}, "examples.jsonl:2: extra: unknown field"),
        ({**row, "label": True}, "examples.jsonl:2: label: must be a whole number"),
    ]
    for bad, message in cases:
        rewrite([good[0], json.dumps(bad), *good[2:]])
        with pytest.raises(UserError) as err:
            load_dataset(out)
        assert message in str(err.value) and "\n" not in str(err.value)
    rewrite([good[0], "{not json"])
    with pytest.raises(UserError, match=r"examples.jsonl:2: not valid JSON"):
        load_dataset(out)
    rewrite(good, schema="something/else")
    with pytest.raises(UserError, match="not a data set manifest"):
        load_dataset(out)


def test_no_lab_template_is_an_evaluation_template() -> None:
    """Whatever it is filled with, no template of the lab constitution is one of the corpus's
    restricted-request templates, or of the red-teaming room's behaviour or benign templates."""
    from safescale.lab._text import JAILBREAKS, REQUESTS
    from safescale.redteam._behaviours import LAB_BENIGN, LAB_REQUESTS

    def shape(t: str) -> str:
        return re.sub(r"\{[a-z_]+\}", "{x}", t).casefold()

    theirs = {shape(t) for t in (*REQUESTS, *LAB_REQUESTS, *LAB_BENIGN, *JAILBREAKS)}
    ours = [e for p in load_constitution(lab_constitution()).principles for e in p.examples]
    assert len(ours) > 90
    assert not {shape(t) for t in ours} & theirs
