"""Build small real models and multiple-choice tasks for the evals tests and benchmark.

A byte-level BPE tokenizer is trained on generated text, wrapped as a
``PreTrainedTokenizerFast``, and saved next to a small seeded ``LlamaForCausalLM`` trained for a
few steps, so that log-likelihoods are not uniform. Nothing is downloaded.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

NAMES = [
    "Zorbia",
    "Quell",
    "Marnot",
    "Vesh",
    "Tolura",
    "Bravik",
    "Ondel",
    "Pyra",
    "Caskel",
    "Lumen",
    "Fennick",
    "Darrow",
    "Ilsa",
    "Kestrel",
    "Morrow",
    "Nadir",
]
THINGS = ["river", "mountain", "city", "forest", "harbour", "desert", "valley", "tower"]
COLOURS = ["red", "blue", "green", "amber", "violet", "silver", "black", "white"]


def sentences(n: int, seed: int) -> list[str]:
    """Generated facts in a tiny synthetic world."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.sample(NAMES, 2)
        out.append(
            f"The {rng.choice(THINGS)} of {a} is {rng.choice(COLOURS)} and lies near {b}. "
            f"{a} has {rng.randint(2, 99)} towers."
        )
    return out


def write_mc_jsonl(path: Path, n: int, seed: int = 0) -> Path:
    """A 4-choice JSONL task (``question``, ``choices``, ``answer``) of ``n`` questions."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        a, b = rng.sample(NAMES, 2)
        thing = rng.choice(THINGS)
        kind = i % 3
        if kind == 0:
            q = f"What colour is the {thing} of {a}, which lies near {b}?"
            choices = rng.sample(COLOURS, 4)
        elif kind == 1:
            q = f"Which place lies near the {thing} of {a}?"
            choices = rng.sample([x for x in NAMES if x != a], 4)
        else:
            q = f"How many towers does {a} have?"
            choices = [str(x) for x in rng.sample(range(2, 99), 4)]
        lines.append(json.dumps({"question": q, "choices": choices, "answer": rng.randrange(4)}))
    path.write_text("\n".join(lines) + "\n")
    return path


def build_model(
    out: Path,
    *,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    vocab: int = 512,
    steps: int = 20,
    seed: int = 0,
) -> Path:
    """Train a tokenizer and a small Llama for ``steps`` steps; save both to ``out``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    text = sentences(2000, seed)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(text, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>"
    )
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=hidden,
        intermediate_size=hidden * 4,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=256,
        bos_token_id=0,
        eos_token_id=0,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(cfg)
    if steps:
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        ids = [tok.encode(t).ids for t in text]
        rng = random.Random(seed)
        for _ in range(steps):
            batch = rng.sample(ids, 16)
            width = max(map(len, batch))
            x = torch.zeros((16, width), dtype=torch.long)
            labels = torch.full((16, width), -100, dtype=torch.long)
            for i, row in enumerate(batch):
                x[i, : len(row)] = torch.tensor(row)
                labels[i, : len(row)] = torch.tensor(row)
            loss = model(input_ids=x, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    fast.save_pretrained(out)
    return out
