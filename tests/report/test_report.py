"""Reports built from records: content, Markdown, and HTML checked in headless Chromium."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from safescale.policy import (
    Evidence,
    Interval,
    ModelRecord,
    determine,
    load_builtin,
    policy_sha256,
)
from safescale.report import Figure, ReportInput, build_report, render

NOW = datetime(2026, 11, 1, tzinfo=UTC)
POLICY = load_builtin("lab")


def _png() -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([1, 2, 3], [0.25, 0.32, 0.41], "o-")
    ax.axhline(0.40, color="red")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _input(previous=None, hazard=0.38):
    ev = [
        Evidence(
            id="ev-h",
            model="m2",
            kind="evaluation",
            subject="lab-hazard-proxy-mc",
            value=hazard,
            interval=Interval(lo=hazard - 0.05, hi=hazard + 0.05),
            n=300,
            artifacts={"log": "ab" * 32},
            created=NOW - timedelta(hours=1),
        ),
        Evidence(
            id="ev-f",
            model="m2",
            kind="forecast",
            subject="lab-hazard-proxy-mc",
            value=0.52,
            interval=Interval(lo=0.41, hi=0.63, method="bootstrap"),
            created=NOW - timedelta(hours=1),
        ),
        Evidence(
            id="att-base",
            model="*",
            kind="attestation",
            subject="LAB-BASE",
            metric="attested",
            value=1,
            created=NOW - timedelta(days=2),
        ),
    ]
    det = determine(POLICY, "m2", ev, as_of=NOW, policy_sha256=policy_sha256(POLICY))
    lineage = [
        ModelRecord(id="m1", params=1e6, tokens=1e7, flops=6e13, assessed=True),
        ModelRecord(
            id="m2",
            parent="m1",
            stage="finetuning",
            tokens=1e6,
            flops=6e12,
            flops_method="hardware",
            flops_rel_uncertainty=0.3,
        ),
    ]
    return ReportInput(
        policy=POLICY,
        determination=det,
        lineage=lineage,
        evidence=ev,
        previous=previous,
        figures=[Figure("Hazard-proxy forecast", _png(), "Accuracy against compute.")],
        ledger_head="f" * 64,
    )


def test_markdown_names_thresholds_intervals_and_safeguards():
    md = render(build_report(_input()), "md")
    assert "**Outcome: RESTRICT DEPLOYMENT**" in md
    assert "| LAB-HAZARD-1 | lab-hazard-proxy-mc | 0.38 | [0.33, 0.43] | 300 |" in md
    assert "cannot rule out + alert" in md and "0.52 [0.41, 0.63]" in md
    assert "LAB-DEPLOY-2" in md and "NOT MET" in md
    assert "6.6e+13" in md  # cumulative FLOP along the lineage
    assert "What these numbers do not show" in md
    assert "First assessment recorded" in md


def test_what_changed_compares_with_previous_determination():
    before = _input(hazard=0.2).determination
    md = render(build_report(_input(previous=before)), "md")
    # The forecast alerts in both; the measurement moved from ruled out to cannot rule out.
    assert "LAB-HAZARD-1: ruled out + alert -> cannot rule out + alert." in md


def test_html_is_self_contained_and_escaped():
    page = render(build_report(_input()), "html")
    assert page.startswith("<!DOCTYPE html>")
    assert "data:image/png;base64," in page
    assert not re.search(r"""(src|href)=["']https?://""", page)
    assert "<script" not in page


@pytest.mark.browser
def test_html_renders_in_headless_chromium(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (make install installs it)")
    page = tmp_path / "report.html"
    page.write_text(render(build_report(_input()), "html"))
    flags = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    shot = tmp_path / "report.png"
    subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1200,1800", page.as_uri()],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert shot.stat().st_size > 20_000  # a real rendering, not a blank page
    dom = subprocess.run(
        [*flags, "--dump-dom", page.as_uri()],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert 'id="outcome"' in dom and "restrict deployment" in dom
    assert "LAB-HAZARD-1" in dom and "Safeguards Report" in dom
    from PIL import Image

    img = Image.open(shot).convert("RGB")
    # The outcome badge is drawn in the "bad" red near the top of the page.
    reds = sum(
        1
        for x in range(0, 600, 3)
        for y in range(60, 200, 3)
        if img.getpixel((x, y))[0] > 150 and img.getpixel((x, y))[1] < 80
    )
    assert reds > 50


def _caption(ident: str, value: float, n: int, **details: object) -> str:
    from safescale.report._ledger import forecast_caption

    return forecast_caption(
        Evidence(
            id=ident, model="m2", kind="forecast", subject="lab-hazard-proxy-mc", value=value,
            interval=Interval(lo=value - 0.02, hi=value + 0.04), n=n,
            details={"at_effective_compute": 4e21, "rise_observed": True, **details},
        )
    )  # fmt: skip


def test_a_forecast_near_the_floor_says_its_band_may_be_too_narrow() -> None:
    def caption(position: float) -> str:
        widening = 1.5 if position <= 0.1 else 1.0
        return _caption(
            "fc-1", 0.27, 8, prob_over_alert=0.02, position_on_rise=position,
            scale_widening=widening,
        )  # fmt: skip

    low = caption(0.03)
    assert low.startswith("lab-hazard-proxy-mc against effective compute over 8 ladder models")
    assert "Caution: the forecast lies near the floor of the rise (3.0% of the way" in low
    assert "(the band was widened 1.5x there)" in low and "widened" not in caption(0.5)
    assert low.endswith("(evidence fc-1).")
    assert "Caution" not in caption(0.5) and "Caution" not in caption(0.97)


def test_a_forecast_whose_record_was_set_aside_says_so() -> None:
    def caption(used: bool) -> str:
        cal = {"record_used": used, "overdispersion": 1.31}
        return _caption("fc-2", 0.6, 6, position_on_rise=0.5, scale_widening=1.0, calibration=cal)

    assert "scatters 1.31x the sampling variance" in caption(False)
    assert "not its backtest record" in caption(False)
    assert "sampling" not in caption(True) and caption(False).endswith("(evidence fc-2).")
