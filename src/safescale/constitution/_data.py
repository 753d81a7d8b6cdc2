"""Labelled data sets from a constitution: examples, splits, the manifest, files on disk.

A data set is a folder of two files:

* ``examples.jsonl``: one :class:`Example` a line (keys in a fixed order);
* ``manifest.json``: a :class:`DatasetManifest`: the constitution's sha256, the generator and
  its seeds, counts by split, label, stage and augmentation, the held-out augmentation families,
  and the sha256 of ``examples.jsonl``, checked on every load (a changed file is refused).

Splits are decided by the plain request an example was made from (a seeded hash of its text),
so no request reaches two splits, whatever augmentation or response it was paired with.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from safescale._errors import Problem, UserError
from safescale._input import (
    check_count,
    check_id,
    check_text,
    decode_utf8,
    loads_json,
    read_limited,
    split_lines,
)
from safescale._io import new_file_mode

DATASET_SCHEMA = "safescale/constitution-data/v1"
SPLITS: tuple[str, ...] = ("train", "calibration", "test")
FRACTIONS = {"train": 0.6, "calibration": 0.2, "test": 0.2}
"""Share of plain requests in each split (by a seeded hash of the request's text)."""
MAX_DATASET_BYTES = 1 << 30
"""``examples.jsonl`` files above this are refused (a lab data set is a few MB)."""
MAX_LINE = 1 << 20
MAX_MANIFEST_BYTES = 1 << 20

Split = Literal["train", "calibration", "test"]
StageName = Literal["input", "output"]


@dataclass(frozen=True)
class Example:
    """One labelled example for an input classifier (a request) or an output one (an exchange)."""

    id: str
    """``ex-`` and 16 hex digits of the sha256 of (stage, prompt, response): the dedup key."""
    stage: StageName
    prompt: str
    """The request as the model sees it (after any augmentation)."""
    response: str
    """The model's response; ``""`` for input examples."""
    label: int
    """1: harmful (the request or response falls under a restricted principle); 0: harmless."""
    principle: str
    """The id of the principle that decides the label (for outputs, the response's principle)."""
    augmentation: str
    """The attack family that transformed the prompt (``role-play``, ``best-of-n``...) or
    ``none`` for the plain request."""
    split: Split
    recipe: str = ""
    """The exact transformation (``role-play#1``, ``best-of-n:caps,noise@123``), for replay."""
    request: str = ""
    """The plain request the prompt was made from (what splits are disjoint by)."""
    harm_start: int = -1
    """Harmful output examples: the character offset in ``response`` where the first restricted
    detail begins (a streaming classifier should flag from there on); else -1."""

    def to_json(self) -> dict[str, Any]:
        """The example as a JSON object (the line format of ``examples.jsonl``)."""
        return asdict(self)


def example_id(stage: str, prompt: str, response: str) -> str:
    """The content id of an example (equal content, equal id)."""
    h = hashlib.sha256(json.dumps([stage, prompt, response]).encode()).hexdigest()
    return f"ex-{h[:16]}"


@dataclass(frozen=True)
class DatasetManifest:
    """What a data set is, where it came from, and the hash of its examples."""

    constitution_sha256: str
    constitution: str
    """The constitution's name and version (``lab-chemistry@1.0``)."""
    generator: str
    """``lab`` (the world generator) or ``model:<inspect model>``."""
    seed: int
    world_seed: int | None
    augment: tuple[str, ...]
    """Augmentation (attack) families applied."""
    held_out: tuple[str, ...]
    """Families that appear only in ``test`` (never in train or calibration)."""
    counts: dict[str, dict[str, int]]
    """Example counts by ``split``, ``label``, ``stage``, ``augmentation``, ``principle`` and
    ``split/stage/label``."""
    examples_sha256: str
    n_examples: int
    dropped: dict[str, int] = field(default_factory=dict)
    """Examples removed before writing: ``duplicates`` and ``conflicts`` (one text generated
    under both a restricted and an allowed principle)."""
    options: dict[str, int] = field(default_factory=dict)
    """The generator's other arguments (``n``, ``copies``, ``per_principle``...): with the
    seeds, the constitution and the generator, what regenerates the same data set."""
    schema: str = DATASET_SCHEMA

    @property
    def sha256(self) -> str:
        """The data set's identity: the sha256 of ``examples.jsonl`` (``examples_sha256``)."""
        return self.examples_sha256

    def to_json(self) -> dict[str, Any]:
        """The manifest as JSON (``manifest.json``)."""
        out = asdict(self)
        out["augment"], out["held_out"] = list(self.augment), list(self.held_out)
        return out


@dataclass(frozen=True)
class Dataset:
    """Examples and their manifest."""

    examples: tuple[Example, ...]
    manifest: DatasetManifest

    def select(
        self,
        *,
        split: str | None = None,
        stage: str | None = None,
        label: int | None = None,
        augmentation: str | None = None,
    ) -> tuple[Example, ...]:
        """The examples matching every filter given."""
        return tuple(
            e
            for e in self.examples
            if (split is None or e.split == split)
            and (stage is None or e.stage == stage)
            and (label is None or e.label == label)
            and (augmentation is None or e.augmentation == augmentation)
        )


# -- building ---------------------------------------------------------------------------------


def assign_split(request: str, seed: int) -> Split:
    """The split of a plain request: a seeded hash of its text (so equal text, equal split)."""
    h = hashlib.sha256(f"safescale-constitution-split-{seed}\n{request}".encode()).digest()
    u = int.from_bytes(h[:8], "big") / 2**64
    if u < FRACTIONS["train"]:
        return "train"
    return "calibration" if u < FRACTIONS["train"] + FRACTIONS["calibration"] else "test"


def deduplicate(examples: Iterable[Example]) -> tuple[list[Example], dict[str, int]]:
    """Drop repeated examples (same stage, prompt and response) and conflicting ones.

    A conflict is one text carrying both labels (a generator wrote the same request under a
    restricted and an allowed principle): neither label can be trusted, so both go.
    """
    seen: dict[str, Example] = {}
    dupes = 0
    for e in examples:
        if e.id in seen:
            dupes += 1
            continue
        seen[e.id] = e
    labels: dict[tuple[str, str, str], set[int]] = {}
    for e in seen.values():
        labels.setdefault((e.stage, e.prompt, e.response), set()).add(e.label)
    kept = [e for e in seen.values() if len(labels[(e.stage, e.prompt, e.response)]) == 1]
    return kept, {"duplicates": dupes, "conflicts": len(seen) - len(kept)}


def count(examples: Sequence[Example]) -> dict[str, dict[str, int]]:
    """The manifest's counts."""

    def by(key: Any) -> dict[str, int]:
        return dict(sorted(Counter(str(key(e)) for e in examples).items()))

    return {
        "split": by(lambda e: e.split),
        "label": by(lambda e: e.label),
        "stage": by(lambda e: e.stage),
        "augmentation": by(lambda e: e.augmentation),
        "principle": by(lambda e: e.principle),
        "split/stage/label": by(lambda e: f"{e.split}/{e.stage}/{e.label}"),
    }


def jsonl_bytes(examples: Sequence[Example]) -> bytes:
    """``examples.jsonl`` exactly as written (its sha256 is the manifest's)."""
    return "".join(
        json.dumps(e.to_json(), ensure_ascii=False, sort_keys=False) + "\n" for e in examples
    ).encode()


def make_dataset(
    examples: Iterable[Example],
    *,
    constitution_sha256: str,
    constitution: str,
    generator: str,
    seed: int,
    world_seed: int | None,
    augment: Sequence[str],
    held_out: Sequence[str],
    dropped: dict[str, int] | None = None,
    options: dict[str, int] | None = None,
) -> Dataset:
    """Deduplicate, order (split, stage, id) and hash ``examples`` into a :class:`Dataset`."""
    kept, drops = deduplicate(examples)
    if dropped:
        drops = {k: drops.get(k, 0) + dropped.get(k, 0) for k in {*drops, *dropped}}
    order = {s: i for i, s in enumerate(SPLITS)}
    kept.sort(key=lambda e: (order[e.split], e.stage, e.id))
    data = jsonl_bytes(kept)
    manifest = DatasetManifest(
        constitution_sha256=constitution_sha256,
        constitution=constitution,
        generator=generator,
        seed=seed,
        world_seed=world_seed,
        augment=tuple(augment),
        held_out=tuple(held_out),
        counts=count(kept),
        examples_sha256=hashlib.sha256(data).hexdigest(),
        n_examples=len(kept),
        dropped=dict(sorted(drops.items())),
        options=dict(options or {}),
    )
    return Dataset(tuple(kept), manifest)


# -- files ------------------------------------------------------------------------------------


def write_dataset(ds: Dataset, out_dir: str | Path) -> Path:
    """Write ``examples.jsonl`` and ``manifest.json`` into ``out_dir``, all or nothing.

    The files are written into a temporary folder beside ``out_dir`` and renamed into place, so a
    crash leaves no half-written data set. ``out_dir`` must not exist or be empty.
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(
            Problem(
                "already exists and is not an empty folder; give a new folder for the data set",
                source=str(out),
            )
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        os.chmod(tmp, new_file_mode(folder=True))  # mkdtemp's folder is private
        (tmp / "examples.jsonl").write_bytes(jsonl_bytes(ds.examples))
        (tmp / "manifest.json").write_text(json.dumps(ds.manifest.to_json(), indent=2) + "\n")
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


_EXAMPLE_FIELDS = {f.name: f for f in fields(Example)}
_REQUIRED = ("id", "stage", "prompt", "response", "label", "principle", "augmentation", "split")


def _example(row: Any, source: str, line: int) -> Example:
    def bad(message: str, name: str | None = None) -> UserError:
        return UserError(Problem(message, source=source, line=line, field=name))

    if not isinstance(row, dict):
        raise bad("each line must be a JSON object (one example)")
    for name in _REQUIRED:
        if name not in row:
            raise bad("required field is missing; regenerate the data set", name)
    unknown = sorted(set(row) - set(_EXAMPLE_FIELDS))
    if unknown:
        raise bad("unknown field; this is not a safescale data set", unknown[0])
    for name, value in row.items():
        want = int if name in ("label", "harm_start") else str
        if isinstance(value, bool) or not isinstance(value, want):
            raise bad(f"must be {'a whole number' if want is int else 'text'}", name)
    checks = (
        ("stage", row["stage"] in ("input", "output"), "must be input or output"),
        ("label", row["label"] in (0, 1), "must be 0 or 1"),
        ("split", row["split"] in SPLITS, f"must be one of {', '.join(SPLITS)}"),
    )
    for name, ok, message in checks:
        if not ok:
            raise bad(message, name)
    return Example(**row)


def load_dataset(path: str | Path) -> Dataset:
    """Read a data set folder; a changed ``examples.jsonl`` (hash mismatch) is a one-line error."""
    folder = Path(path)
    if not folder.is_dir():
        raise UserError(
            Problem(
                "not a data set folder; give the folder `constitution data` wrote", source=str(path)
            )
        )
    mpath, epath = folder / "manifest.json", folder / "examples.jsonl"
    raw = loads_json(
        decode_utf8(read_limited(mpath, MAX_MANIFEST_BYTES, what="manifest"), str(mpath)),
        str(mpath),
    )
    manifest = _manifest(raw, str(mpath))
    data = read_limited(epath, MAX_DATASET_BYTES, what="examples file")
    digest = hashlib.sha256(data).hexdigest()
    if digest != manifest.examples_sha256:
        raise UserError(
            Problem(
                f"sha256 {digest[:16]}... does not match the manifest's "
                f"{manifest.examples_sha256[:16]}...; the file changed after it was written "
                "(regenerate the data set)",
                source=str(epath),
            )
        )
    examples = []
    for number, text in split_lines(data, str(epath), max_line=MAX_LINE, what="example line"):
        if text.strip():
            examples.append(_example(loads_json(text, str(epath), line=number), str(epath), number))
    return Dataset(tuple(examples), manifest)


def _manifest(raw: Any, source: str) -> DatasetManifest:
    if not isinstance(raw, dict) or raw.get("schema") != DATASET_SCHEMA:
        raise UserError(
            Problem(f"not a data set manifest (schema must be {DATASET_SCHEMA})", source=source)
        )
    _check_manifest_fields(raw, source)
    try:
        return DatasetManifest(
            **{
                **raw,
                "augment": tuple(raw.get("augment", ())),
                "held_out": tuple(raw.get("held_out", ())),
            }
        )
    except TypeError as exc:
        raise UserError(
            Problem(f"the manifest's fields are wrong ({exc}); regenerate it", source=source)
        ) from None


def _check_manifest_fields(raw: dict[str, Any], source: str) -> None:
    """The manifest's values as ``constitution data`` writes them: text without control
    characters, whole-number seeds and counts, lists of family names."""
    for name in ("constitution_sha256", "constitution", "generator", "examples_sha256"):
        if name in raw:
            check_text(raw[name], name, max_len=4096, source=source)
    for name in ("seed", "world_seed", "n_examples"):
        if raw.get(name) is not None:
            check_count(raw[name], name, hi=2**63 - 1, source=source)
    for name in ("augment", "held_out"):
        value = raw.get(name, [])
        if not isinstance(value, list):
            raise UserError(Problem("must be a list of family names", source=source, field=name))
        for i, family in enumerate(value):
            check_id(family, f"{name}[{i}]", what="family name", source=source)
