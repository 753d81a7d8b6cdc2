"""The report's sections come from an ordered registry; red-team evidence gets its section."""

from __future__ import annotations

from datetime import UTC, datetime

from safescale.policy import determine, load_builtin, policy_sha256
from safescale.report import SECTIONS, ReportInput, build_report, render

POLICY = load_builtin("lab")


def test_sections_are_an_ordered_registry():
    names = SECTIONS.names()
    assert names == sorted(names) and names[0] == "010-capability"
    assert (
        names.index("060-criteria")
        < names.index("070-safeguard-tests")
        < names.index("080-governance")
    )


def test_campaign_evidence_appears_in_the_safeguards_report():
    from safescale.redteam import (
        CampaignConfig,
        InspectTarget,
        LabJudge,
        attack_families,
        campaign_evidence,
        lab_behaviours,
        run_campaign,
    )
    from tests.redteam.conftest import oracle

    target = InspectTarget("mockllm/model", model_args={"custom_outputs": oracle()})
    result = run_campaign(
        target,
        attack_families(["role-play", "prefix-injection"]),
        lab_behaviours(0, 5),
        LabJudge(0),
        CampaignConfig(budget=2, held_out=("prefix-injection",)),
    )
    stack = {
        "name": "s",
        "independent_product": 0.01,
        "added_latency_s": 0.001,
        "added_fraction": 0.05,
        "joint": {"k": 1, "n": 10, "value": 0.1, "lo": 0.02, "hi": 0.4},
        "over_refusal": {"k": 2, "n": 10, "value": 0.2, "lo": 0.06, "hi": 0.5},
        "ratio": {"value": 10.0, "lo": 2.0, "hi": 40.0, "n": 10},
        "layers": [
            {
                "name": "names",
                "reached": 10,
                "catch_rate": {"k": 5, "n": 10, "value": 0.5, "lo": 0.2, "hi": 0.8},
                "pass_rate": {"k": 5, "n": 10, "value": 0.5, "lo": 0.2, "hi": 0.8},
                "over_refusal": {"k": 2, "n": 10, "value": 0.2, "lo": 0.06, "hi": 0.5},
            }
        ],
    }
    ev = campaign_evidence(
        result,
        policy=POLICY,
        safeguard="LAB-DEPLOY-2",
        model_id="m",
        log_sha256="c" * 64,
        extra={"stack": stack},
    )
    now = datetime.now(UTC)
    det = determine(POLICY, "m", ev, as_of=now, policy_sha256=policy_sha256(POLICY))
    md = render(
        build_report(ReportInput(policy=POLICY, determination=det, lineage=[], evidence=ev)), "md"
    )
    assert "## Red-team campaigns and safeguard tests" in md
    assert "| prefix-injection | yes | 1 [0.566, 1] (5/5) |" in md
    assert "| role-play | no | 0 [0, 0.434] (0/5) |" in md
    assert "held-out families 1 [0.566, 1] (5/5)" in md
    assert "ratio 10 [2, 40]" in md and "| names | 10 |" in md
    assert "no calibration against labels" in md
    # the section sits between the criteria and the governance sections
    assert (
        md.index("Safeguard criteria")
        < md.index("Red-team campaigns")
        < md.index("Decision and sign-off")
    )
