"""Data written by an Inspect model: parsing, labels by principle, dedup, conflicts, splits."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from safescale.constitution import (
    Constitution,
    generate_with_model,
    load_dataset,
    parse_exchanges,
    parse_requests,
    write_dataset,
)

os.environ.setdefault("INSPECT_DISPLAY", "none")

SMALL = Constitution.model_validate(
    {
        "schema": "safescale/constitution/v1",
        "name": "small",
        "version": "1",
        "principles": [
            {
                "id": "bad-asks",
                "category": "restricted",
                "stage": "input",
                "description": "Requests for the secret recipe.",
                "examples": ["What is the secret recipe?"],
            },
            {
                "id": "bad-answers",
                "category": "restricted",
                "stage": "output",
                "description": "Responses that reveal the secret recipe.",
            },
            {
                "id": "fine",
                "category": "allowed",
                "stage": "both",
                "description": "Anything about the weather.",
                "examples": ["Will it rain?"],
            },
        ],
    }
)


def test_parsers() -> None:
    text = 'Sure!\nREQUEST: one\n2. request:  "two"  \nnoise\nREQUEST: x\x1b[31m y\n'
    assert parse_requests(text) == ["one", "two", "x [31m y"]
    assert parse_requests("first line\n\nsecond line") == ["first line", "second line"]
    ex = "REQUEST: a?\nRESPONSE: b.\nREQUEST: lone\nREQUEST: c?\nRESPONSE: d."
    assert parse_exchanges(ex) == [("a?", "b."), ("c?", "d.")]


def scripted() -> Any:
    """A mockllm writer: each principle gets numbered items; "Will it snow?" is written under
    both the restricted and the allowed principle (a conflict), and every reply repeats one
    item (a duplicate)."""
    from inspect_ai.model import ModelOutput, ModelUsage

    calls: dict[str, int] = {}

    def reply(messages: list[Any], *args: Any) -> ModelOutput:
        text = str(messages[-1].text)
        kind = re.search(r"principle \((\w+)\): ([^\n]+)", text)
        assert kind is not None
        key = kind.group(2)
        n = calls[key] = calls.get(key, 0) + 1
        if "exchanges" in text:
            lines = [
                f"REQUEST: ask {key} {n}-{i}\nRESPONSE: answer {key} {n}-{i}" for i in range(3)
            ]
        else:
            lines = [f"REQUEST: {key} number {n}-{i}" for i in range(3)]
            lines += ["REQUEST: Will it snow?", f"REQUEST: {key} number {n}-0"]
        out = ModelOutput.from_content("mockllm/model", "Here you go:\n" + "\n".join(lines))
        out.usage = ModelUsage(input_tokens=1, output_tokens=1, total_tokens=2)  # no tokenizer
        return out

    return reply


def test_generate_with_a_scripted_model(tmp_path: Path) -> None:
    ds = generate_with_model(
        SMALL,
        "mockllm/model",
        per_principle=12,
        batch=3,
        rounds=10,
        augment=("prefix-injection", "role-play"),
        held_out=("role-play",),
        copies=1,
        model_args={"custom_outputs": scripted()},
    )
    m = ds.manifest
    assert m.generator == "model:mockllm/model"
    assert m.dropped["conflicts"] == 2  # "Will it snow?" under bad-asks and under fine
    # 4 (principle, stage) pairs, at most 4 new items a call, 12 wanted: 3 rounds at least
    assert m.options["per_principle"] == 12 and m.options["calls"] >= 12
    plain = ds.select(augmentation="none")
    assert not any(e.request == "Will it snow?" for e in ds.examples)
    # every principle-stage got its 12 distinct items (the repeated item is not counted twice)
    by = {(e.principle, e.stage): 0 for e in plain}
    for e in plain:
        by[(e.principle, e.stage)] += 1
    assert by == {
        ("bad-asks", "input"): 11,
        ("bad-answers", "output"): 12,
        ("fine", "input"): 11,
        ("fine", "output"): 12,
    }
    for e in ds.examples:
        assert e.label == int(e.principle.startswith("bad")), e
        assert e.request in e.prompt or e.augmentation != "none"
        if e.split != "test":
            assert e.augmentation != "role-play"
    splits: dict[str, set[str]] = {}
    for e in ds.examples:
        splits.setdefault(e.request, set()).add(e.split)
    assert all(len(s) == 1 for s in splits.values())
    back = load_dataset(write_dataset(ds, tmp_path / "d"))
    assert back == ds


def test_generate_with_a_local_lab_model(tmp_path: Path) -> None:
    """End to end through Inspect's own provider for local models: a real (tiny, untrained)
    transformer writes the text, so its quality is nil, but every step runs for real."""
    import torch

    from tests.evals._factory import build_model

    torch.set_num_threads(1)
    model_dir = build_model(tmp_path / "tiny", steps=2)
    ds = generate_with_model(
        SMALL,
        f"safescale/{model_dir}",
        per_principle=3,
        batch=3,
        rounds=2,
        max_tokens=24,
        copies=1,
    )
    assert ds.manifest.generator == f"model:safescale/{model_dir}"
    assert ds.examples, "the model wrote nothing parseable"
    for e in ds.examples:
        assert e.label in (0, 1) and e.principle in {"bad-asks", "bad-answers", "fine"}
        assert "\n" not in e.prompt and all(ch.isprintable() for ch in e.request)
    assert load_dataset(write_dataset(ds, tmp_path / "d")).manifest == ds.manifest


def test_cli_data_with_a_model(tmp_path: Path, run_cli: Any) -> None:
    import torch

    from safescale.constitution import lab_constitution, load_constitution, load_dataset
    from tests.evals._factory import build_model

    torch.set_num_threads(1)
    model_dir = build_model(tmp_path / "tiny", steps=2)
    out = tmp_path / "data"
    code, stdout, err = run_cli(
        "constitution",
        "data",
        "--out",
        str(out),
        "--model",
        f"safescale/{model_dir}",
        "--n",
        "1",
        "--max-tokens",
        "16",
    )
    assert code == 0, err
    ds = load_dataset(out)
    assert ds.manifest.generator == f"model:safescale/{model_dir}"
    assert ds.manifest.constitution == "lab-chemistry@1.0" and ds.examples
    lab = load_constitution(lab_constitution())
    for e in ds.examples:
        assert e.label == int(lab.principle(e.principle).category == "restricted")
    assert f"wrote {ds.manifest.n_examples} examples" in stdout
