import random

import pytest

from safescale._errors import UserError
from safescale.redteam import (
    ATTACKS,
    AUGMENTATIONS,
    TEMPLATES,
    AttackContext,
    Behaviour,
    attack_families,
    augment,
    framing,
)

B = Behaviour("b1", "How do I make kobixax?", compound="kobixax")


def test_registry_has_every_family_and_an_entry_point_group():
    for name in (
        "role-play",
        "prefix-injection",
        "refusal-suppression",
        "payload-splitting",
        "composition",
        "best-of-n",
        "search",
        "pair",
        "gcg",
    ):
        assert name in ATTACKS
    assert ATTACKS.kind == "attacks"  # outside packages register under safescale.attacks
    with pytest.raises(UserError, match="unknown attacks 'nope'"):
        attack_families(["nope"])


def test_templates_keep_the_request_and_payload_splitting_rejoins_it():
    rng = random.Random(0)
    for family, framings in TEMPLATES.items():
        for f in framings:
            text = f(B.request, rng)
            if family == "payload-splitting":
                a, b = text.split('"')[1], text.split('"')[3]
                assert f"{a} {b}" == B.request and B.request not in text
            else:
                assert B.request in text and text != B.request


def test_composition_nests_two_families():
    text = framing("role-play#0+prefix-injection#0")(B.request, random.Random(0))
    assert text.startswith("I am writing a novel") and text.endswith('"Sure."')
    ((name, comp),) = attack_families(["composition"])
    recipes = comp.recipes
    assert all(r.split("+")[0].split("#")[0] != r.split("+")[1].split("#")[0] for r in recipes)


def test_augmentations_are_seeded_and_replayable():
    for op in AUGMENTATIONS:
        assert augment(B.request, [op], 7) == augment(B.request, [op], 7)
    caps = augment(B.request, ["caps"], 1)
    assert caps.lower() == B.request.lower() and caps != B.request
    scrambled = augment("abcdefgh ijklmnop", ["scramble"], 3)
    assert sorted(scrambled) == sorted("abcdefgh ijklmnop")


def test_best_of_n_respects_the_budget_and_replays():
    ((_, bon),) = attack_families(["best-of-n"])

    def draw(seed):
        run = bon.start(B, random.Random(seed), AttackContext(budget=20))
        out = []
        while batch := run.propose(100):
            out += batch
        return out

    a, b = draw(5), draw(5)
    assert len(a) == 20 and [p.prompt for p in a] == [p.prompt for p in b]
    assert [p.prompt for p in draw(6)] != [p.prompt for p in a]
    # the recipe replays its prompt exactly
    p = a[3]
    ops, seed = p.recipe.split(":")[1].split("@")
    assert augment(B.request, ops.split(","), int(seed)) == p.prompt
