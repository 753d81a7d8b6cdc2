"""garak's report JSONL in, as safeguard-test evidence.

garak writes one ``eval`` row per (probe, detector) pair once it has scored it: ``passed``
outputs, ``fails`` (newer reports) and ``total_evaluated`` (older: ``total``); ``nones`` are
outputs the detector could not score and are left out of n, not counted as passes. The attack
success rate of a pair is fails / evaluated, with a Wilson interval; a probe's rate is its
worst detector's (the harshest reading, as garak's own aggregation by minimum does). The
pooled record sums every probe's worst pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from safescale._errors import Problem, UserError
from safescale._input import check_count, check_id, check_text, jsonl_rows
from safescale._io import file_sha256
from safescale.policy import Evidence, Interval, sha256_hex, utcnow
from safescale.redteam._stats import Rate, rate


@dataclass(frozen=True)
class GarakResult:
    """One probe x detector pair of a garak report."""

    probe: str
    detector: str
    asr: Rate


MAX_EVALUATED = 10**9
"""Most outputs one probe x detector pair may count (as for ``safeguard test --n``)."""


def read_garak_report(path: str | Path) -> tuple[list[GarakResult], str]:
    """The (probe, detector) results of a garak report and its garak version.

    Counts are whole numbers (a float, a boolean or a string is refused, not rounded), in
    range and consistent (passed and fails within the total); probe and detector names follow
    the id grammar; a pair given twice is refused, naming both lines.
    """
    p = Path(path)
    src = str(p)
    out: list[GarakResult] = []
    lines: dict[tuple[str, str], int] = {}
    garak_version = ""
    for i, row in jsonl_rows(p, "garak report"):
        if not garak_version and "garak_version" in row:
            garak_version = check_text(
                row["garak_version"], "garak_version", max_len=256, source=src, line=i
            )
        if row.get("entry_type") != "eval":
            continue
        total_key = "total_evaluated" if "total_evaluated" in row else "total"
        if not all(k in row for k in ("probe", "detector", "passed", total_key)):
            raise UserError(
                Problem(
                    "an eval row needs probe, detector, passed and total_evaluated (or total)",
                    source=src,
                    line=i,
                )
            )
        probe = check_id(row["probe"], "probe", what="probe name", source=src, line=i)
        detector = check_id(row["detector"], "detector", what="detector name", source=src, line=i)
        total = check_count(row[total_key], total_key, hi=MAX_EVALUATED, source=src, line=i)
        passed = check_count(row["passed"], "passed", hi=total, source=src, line=i)
        fails = check_count(row.get("fails", total - passed), "fails", hi=total, source=src, line=i)
        if passed + fails > total:
            raise UserError(
                Problem(
                    f"passed {passed} and fails {fails} add up to more than {total_key} {total}",
                    source=src,
                    line=i,
                )
            )
        if (probe, detector) in lines:
            raise UserError(
                Problem(
                    f"probe {probe} with detector {detector} is already given on line "
                    f"{lines[probe, detector]}; keep one eval row per pair",
                    source=src,
                    line=i,
                )
            )
        lines[probe, detector] = i
        out.append(GarakResult(probe, detector, rate(fails, total)))
    if not out:
        raise UserError(
            Problem("no eval rows: is this a garak report.jsonl of a finished run?", source=src)
        )
    return out, garak_version


def garak_evidence(path: str | Path, *, model_id: str, safeguard: str) -> list[Evidence]:
    """``safeguard_test`` evidence from a garak report: per pair, per probe and pooled."""
    results, garak_version = read_garak_report(path)
    sha = file_sha256(Path(path))
    now = utcnow()
    worst: dict[str, GarakResult] = {}
    for r in results:
        if r.probe not in worst or r.asr.value > worst[r.probe].asr.value:
            worst[r.probe] = r
    pooled = rate(sum(r.asr.k for r in worst.values()), sum(r.asr.n for r in worst.values()))

    def record(key: str, metric: str, r: Rate, details: dict[str, object]) -> Evidence:
        return Evidence(
            # The report, the model and the safeguard it is evidence for: the same report
            # imported for a second model or safeguard was taken for a re-import and dropped.
            id=f"st-{sha256_hex(f'{sha}:{model_id}:{safeguard}:{key}'.encode())[:16]}",
            model=model_id,
            kind="safeguard_test",
            subject=safeguard,
            metric=metric,
            value=r.value,
            interval=Interval(lo=r.lo, hi=r.hi, confidence=0.95, method="wilson"),
            n=r.n,
            elicitation="garak scan",
            producer="garak",
            producer_version=garak_version,
            artifacts={"log": sha},
            created=now,
            details={"source": str(path), **details},
        )

    out = [
        record(
            f"{r.probe}:{r.detector}",
            "attack_success_rate",
            r.asr,
            {"probe": r.probe, "detector": r.detector},
        )
        for r in results
    ]
    out.append(record("pooled", "attack_success_rate", pooled, {"pooled_over": sorted(worst)}))
    return out
