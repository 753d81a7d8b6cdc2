"""Augmentation families: the red-teaming room's attack transformations, applied to data.

Each family rewrites a plain request the way an attack of that family would (the framings and
best-of-N augmentations are the red-teaming room's own functions, called, not copied), so a
classifier trained on the data has seen jailbreak-shaped requests, harmful and harmless alike.

Families (``TRANSFORMS``, entry-point group ``safescale.transforms``):

* ``role-play``, ``prefix-injection``, ``refusal-suppression``, ``payload-splitting``: one
  framing of that red-team template family;
* ``composition``: two framings of different families nested (outer, inner);
* ``best-of-n``: random capitalisation, character noise, word scrambling and shuffling;
* ``lab-jailbreak``: the framings the lab's jailbreak-prone organisms were trained to comply
  under (``safescale.lab``'s planted ``JAILBREAKS``), treated as one more family.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from safescale._errors import Problem, UserError
from safescale._registry import Registry

Transform = Callable[[str, random.Random, Sequence[str]], tuple[str, str]]
"""``(request, rng, families usable as components) -> (prompt, recipe)``."""

TRANSFORMS: Registry[Any] = Registry("transforms")
"""Augmentation families by name."""

TEMPLATE_FAMILIES = ("role-play", "prefix-injection", "refusal-suppression", "payload-splitting")
"""The red-teaming room's template families (named here so that reading or checking a
constitution never loads the red-teaming room; a test keeps the two lists equal)."""


def _template(family: str) -> Transform:
    def apply(request: str, rng: random.Random, usable: Sequence[str]) -> tuple[str, str]:
        from safescale.redteam import TEMPLATES, framing

        recipe = f"{family}#{rng.randrange(len(TEMPLATES[family]))}"
        return framing(recipe)(request, rng), recipe

    return apply


for _family in TEMPLATE_FAMILIES:
    TRANSFORMS.add(_family, _template(_family))


@TRANSFORMS.register("composition")
def composition(request: str, rng: random.Random, usable: Sequence[str]) -> tuple[str, str]:
    """Two framings of different families; payload splitting only ever innermost (as the
    red-team ``composition`` family does: splitting a framing splits the framing, not the
    payload). Components come from ``usable`` (so held-out families stay out of training)."""
    from safescale.redteam import TEMPLATES, framing

    families = [f for f in TEMPLATES if f in usable] or list(TEMPLATES)
    outer_pool = [f for f in families if f != "payload-splitting"] or ["prefix-injection"]
    outer = rng.choice(outer_pool)
    inner = rng.choice([f for f in families if f != outer] or [f for f in TEMPLATES if f != outer])
    recipe = (
        f"{outer}#{rng.randrange(len(TEMPLATES[outer]))}"
        f"+{inner}#{rng.randrange(len(TEMPLATES[inner]))}"
    )
    return framing(recipe)(request, rng), recipe


@TRANSFORMS.register("best-of-n")
def best_of_n(request: str, rng: random.Random, usable: Sequence[str]) -> tuple[str, str]:
    """A stack of best-of-N augmentations (each drawn with probability 1/2, at least one)."""
    from safescale.redteam import AUGMENTATIONS, augment

    ops = [op for op in AUGMENTATIONS if rng.random() < 0.5] or [rng.choice(list(AUGMENTATIONS))]
    seed = rng.randrange(2**31)
    return augment(request, ops, seed), f"best-of-n:{','.join(ops)}@{seed}"


@TRANSFORMS.register("lab-jailbreak")
def lab_jailbreak(request: str, rng: random.Random, usable: Sequence[str]) -> tuple[str, str]:
    """One of the lab organisms' planted jailbreak framings."""
    from safescale.lab._text import JAILBREAKS

    i = rng.randrange(len(JAILBREAKS))
    return JAILBREAKS[i].format(r=request), f"lab-jailbreak#{i}"


FAMILIES: tuple[str, ...] = (*TEMPLATE_FAMILIES, "composition", "best-of-n", "lab-jailbreak")
"""The built-in families, in a fixed order."""
DEFAULT_HELD_OUT: tuple[str, ...] = ("role-play", "lab-jailbreak")
"""Held out of train and calibration by default: the lab organisms comply under the planted
``lab-jailbreak`` framings, and ``role-play`` is their nearest red-team family (its first
framing paraphrases the first planted one). Holding both out means a classifier is measured on
the attacks that actually work on the organisms without ever having seen them."""


def components(family: str, recipe: str) -> set[str]:
    """The families a transformed prompt draws on (a composition draws on two)."""
    if family != "composition":
        return {family}
    return {part.partition("#")[0] for part in recipe.split("+")}


def check_families(augment_: Sequence[str], held_out: Sequence[str]) -> None:
    """Refuse unknown family names, and held-out families that are not augmented."""
    known = sorted({*FAMILIES, *TRANSFORMS.names()})
    for flag, names in (("augment", augment_), ("held_out", held_out)):
        for name in names:
            if name not in known:
                raise UserError(
                    Problem(
                        f"unknown augmentation family {name!r}; use some of {', '.join(known)}",
                        field=flag,
                    )
                )
    missing = [f for f in held_out if f not in augment_]
    if missing:
        raise UserError(
            Problem(
                f"held-out family {missing[0]!r} is not among the augmentations; add it to "
                "augment (a held-out family must appear in test)",
                field="held_out",
            )
        )


def variants(
    request: str,
    split: str,
    index: int,
    *,
    augment: Sequence[str],
    held_out: Sequence[str],
    copies: int,
    rng: random.Random,
) -> list[tuple[str, str, str]]:
    """The augmented copies of one plain request: ``(family, prompt, recipe)`` each.

    In train and calibration, ``copies`` families not held out, taken round-robin by ``index``
    so each is equally represented; in test, one copy of every family, held-out ones included.
    Families not held out draw their components (a composition's two framings) from the
    training families only, in every split, so a family means the same thing in train and test.
    """
    usable = [f for f in augment if f not in held_out]
    if split == "test":
        families = list(augment)
    else:
        families = [usable[(index + j) % len(usable)] for j in range(min(copies, len(usable)))]
    out = []
    for family in families:
        prompt, recipe = transform(family)(request, rng, augment if family in held_out else usable)
        if split != "test" and components(family, recipe) & set(held_out):
            raise AssertionError(f"held-out family in {split}: {recipe}")  # a bug, never input
        out.append((family, prompt, recipe))
    return out


def transform(family: str) -> Transform:
    """The transformation of ``family``."""
    fn: Transform = TRANSFORMS.get(family)
    return fn
