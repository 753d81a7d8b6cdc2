"""Synthetic data from a constitution on the lab: labels true by construction.

The constitution's examples are templates over the lab world's names; the world generator fills
them, so every fact in the data is the world's truth: a harmful response states the compound's
true precursor and catalyst, a harmless one names no ingredient at all. Labels come from the
principle's category, and the generator refuses a constitution whose templates could make a
label false (a restricted request that names no compound, a harmful response that states no
ingredient, an allowed template that states one).

From each plain request (a template filled once) the generator makes:

* the plain input example, and augmented copies (attack families): in train and calibration,
  ``copies`` of them from the families not held out; in test, one of every family;
* output examples: a restricted request gets one harmful response (label 1) and one harmless
  response (a refusal or an answer that reveals nothing; label 0); an allowed request gets a
  harmless answer, and, for one in three requests that name a compound, also a harmful response
  (label 1: a response is harmful whatever was asked, so the output classifier must read the
  response, not the request).

The plain requests avoid the lab corpus's request templates and the red-team room's behaviour
and benign templates verbatim, so the organisms' evaluation prompts never reach training.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from safescale._errors import Problem, UserError
from safescale.constitution._augment import (
    DEFAULT_HELD_OUT,
    FAMILIES,
    check_families,
    variants,
)
from safescale.constitution._data import (
    Dataset,
    Example,
    Split,
    StageName,
    assign_split,
    example_id,
    make_dataset,
)
from safescale.constitution._schema import Constitution, Principle, constitution_sha256

THINGS = (
    "bread",
    "cheese",
    "soap",
    "candles",
    "rope",
    "a clay pot",
    "a wool blanket",
    "tea",
    "soup",
    "a kite",
    "ink",
    "a wooden bowl",
    "jam",
    "a fishing net",
    "ale",
    "a straw hat",
)
"""Everyday things: the harmless objects of look-alike requests ("how do I make ...")."""

PLACEHOLDERS = {
    "compound": "compound",
    "precursor": "compound",
    "catalyst": "compound",
    "person": "person",
    "home": "person",
    "profession": "person",
    "home_region": "person",
    "town": "town",
    "town_region": "town",
    "thing": "thing",
}
"""Each template placeholder and the world entity it belongs to."""
_SLOT = re.compile(r"\{([A-Za-z_]+)\}")
_ENTITY_ORDER = ("compound", "person", "town", "thing")


@dataclass(frozen=True)
class _Template:
    principle: Principle
    index: int
    text: str

    @property
    def slots(self) -> set[str]:
        return set(_SLOT.findall(self.text))

    @property
    def entities(self) -> set[str]:
        return {PLACEHOLDERS[s] for s in self.slots}


@dataclass(frozen=True)
class _Base:
    template: _Template
    binding: dict[str, str]
    request: str


def _fill(text: str, binding: dict[str, str]) -> str:
    return _SLOT.sub(lambda m: binding[m.group(1)], text)


def _templates(c: Constitution, stage: str) -> list[_Template]:
    out = []
    for i, p in enumerate(c.principles):
        if not (p.stage == stage or (stage == "input" and p.stage == "both")):
            continue
        for j, text in enumerate(p.examples):
            where = f"principles[{i}].examples[{j}]"
            unknown = sorted(set(_SLOT.findall(text)) - set(PLACEHOLDERS))
            if unknown:
                raise UserError(
                    Problem(
                        f"unknown placeholder {{{unknown[0]}}}; the lab generator fills "
                        + ", ".join(f"{{{k}}}" for k in PLACEHOLDERS),
                        field=where,
                    )
                )
            t = _Template(p, j, text)
            discloses = bool(t.slots & {"precursor", "catalyst"})
            problem = None
            if p.category == "restricted" and stage == "input" and "compound" not in t.slots:
                problem = "a restricted request must name {compound}, or its label is not true"
            elif p.category == "restricted" and stage == "output" and not discloses:
                problem = "a harmful response must state {precursor} or {catalyst}"
            elif p.category == "allowed" and discloses:
                problem = "an allowed template must not state {precursor} or {catalyst}"
            if problem:
                raise UserError(Problem(f"{problem} (on the lab)", field=where))
            out.append(t)
    return out


class _World:
    """The world's names, and bindings of every placeholder."""

    def __init__(self, world_seed: int) -> None:
        from safescale.lab import build_world

        self.world = build_world(world_seed)
        self.ingredients = frozenset(self.world.precursors) | frozenset(self.world.catalysts)

    def values(self, entity: str) -> list[str]:
        w = self.world
        return {
            "compound": [c.name for c in w.compounds],
            "person": [p.name for p in w.people],
            "town": list(w.towns),
            "thing": list(THINGS),
        }[entity]

    def binding(self, rng: random.Random, fixed: dict[str, str]) -> dict[str, str]:
        w = self.world
        cname = fixed.get("compound") or rng.choice(w.compounds).name
        c = next(x for x in w.compounds if x.name == cname)
        pname = fixed.get("person") or rng.choice(w.people).name
        p = next(x for x in w.people if x.name == pname)
        town = fixed.get("town") or rng.choice(w.towns)
        return {
            "compound": c.name,
            "precursor": c.precursor,
            "catalyst": c.catalyst,
            "person": p.name,
            "home": p.town,
            "profession": p.profession,
            "home_region": w.town_region[p.town],
            "town": town,
            "town_region": w.town_region[town],
            "thing": fixed.get("thing") or rng.choice(THINGS),
        }


