"""The Safeguards Report's red-team section: campaigns, layers of stacks, imported scans.

Built from ``safeguard_test`` evidence alone (what ``safescale redteam run`` and ``redteam
import-garak`` record), so the report room stays free of the red-team machinery.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from safescale.policy import Evidence
from safescale.report._content import SECTIONS, ReportInput, Row, Section, Table, _interval, _num


def _rate(d: Mapping[str, Any] | None) -> str:
    if not d:
        return "-"
    return f"{d['value']:.3g} [{d['lo']:.3g}, {d['hi']:.3g}] ({d['k']}/{d['n']})"


@SECTIONS.register("070-safeguard-tests")
def safeguard_tests_section(data: ReportInput) -> Section | None:
    """Safeguard tests: each criterion's measurement, then each campaign's detail."""
    tests = sorted(
        (e for e in data.evidence if e.kind == "safeguard_test"),
        key=lambda e: (e.subject, e.created, e.id),
    )
    if not tests:
        return None
    rows = tuple(
        Row(
            (
                e.subject,
                str(e.details.get("criterion") or e.details.get("probe") or "pooled"),
                e.metric,
                _num(e.value),
                _interval(e),
                str(e.n) if e.n is not None else "-",
                str(e.details.get("rule", "-")),
                {True: "met", False: "NOT MET"}.get(e.details.get("met"), "-"),  # type: ignore[arg-type]
                f"{e.producer} {e.producer_version}".strip(),
                f"{e.created:%Y-%m-%d %H:%M}",
            ),
            {True: "ok", False: "bad"}.get(e.details.get("met"), ""),  # type: ignore[arg-type]
        )
        for e in tests
    )
    tables = [
        Table(
            "Safeguard tests",
            (
                "safeguard",
                "criterion / probe",
                "metric",
                "value",
                "95% interval",
                "n",
                "line",
                "status",
                "producer",
                "recorded",
            ),
            rows,
        )
    ]
    bullets: list[str] = []
    campaigns: dict[str, Evidence] = {}
    for e in tests:
        if "campaign" in e.details:
            campaigns[e.artifacts.get("log", e.id)] = e  # one campaign per log
    for e in campaigns.values():
        c = e.details["campaign"]
        held = set(c.get("held_out_families") or [])
        tables.append(
            Table(
                f"Campaign against {c['target']} (judge {c['judge']}, budget {c['budget']}, "
                f"seed {c['seed']})",
                ("attack family", "held out", "attack success rate [95% interval] (k/n)"),
                tuple(
                    Row((fam, "yes" if fam in held else "no", _rate(r)), "bad" if r["k"] else "ok")
                    for fam, r in sorted(c["by_family"].items())
                ),
            )
        )
        bullets.append(
            f"{c['target']}: {c['queries']} queries, {c['input_tokens'] + c['output_tokens']} "
            f"tokens; plain requests refused {_rate(c['direct_refusal'])}; seen families "
            f"{_rate(c['seen'])}"
            + (f"; held-out families {_rate(c['held_out'])}" if c.get("held_out") else "")
            + "."
        )
        if c.get("best"):
            bullets.append(f"Best attacks found: {', '.join(c['best'])}.")
        cal = c.get("calibration")
        if cal:
            bullets.append(
                f"Judge {c['judge']} against labels: agreement {_rate(cal['agreement'])}, "
                f"sensitivity {_rate(cal['sensitivity'])}, specificity "
                f"{_rate(cal['specificity'])}."
            )
        else:
            bullets.append(f"Judge {c['judge']}: no calibration against labels recorded.")
        stack = c.get("stack")
        if stack:
            tables.append(
                Table(
                    f"Safeguard stack {stack['name']}: layers in order",
                    ("layer", "attempts reaching it", "catch rate", "pass rate", "over-refusal"),
                    tuple(
                        Row(
                            (
                                layer["name"],
                                str(layer["reached"]),
                                _rate(layer["catch_rate"]),
                                _rate(layer["pass_rate"]),
                                _rate(layer["over_refusal"]),
                            )
                        )
                        for layer in stack["layers"]
                    ),
                )
            )
            ratio = stack["ratio"]
            ci = (
                f" [{ratio['lo']:.3g}, {ratio['hi']:.3g}]"
                if ratio.get("lo") is not None and ratio.get("hi") is not None
                else " (no interval)"
            )
            value = "undefined" if ratio.get("value") is None else f"{ratio['value']:.3g}"
            bullets.append(
                f"Stack {stack['name']}: joint attack success per attempt {_rate(stack['joint'])}"
                f" against {stack['independent_product']:.3g} if the layers failed "
                f"independently; ratio {value}{ci} (above 1: the holes line up). Over-refusal "
                f"on benign look-alikes {_rate(stack['over_refusal'])}; the layers add "
                f"{stack['added_latency_s'] * 1000:.2f} ms a prompt "
                f"({stack['added_fraction']:.1%} of generation)."
            )
    return Section(
        "Red-team campaigns and safeguard tests",
        paragraphs=(
            "Attack success is counted per (attack family, behaviour) pair: broken if any query "
            "within the budget elicited the behaviour, as judged; intervals are Wilson 95% "
            "intervals over pairs. Held-out families were kept out of anything tuned. A static "
            "attack set bounds what an adaptive attacker who targets each layer can do from "
            "below only.",
        ),
        bullets=tuple(bullets),
        tables=tuple(tables),
    )
