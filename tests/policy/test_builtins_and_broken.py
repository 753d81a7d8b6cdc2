"""The built-in policies load and say what their sources say; broken policies are refused with
one precise line per problem and never crash the checker."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import safescale.policy._load as load_module
from safescale._errors import Problem, UserError
from safescale.policy import (
    builtin_ids,
    builtin_path,
    check_policy_file,
    check_policy_text,
    load_builtin,
    load_policy,
    policy_sha256,
)
from safescale.policy._load import MAX_POLICY_BYTES

HERE = Path(__file__).parent
BROKEN = HERE / "broken"
EXPECTED: dict[str, dict[str, Any]] = yaml.safe_load((BROKEN / "EXPECTED.yaml").read_text())
BROKEN_FILES = sorted(p.name for p in BROKEN.iterdir() if p.name != "EXPECTED.yaml")
NEW_BUILTINS = ["anthropic-rsp-1.0", "openai-pf-2", "gdm-fsf-3"]
PUBLISHED = ["anthropic-rsp-2.2", *NEW_BUILTINS]
"""Built-ins that express a published framework (others, such as the lab's, have no source text)."""


# -- built-ins --------------------------------------------------------------------------------


def test_new_builtins_are_listed() -> None:
    assert set(NEW_BUILTINS) <= set(builtin_ids())


@pytest.mark.parametrize("policy_id", builtin_ids())
def test_builtin_loads_cleanly(policy_id: str) -> None:
    policy, problems = check_policy_file(builtin_path(policy_id))
    assert problems == []
    assert policy is not None
    assert policy.id == policy_id, "framework.id must match the file name"


@pytest.mark.parametrize("policy_id", PUBLISHED)
def test_published_builtin_cites_its_source(policy_id: str) -> None:
    policy = load_builtin(policy_id)
    assert policy.framework.source.url.startswith("https://")
    assert policy.framework.source.published == policy.framework.effective
    for t in policy.capability_thresholds:
        assert t.source_ref, f"{t.id} has no source_ref"


@pytest.mark.parametrize("policy_id", builtin_ids())
def test_builtin_round_trips(policy_id: str) -> None:
    # What to_dict writes must load back as the very same policy (same identity hash).
    policy = load_builtin(policy_id)
    again, problems = check_policy_text(yaml.safe_dump(policy.to_dict(), sort_keys=False))
    assert problems == []
    assert again is not None and policy_sha256(again) == policy_sha256(policy)


def test_rsp_1_0_cadence_differs_from_2_2_under_shared_trigger_ids() -> None:
    old, new = load_builtin("anthropic-rsp-1.0"), load_builtin("anthropic-rsp-2.2")
    old_t = {t.id: t for t in old.assessment_triggers}
    new_t = {t.id: t for t in new.assessment_triggers}
    shared = {"notably-more-capable-compute", "notably-more-capable-post-training"}
    assert shared <= set(old_t) & set(new_t)
    compute_old = old_t["notably-more-capable-compute"]
    compute_new = new_t["notably-more-capable-compute"]
    assert compute_old.kind == compute_new.kind == "effective_compute"
    assert getattr(compute_old, "ratio", None) == getattr(compute_new, "ratio", None) == 4
    cal_old = old_t["notably-more-capable-post-training"]
    cal_new = new_t["notably-more-capable-post-training"]
    assert str(getattr(cal_old, "interval", "")) == "P3M"
    assert str(getattr(cal_new, "interval", "")) == "P6M"
    assert "6x" in (compute_old.description or "")  # the safety buffer is stated with the cadence


def test_rsp_1_0_facts() -> None:
    p = load_builtin("anthropic-rsp-1.0")
    assert p.version == "1.0" and str(p.framework.effective) == "2023-09-19"
    autonomy = p.threshold("ASL-3-autonomy")
    assert autonomy.evaluations[0].threshold == 0.5  # 50% aggregate task success
    assert "1%" in autonomy.definition
    assert p.unmet_safeguards.training_pause is not None
    assert p.unmet_safeguards.training_pause.sufficient_safeguards == ["ASL-3-Containment"]
    ladder = [s.step for s in p.unmet_safeguards.ladder]
    assert {"pause_training", "lock_down_weights", "delete_weights"} <= set(ladder)
    assert {r.id for r in p.governance.roles} >= {"RSO", "Board", "LTBT"}
    assert p.planned_scale_up == 4  # the evaluation interval; the 6x buffer sits in the lines


def test_openai_pf_2_facts() -> None:
    p = load_builtin("openai-pf-2")
    tracked = [t for t in p.capability_thresholds if t.kind == "threshold"]
    assert {(t.domain, t.level.label if t.level else None) for t in tracked} == {
        (d, lvl)
        for d in ("bio-chem", "cyber", "ai-self-improvement")
        for lvl in ("High", "Critical")
    }
    for t in tracked:
        assert t.level is not None and t.level.scheme == "pf"
        if t.level.label == "Critical":
            assert t.on_reach == ["halt_development"]
    research = {t.id for t in p.capability_thresholds if t.kind == "research_category"}
    assert research == {
        "long-range-autonomy",
        "sandbagging",
        "autonomous-replication",
        "undermining-safeguards",
        "nuclear-radiological",
    }
    assert not any(t.kind == "effective_compute" for t in p.assessment_triggers)
    assert p.threshold("cyber-high").required_safeguards.all_of == [
        "High-Security",
        "High-Misuse",
        "High-Misalignment",
    ]
    deploy = next(d for d in p.decisions if d.about == "deployment")
    assert deploy.recommended_by == ["SAG"] and deploy.decided_by == ["Leadership"]
    assert deploy.may_reverse == ["Board-SSC"]
    marginal = p.exceptions[0]
    assert any("more protective" in o for o in marginal.obligations)


def test_gdm_fsf_3_facts() -> None:
    p = load_builtin("gdm-fsf-3")
    security = {
        t.id: next(s for s in t.required_safeguards.all_of if s.startswith("SL"))
        for t in p.capability_thresholds
        if t.required_safeguards.all_of and t.required_safeguards.all_of[0].startswith("SL")
    }
    assert security == {
        "CBRN-uplift-1": "SL2",
        "Cyber-uplift-1": "SL2",
        "Harmful-Manipulation-1": "SL2",
        "ML-RD-acceleration-1": "SL3",
        "ML-RD-automation-1": "SL4",
    }
    assert p.threshold("Harmful-Manipulation-1").commitment == "exploratory"
    assert p.safeguard("SL4").includes == ["SL3"] and p.safeguard("SL3").includes == ["SL2"]
    assert {t.kind for t in p.assessment_triggers} == {"event"}
    assert any(i.audience == "government" for i in p.transparency.items)


# -- the broken-policy corpus -----------------------------------------------------------------


def test_minimal_policy_is_valid() -> None:
    # Each broken file is this policy broken once; were it invalid, the corpus would prove nothing.
    policy = load_policy(HERE / "minimal.yaml")
    assert policy.id == "minimal"


def test_corpus_and_manifest_agree() -> None:
    assert len(BROKEN_FILES) >= 24
    assert set(BROKEN_FILES) == set(EXPECTED)


def _check(name: str) -> list[Problem]:
    policy, problems = check_policy_file(BROKEN / name)
    assert policy is None
    assert problems, f"{name} was accepted"
    return problems


@pytest.mark.parametrize("name", BROKEN_FILES)
def test_broken_file_is_refused_precisely(name: str, request: pytest.FixtureRequest) -> None:
    want = EXPECTED[name]
    if want.get("known_issue"):
        request.applymarker(pytest.mark.xfail(reason=want["known_issue"], strict=True))
    problems = _check(name)
    source = str(BROKEN / name)
    for p in problems:
        text = str(p)
        assert "\n" not in text and "\r" not in text, f"multi-line problem: {text!r}"
        assert p.source == source and text.startswith(source)
    matching = [
        p
        for p in problems
        if p.field == want["field"] and p.line == want["line"] and want["message"] in p.message
    ]
    assert matching, f"{name}: wanted {want}, got {[str(p) for p in problems]}"
    p = matching[0]
    text = str(p)
    if p.line is not None:
        assert f"{source}:{p.line}: " in text
    if p.field is not None:
        assert f" {p.field}: " in text


@pytest.mark.parametrize("name", BROKEN_FILES)
def test_checking_never_raises(name: str, request: pytest.FixtureRequest) -> None:
    if EXPECTED[name].get("known_issue"):
        request.applymarker(pytest.mark.xfail(reason=EXPECTED[name]["known_issue"], strict=True))
    check_policy_file(BROKEN / name)


@pytest.mark.parametrize("name", [n for n in BROKEN_FILES if not EXPECTED[n].get("known_issue")])
def test_load_policy_raises_user_error(name: str) -> None:
    with pytest.raises(UserError) as info:
        load_policy(BROKEN / name)
    assert info.value.problems and all(isinstance(p, Problem) for p in info.value.problems)


def test_oversized_file_is_refused_without_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = tmp_path / "huge.yaml"
    chunk = b"# padding " + b"x" * 1013 + b"\n"  # 1 KiB of valid YAML comment per line
    with big.open("wb") as f:
        f.write((HERE / "minimal.yaml").read_bytes())
        for _ in range(50 * 1024):
            f.write(chunk)
    assert big.stat().st_size > 50 * 1024 * 1024 > MAX_POLICY_BYTES

    def must_not_parse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an oversized file reached the parser")

    monkeypatch.setattr(load_module, "check_policy_text", must_not_parse)
    monkeypatch.setattr(Path, "read_bytes", must_not_parse)
    start = time.perf_counter()
    policy, problems = check_policy_file(big)
    elapsed = time.perf_counter() - start
    assert policy is None and len(problems) == 1
    assert "MB" in problems[0].message and "\n" not in str(problems[0])
    assert problems[0].source == str(big)
    # Not a speed target: a generous bound that only a full read-and-parse would break.
    assert elapsed < 5.0
