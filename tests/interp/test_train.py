"""The SAE trainer: the sparse fast path agrees with the autograd reference; the tricks hold."""

from dataclasses import replace

import pytest
import torch

from safescale.interp import (
    DEFAULT_SAE,
    SAEConfig,
    SuperpositionConfig,
    dense_step,
    geometric_median,
    sparse_step,
    superposition_batches,
    train_sae,
)
from safescale.interp._train import init_sae


@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
@pytest.mark.parametrize("with_dead", [False, True])
def test_sparse_gradients_equal_autograd(arch: str, with_dead: bool) -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 12)
    cfg = SAEConfig(architecture=arch, d_sae=40, k=4, auxk_alpha=0.5, k_aux=6)
    sae = init_sae(12, cfg, x)
    with torch.no_grad():
        sae.b_enc.copy_(torch.randn(40) * 0.1)
    dead = torch.zeros(40, dtype=torch.bool)
    if with_dead:
        dead[::3] = True
    mse_s, cols_s, low_s = sparse_step(sae, x, cfg, dead)
    fast = {n: p.grad.clone() for n, p in sae.named_parameters()}
    mse_d, cols_d, low_d = dense_step(sae, x, cfg, dead)
    assert mse_s == pytest.approx(mse_d, rel=1e-5)
    assert sorted(cols_s.tolist()) == sorted(cols_d.tolist())
    assert low_s == pytest.approx(low_d, rel=1e-5)
    for name, p in sae.named_parameters():
        torch.testing.assert_close(fast[name], p.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_geometric_median_resists_outliers() -> None:
    pts = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [100.0, 100.0]])
    gm = geometric_median(pts)
    assert gm.norm() < 2  # the mean is (20.4, 20.4)
    sym = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    assert geometric_median(sym).abs().max() < 1e-5


def test_training_keeps_unit_decoder_rows_in_the_scaled_space_and_folds_the_scale() -> None:
    data = SuperpositionConfig(d=16, n_features=32, true_l0=2)
    cfg = replace(DEFAULT_SAE, d_sae=64, k=2, tokens=20_000, batch_size=256)
    scaled = (x * 7.0 for x in superposition_batches(data, 256))
    t = train_sae(scaled, 16, cfg)
    # Trained on 7x inputs: the scale is folded in, so rows have norm 1/scale on raw inputs.
    norms = t.sae.w_dec.norm(dim=1)
    torch.testing.assert_close(norms, torch.full_like(norms, 1 / t.scale), rtol=1e-4, atol=1e-6)
    x = next(superposition_batches(data, 512, seed_offset=9)) * 7.0
    err = (t.sae(x) - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
    assert err < 0.5
    assert t.tokens == cfg.steps * cfg.batch_size and len(t.curve) > 0


def test_relu_l1_trains_and_is_sparse() -> None:
    data = SuperpositionConfig(d=16, n_features=32, true_l0=2)
    cfg = SAEConfig(architecture="relu", d_sae=64, tokens=60_000, batch_size=256)
    t = train_sae(superposition_batches(data, 256), 16, cfg)
    x = next(superposition_batches(data, 1024, seed_offset=3))
    l0 = (t.sae.encode(x) > 0).sum(1).float().mean()
    assert l0 < 16  # far sparser than the dense code (64)


def test_batchtopk_learns_an_inference_threshold() -> None:
    data = SuperpositionConfig(d=16, n_features=32, true_l0=2)
    cfg = replace(DEFAULT_SAE, architecture="batchtopk", d_sae=64, k=2, tokens=40_000)
    t = train_sae(superposition_batches(data, 512), 16, cfg)
    assert float(t.sae.threshold.min()) > 0
    x = next(superposition_batches(data, 2048, seed_offset=4))
    l0 = float((t.sae.encode(x) != 0).sum(1).float().mean())
    assert 1.0 < l0 < 4.0  # mean L0 near k = 2 at inference, without the batch


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError):
        SAEConfig(architecture="gated")
    with pytest.raises(ValueError):
        SAEConfig(d_sae=4, k=8)
