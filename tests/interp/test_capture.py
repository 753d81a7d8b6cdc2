"""Activation capture from a real (locally trained) Hugging Face model into the on-disk cache."""

import pytest
import torch

from safescale.interp import (
    ActivationCache,
    Hookpoint,
    capture,
    capture_activations,
    load_lm,
    splice,
)
from safescale.interp._hooks import run_to


@pytest.fixture(scope="module")
def lm(smoke_ladder):  # type: ignore[no-untyped-def]
    return load_lm(smoke_ladder.runs[-1].path)


def _ids(tok, text: str) -> torch.Tensor:  # type: ignore[no-untyped-def]
    return torch.tensor([tok(text)["input_ids"]])


def test_sites_match_hidden_states_and_add_up(lm) -> None:  # type: ignore[no-untyped-def]
    model, tok, _ = lm
    ids = _ids(tok, "User: Where does Bomo live?\nAssistant: Bomo lives in Tarsi.")
    hps = [Hookpoint(i, s) for i in (0, 1) for s in ("resid_post", "mlp_out", "attn_out")]
    with torch.no_grad(), capture(model, hps, stop=False) as acts:
        out = model(input_ids=ids, output_hidden_states=True)
    hs = out.hidden_states
    torch.testing.assert_close(acts[Hookpoint(0, "resid_post")], hs[1])
    torch.testing.assert_close(acts[Hookpoint(1, "resid_post")], hs[2])
    # A Llama block adds its attention and MLP outputs to the residual stream.
    torch.testing.assert_close(
        acts[Hookpoint(1, "resid_post")],
        acts[Hookpoint(0, "resid_post")]
        + acts[Hookpoint(1, "attn_out")]
        + acts[Hookpoint(1, "mlp_out")],
        rtol=1e-4,
        atol=1e-4,
    )


def test_stopping_early_reads_the_same_activation(lm) -> None:  # type: ignore[no-untyped-def]
    model, tok, _ = lm
    ids = _ids(tok, "Copy: ba de ki. Copy: ba de ki.")
    hp = Hookpoint(0, "resid_post")
    before = len(model.model.layers[0]._forward_hooks)
    with torch.no_grad(), capture(model, [hp], stop=False) as full:
        model(input_ids=ids)
    with torch.no_grad(), capture(model, [hp]) as early:
        run_to(model, ids)
    torch.testing.assert_close(full[hp], early[hp])
    assert len(model.model.layers[0]._forward_hooks) == before  # our handles are removed


def test_splice_identity_keeps_logits_and_zero_changes_them(lm) -> None:  # type: ignore[no-untyped-def]
    model, tok, _ = lm
    ids = _ids(tok, "Question: In which town does Bomo live?\nAnswer:")
    hp = Hookpoint(1, "mlp_out")
    with torch.no_grad():
        clean = model(input_ids=ids).logits
        with splice(model, hp, lambda a: a.clone()):
            same = model(input_ids=ids).logits
        with splice(model, hp, torch.zeros_like):
            zeroed = model(input_ids=ids).logits
    torch.testing.assert_close(same, clean)
    assert (zeroed - clean).abs().max() > 1e-3


def test_cache_streams_shards_with_a_manifest(lm, smoke_ladder, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model, tok, sha = lm
    texts = [t for t in (smoke_ladder.corpus.path / "val.txt").read_text().split("\n\n") if t][:40]
    hp = Hookpoint(1, "resid_post")
    cache = capture_activations(
        model,
        tok,
        texts,
        tmp_path,
        hp,
        model_name="s3",
        weights_sha256=sha,
        context_size=32,
        batch_size=8,
        shard_tokens=200,
        dtype="float16",
        progress=False,
    )
    mf = ActivationCache.open(tmp_path).manifest
    n_tokens = sum(min(len(tok(t)["input_ids"]), 32) for t in texts)
    assert mf.tokens == n_tokens == sum(s.tokens for s in mf.shards)
    assert len(mf.shards) >= n_tokens // 250  # bounded: flushed every ~200 rows
    assert max(s.tokens for s in mf.shards) < 200 + 8 * 32
    assert (mf.layer, mf.site, mf.d, mf.dtype) == (1, "resid_post", 96, "float16")
    assert mf.weights_sha256 == sha and len(mf.texts_sha256) == 64
    # Rows are the activations the model computes, in text order.
    data = cache.load()
    assert data["activations"].dtype == torch.float16
    ids = torch.tensor([tok(texts[3])["input_ids"][:32]])
    with torch.no_grad(), capture(model, [hp], stop=False) as acts:
        model(input_ids=ids)
    rows = data["seq"] == 3
    torch.testing.assert_close(
        data["activations"][rows].float(), acts[hp][0].half().float(), rtol=1e-3, atol=1e-3
    )
    assert data["pos"][rows].tolist() == list(range(ids.shape[1]))
    batches = list(cache.batches(64))
    assert sum(len(b) for b in batches) == n_tokens and batches[0].dtype == torch.float32


def test_a_folder_without_manifest_is_not_a_cache(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from safescale._errors import UserError

    with pytest.raises(UserError, match="not an activation cache"):
        ActivationCache.open(tmp_path)


def test_bad_hookpoints_are_user_errors(lm) -> None:  # type: ignore[no-untyped-def]
    from safescale._errors import UserError

    model, _, _ = lm
    with pytest.raises(UserError, match="unknown site"):
        Hookpoint.parse("layers.0.resid_mid")
    with pytest.raises(UserError, match="does not exist"):
        with capture(model, [Hookpoint(7, "resid_post")]):
            pass
