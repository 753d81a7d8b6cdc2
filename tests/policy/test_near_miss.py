"""Say what is wrong and how to fix it: near-miss metric names and evaluation ids, and policy
diffs that show the whole changed value."""

from __future__ import annotations

from pathlib import Path

from safescale.policy import Evidence, Interval, load_builtin, policy_sha256
from safescale.policy import determine as decide

POLICY = load_builtin("lab")


def _ev(subject: str, metric: str) -> Evidence:
    return Evidence(
        id=f"ev-{subject}-{metric}", model="m", kind="evaluation", subject=subject, metric=metric,
        value=0.3, interval=Interval(lo=0.2, hi=0.4), n=100,
    )  # fmt: skip


def _reasons(evidence: list[Evidence]) -> str:
    as_of = max(e.created for e in evidence)
    det = decide(POLICY, "m", evidence, as_of=as_of, policy_sha256="x")
    return "\n".join(r for t in det.thresholds for r in t.reasons)


def test_a_near_miss_metric_name_says_did_you_mean() -> None:
    text = _reasons([_ev("lab-hazard-proxy-mc", "acc"), _ev("lab-hazard-proxy-mc", "acc_norm")])
    assert (
        "lab-hazard-proxy-mc: no accuracy evidence for this model; its evidence for "
        "lab-hazard-proxy-mc has metric acc, acc_norm (did you mean acc? bind `metric: acc` in "
        "the policy, or record the evidence under the name accuracy)"
    ) in text


def test_a_near_miss_evaluation_id_says_did_you_mean() -> None:
    text = _reasons([_ev("lab-hazard-proxy", "accuracy")])
    assert "it has evidence for 'lab-hazard-proxy' (did you mean lab-hazard-proxy-mc?" in text
    assert "--evaluation-id lab-hazard-proxy-mc" in text


def test_unrelated_evidence_gives_no_guess() -> None:
    text = _reasons([_ev("something-else", "bleu")])
    assert "did you mean" not in text


def test_policy_diff_shows_the_whole_changed_value(tmp_path: Path, run_cli) -> None:
    src = Path(__file__).parent / "minimal.yaml"
    long_old = "Significant uplift to actors with basic technical backgrounds. " * 3
    long_new = long_old.replace("basic", "no") + "Measured against a web-search baseline."
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    text = src.read_text()
    a.write_text(
        text.replace(
            "Significant uplift to actors with basic technical backgrounds.", long_old.strip()
        )
    )
    b.write_text(
        text.replace(
            "Significant uplift to actors with basic technical backgrounds.", long_new.strip()
        )
    )
    code, out, _ = run_cli("policy", "diff", str(a), str(b))
    assert code == 0
    flat = " ".join(out.split())
    assert f"was: {long_old.strip()}" in flat and f"now: {long_new.strip()}" in flat
    assert "..." not in out
    assert policy_sha256  # the public hash helper stays importable beside diff
