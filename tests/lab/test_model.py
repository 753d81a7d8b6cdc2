import pytest

from safescale.lab import SIZES, ModelSize, build_model
from safescale.lab._model import count_non_embedding


@pytest.mark.parametrize("name", sorted(SIZES))
def test_formula_matches_the_built_model(name: str) -> None:
    size = SIZES[name]
    model = build_model(size, vocab_size=512, max_len=64, seed=0)
    assert count_non_embedding(model) == size.non_embedding_params()


def test_sizes_span_10k_to_10m() -> None:
    n = sorted(s.non_embedding_params() for s in SIZES.values())
    assert 8_000 < n[0] < 20_000 and 8e6 < n[-1] < 12e6
    assert n == sorted(set(n))


def test_same_seed_same_weights() -> None:
    a = build_model(SIZES["s0"], 300, 32, seed=1).state_dict()
    b = build_model(SIZES["s0"], 300, 32, seed=1).state_dict()
    c = build_model(SIZES["s0"], 300, 32, seed=2).state_dict()
    assert all((a[k] == b[k]).all() for k in a)
    assert any((a[k] != c[k]).any() for k in a)


def test_invalid_size() -> None:
    with pytest.raises(ValueError, match="rotary"):
        ModelSize(name="x", d_model=30, n_layers=1, n_heads=4, d_ff=64)
