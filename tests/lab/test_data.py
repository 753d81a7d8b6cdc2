import torch

from safescale.lab import SIZES, TrainConfig, build_model
from safescale.lab._data import EpochOrder, block_indices, pack, pad_documents
from safescale.lab._reference import reference_step
from safescale.lab._train import lm_loss, make_optimizer


def test_epoch_order_matches_the_reference_lookup() -> None:
    order = EpochOrder(n_blocks=7, seed=3)
    for start, count in ((0, 5), (5, 9), (30, 4), (2, 1)):
        assert torch.equal(order.take(start, count), block_indices(7, start, count, seed=3))


def test_every_block_once_per_epoch() -> None:
    assert sorted(block_indices(11, 11, 11, seed=0).tolist()) == list(range(11))


def test_pack_and_pad_shapes() -> None:
    docs = [[1, 2, 3, 0], [4, 5, 0], [6, 7, 8, 9, 10, 0]]
    blocks = pack(docs, seq_len=3)
    assert blocks.shape == (3, 4) and blocks.flatten().tolist() == [t for d in docs for t in d][:12]
    ids, labels = pad_documents(docs, seq_len=5, pad_id=0)
    assert ids.shape == labels.shape == (3, 5)
    assert labels[1].tolist() == [4, 5, 0, -100, -100]
    assert ids[2].tolist() == [6, 7, 8, 9, 10]


def test_fast_step_matches_the_reference_step() -> None:
    # Same initial weights, same unpadded batch, fp32: our step (own loss, fused AdamW) and the
    # reference step (HF labels loss, for-each AdamW) must give the same weights.
    cfg = TrainConfig(size=SIZES["s0"], tokens=4096, seq_len=16, batch_size=4, precision="fp32")
    fast, ref = (build_model(cfg.size, 300, 32, seed=5) for _ in range(2))
    blocks = torch.randint(0, 300, (4, 17), generator=torch.Generator().manual_seed(0))
    opt_fast = make_optimizer(fast, cfg)
    groups = [
        {"params": [p for p in ref.parameters() if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in ref.parameters() if p.dim() < 2], "weight_decay": 0.0},
    ]
    opt_ref = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), foreach=False)
    for _ in range(3):
        loss = lm_loss(fast, blocks, bf16=False)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(fast.parameters(), cfg.grad_clip)
        opt_fast.step()
        opt_fast.zero_grad()
        ref_loss = reference_step(ref, opt_ref, blocks, blocks)
        assert abs(ref_loss - loss.item()) < 1e-4
    for (name, a), b in zip(fast.named_parameters(), ref.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5), name
