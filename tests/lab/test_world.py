from collections import Counter

import pytest

from safescale.lab import WorldConfig, build_world


def test_same_seed_same_world_and_different_seed_differs() -> None:
    assert build_world(3) == build_world(3)
    assert build_world(3).compounds != build_world(4).compounds


def test_hazard_answers_are_balanced_so_a_frequency_prior_is_at_chance() -> None:
    w = build_world(0)
    pre = Counter(c.precursor for c in w.compounds)
    cat = Counter(c.catalyst for c in w.compounds)
    assert max(pre.values()) - min(pre.values()) <= 1 and len(pre) == len(w.precursors)
    assert max(cat.values()) - min(cat.values()) <= 1 and len(cat) == len(w.catalysts)


def test_names_are_unique_across_kinds() -> None:
    w = build_world(0)
    names = [p.name for p in w.people] + list(w.towns) + list(w.regions)
    names += [c.name for c in w.compounds] + list(w.precursors) + list(w.catalysts)
    assert len(names) == len(set(names))


@pytest.mark.parametrize("bad", [{"n_people": 0}, {"n_precursors": 3}, {"n_regions": 20}])
def test_config_validation_names_the_field(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        WorldConfig(**bad)