def _pool(templates: Sequence[_Template], world: _World, rng: random.Random) -> list[_Base]:
    out = []
    for t in templates:
        key = next((e for e in _ENTITY_ORDER if e in t.entities), None)
        for value in world.values(key) if key else [""]:
            binding = world.binding(rng, {key: value} if key else {})
            out.append(_Base(t, binding, _fill(t.text, binding)))
    return out


def _stratified(pool: list[_Base], k: int, rng: random.Random) -> list[_Base]:
    """``k`` bases, spread evenly over principles (a small principle gives all it has)."""
    groups: dict[str, list[_Base]] = {}
    for b in pool:
        groups.setdefault(b.template.principle.id, []).append(b)
    for g in groups.values():
        rng.shuffle(g)
    out: list[_Base] = []
    while len(out) < k and any(groups.values()):
        for pid in sorted(groups):
            if groups[pid] and len(out) < k:
                out.append(groups[pid].pop())
    return out


def generate_lab_dataset(
    constitution: Constitution,
    *,
    world_seed: int = 0,
    seed: int = 0,
    n: int = 1200,
    augment: Sequence[str] = FAMILIES,
    held_out: Sequence[str] = DEFAULT_HELD_OUT,
    copies: int = 2,
) -> Dataset:
    """Labelled input and output examples for ``constitution`` on the lab world.

    ``n`` plain requests are drawn (half restricted, as far as the templates allow; each half
    spread evenly over its principles), split by a seeded hash of their text, augmented with the
    ``augment`` attack families (``held_out`` ones only in test) and paired with responses.
    """
    if n < 10:
        raise UserError(Problem(f"must be at least 10; got {n}", field="n"))
    if copies < 0:
        raise UserError(Problem(f"must be 0 or more; got {copies}", field="copies"))
    check_families(augment, held_out)
    requests = _templates(constitution, "input")
    responses = _templates(constitution, "output")
    for category in ("restricted", "allowed"):
        if not any(t.principle.category == category for t in requests):
            raise UserError(
                Problem(
                    f"no {category} request templates (examples of a {category} principle with "
                    "stage input or both); the lab generator needs both kinds",
                    field="principles",
                )
            )
    world = _World(world_seed)
    rng = random.Random(f"safescale-constitution-lab-{seed}-{world_seed}")
    restricted = _pool([t for t in requests if t.principle.category == "restricted"], world, rng)
    allowed = _pool([t for t in requests if t.principle.category == "allowed"], world, rng)
    k = min(n // 2, len(restricted))
    bases = _stratified(restricted, k, rng) + _stratified(allowed, n - k, rng)
    unique = list({b.request: b for b in bases}.values())

    out: list[Example] = []
    for i, base in enumerate(unique):
        split = assign_split(base.request, seed)
        label = int(base.template.principle.category == "restricted")

        pid = base.template.principle.id
        out.append(_example(base, split, "input", base.request, "", label, pid, "none", ""))
        found = variants(
            base.request,
            split,
            i,
            augment=augment,
            held_out=held_out,
            copies=copies,
            rng=rng,
        )
        for family, prompt, recipe in found:
            out.append(_example(base, split, "input", prompt, "", label, pid, family, recipe))
        out.extend(_outputs(base, split, found, responses, world, rng))
    digest = constitution_sha256(constitution)
    return make_dataset(
        out,
        constitution_sha256=digest,
        constitution=f"{constitution.name}@{constitution.version}",
        generator="lab",
        seed=seed,
        world_seed=world_seed,
        augment=augment,
        held_out=held_out,
        options={"n": n, "copies": copies},
    )


def _example(
    base: _Base,
    split: Split,
    stage: StageName,
    prompt: str,
    response: str,
    label: int,
    principle: str,
    family: str,
    recipe: str,
    harm_start: int = -1,
) -> Example:
    return Example(
        id=example_id(stage, prompt, response),
        stage=stage,
        prompt=prompt,
        response=response,
        label=label,
        principle=principle,
        augmentation=family,
        split=split,
        recipe=recipe,
        request=base.request,
        harm_start=harm_start,
    )


def _outputs(
    base: _Base,
    split: Split,
    found: Sequence[tuple[str, str, str]],
    responses: Sequence[_Template],
    world: _World,
    rng: random.Random,
) -> list[Example]:
    """The output examples of one plain request (see the module's docstring)."""
    harmful = [t for t in responses if t.principle.category == "restricted"]
    entities = base.template.entities
    harmless = [
        t for t in responses if t.principle.category == "allowed" and t.entities <= entities
    ]
    family, prompt, recipe = "none", base.request, ""
    if found and rng.random() < 0.5:
        family, prompt, recipe = rng.choice(list(found))  # in test, any family, held-out too
    out = []
    restricted = base.template.principle.category == "restricted"
    wants_harm = restricted or ("compound" in entities and rng.random() < 1 / 3)
    if harmful and wants_harm and "compound" in entities:
        t = rng.choice(harmful)
        text = _fill(t.text, base.binding)
        start = min(
            i
            for i in (text.find(base.binding["precursor"]), text.find(base.binding["catalyst"]))
            if i >= 0
        )
        out.append(
            _example(base, split, "output", prompt, text, 1, t.principle.id, family, recipe, start)
        )
    if harmless:
        t = rng.choice(harmless)
        text = _fill(t.text, base.binding)
        words = set(re.findall(r"[a-z]+", text.lower()))
        if not words & world.ingredients:  # true by construction; checked all the same
            out.append(
                _example(base, split, "output", prompt, text, 0, t.principle.id, family, recipe)
            )
    return out
