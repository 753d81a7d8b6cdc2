"""SAEs are saved in SAELens's documented v6 format, and SAELens loads them."""

import json

import pytest
import torch
from safetensors.torch import load_file

from safescale.interp import SparseAutoencoder, load_sae, save_sae

# SAELens v6 (sae_lens/saes/sae.py, SAEConfig and load_from_disk): cfg.json holds the
# architecture name, d_in, d_sae, dtype, device, apply_b_dec_to_input, normalize_activations,
# reshape_activations and a metadata dict (sae_lens_version >= 6 selects the v6 reader); TopK
# adds k; sae_weights.safetensors holds W_enc (d_in, d_sae), b_enc (d_sae), W_dec (d_sae, d_in),
# b_dec (d_in), plus threshold (d_sae) for JumpReLU.
SAELENS_ARCH = {"topk": "topk", "batchtopk": "jumprelu", "relu": "standard"}


def _random_sae(arch: str) -> SparseAutoencoder:
    sae = SparseAutoencoder(6, 20, arch, k=3)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
        sae.threshold.fill_(0.2)
    sae.metadata = {"hookpoint": "layers.1.resid_post", "model": "lab/s3"}
    return sae


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "relu"])
def test_files_follow_the_saelens_layout(arch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    sae = _random_sae(arch)
    save_sae(sae, tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    assert cfg["architecture"] == SAELENS_ARCH[arch]
    assert (cfg["d_in"], cfg["d_sae"]) == (6, 20)
    assert cfg["apply_b_dec_to_input"] is True and cfg["normalize_activations"] == "none"
    assert cfg["metadata"]["sae_lens_version"].startswith("6.")
    assert cfg["metadata"]["hook_name"] == "layers.1.resid_post"
    assert (cfg.get("k") == 3) == (arch == "topk")
    w = load_file(str(tmp_path / "sae_weights.safetensors"))
    assert w["W_enc"].shape == (6, 20) and w["W_dec"].shape == (20, 6)
    assert w["b_enc"].shape == (20,) and w["b_dec"].shape == (6,)
    assert ("threshold" in w) == (arch == "batchtopk")
    # The files mean what SAELens computes: f = act((x - b_dec) @ W_enc + b_enc).
    x = torch.randn(4, 6)
    pre = (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    if arch == "relu":
        torch.testing.assert_close(sae.encode(x), pre.relu())
    back = load_sae(tmp_path)
    assert back.architecture == arch
    torch.testing.assert_close(back(x), sae(x))
    assert back.metadata["hookpoint"] == "layers.1.resid_post"


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "relu"])
def test_saelens_loads_them(arch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    sae_lens = pytest.importorskip("sae_lens")
    sae = _random_sae(arch)
    save_sae(sae, tmp_path)
    theirs = sae_lens.SAE.load_from_disk(str(tmp_path))
    x = torch.randn(7, 6)
    torch.testing.assert_close(theirs.encode(x), sae.encode(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(theirs(x), sae(x), rtol=1e-5, atol=1e-5)


def test_a_folder_without_the_files_is_a_user_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from safescale._errors import UserError

    with pytest.raises(UserError, match="not an SAE folder"):
        load_sae(tmp_path)
