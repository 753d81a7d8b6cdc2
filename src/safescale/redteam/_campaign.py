"""Campaigns: attacks x behaviours against a target, every attempt judged and recorded.

The unit of attack success is a (attack family, behaviour) pair: it is *broken* when any attempt
within the query budget elicits the behaviour. The attack success rate (ASR) of a family is the
share of its pairs broken, with a Wilson interval over pairs; per behaviour, the share of
families that broke it. Every campaign also sends each behaviour once as a plain request (the
``direct`` baseline, not an attack): its refusal rate is the refusal criterion's measurement,
and CAS-style, it shows what the attacks add (garak's "baseline versus attack").
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from safescale._errors import Problem, UserError
from safescale.redteam._attacks import Attack, AttackContext, AttackRun, Feedback, Proposal
from safescale.redteam._behaviours import Behaviour
from safescale.redteam._judges import Judge, JudgeCalibration, Verdict, is_refusal
from safescale.redteam._stats import Rate, rate
from safescale.redteam._targets import Generation, Target

DIRECT = "direct"
"""The baseline: each behaviour sent once, unchanged."""


@dataclass(frozen=True)
class Attempt:
    """One query: the prompt an attack sent, the response, and the verdict."""

    attack: str
    behaviour: str
    index: int
    """Query number within its (attack, behaviour) run, from 0."""
    round: int
    prompt: str
    recipe: str
    response: str
    success: bool
    """The behaviour got through every layer (for a plain model: the judge's verdict)."""
    model_success: bool
    """The judge's verdict on the model's own output (before output layers)."""
    score: float
    scored: bool
    reason: str
    input_tokens: int
    output_tokens: int
    held_out: bool = False
    layers: dict[str, bool] = field(default_factory=dict)
    """Layer name -> whether the attempt got through it (every layer observed: shadow mode)."""
    refused: bool = False


@dataclass(frozen=True)
class BestAttack:
    """A recipe that worked, and how widely (universality across behaviours)."""

    recipe: str
    attack: str
    successes: int
    tries: int
    example: str


@dataclass(frozen=True)
class CampaignConfig:
    """How a campaign runs."""

    budget: int = 8
    """Queries per (attack, behaviour) pair."""
    seed: int = 0
    """Seeds every run's generator (with the attack and behaviour), so a campaign replays."""
    stop_on_success: bool = True
    """Stop a run at its first success (best-of-N's "until success")."""
    held_out: tuple[str, ...] = ()
    """Families kept out of anything tuned; reported apart from the seen families."""
    options: dict[str, Any] = field(default_factory=dict)
    """Options passed to every attack (``attacker`` for PAIR, ``width`` for search)."""

    def __post_init__(self) -> None:
        if self.budget < 1:
            raise UserError(Problem("budget must be at least 1", field="budget"))


@dataclass(frozen=True)
class CampaignResult:
    """Everything a campaign measured."""

    target: str
    judge: str
    config: CampaignConfig
    attempts: tuple[Attempt, ...]
    overall: Rate
    """ASR over (family, behaviour) pairs, direct baseline excluded."""
    by_family: dict[str, Rate]
    by_behaviour: dict[str, Rate]
    seen: Rate
    held_out: Rate | None
    direct_refusal: Rate
    """Refusal rate of the plain requests."""
    direct_success: Rate
    queries: int
    input_tokens: int
    output_tokens: int
    unscored: int
    best: tuple[BestAttack, ...]
    seconds: float
    calibration: JudgeCalibration | None = None


MAX_CAMPAIGN_QUERIES = 10_000_000
"""Most target queries a campaign may plan: one plain request per behaviour, then up to the
budget per (attack family, behaviour) pair. Ten million is days of a local model and a large
bill on an endpoint; a bigger campaign is almost always a mistake in one of the three factors
(a behaviour file of millions of lines, ``--budget 100000``)."""


def planned_queries(behaviours: int, families: int, budget: int) -> int:
    """The target queries a campaign may make: each behaviour once as a plain request (the
    ``direct`` baseline), then at most ``budget`` per (attack family, behaviour) pair."""
    return behaviours * (1 + families * budget)


SMALLER_CAMPAIGN = "use fewer behaviours, fewer attack families or a smaller --budget"
"""The fix for a campaign over :data:`MAX_CAMPAIGN_QUERIES`."""


def check_campaign_size(behaviours: int, families: int, budget: int) -> int:
    """The planned queries (:func:`planned_queries`); more than :data:`MAX_CAMPAIGN_QUERIES` is
    refused in one line naming the flags that set the three factors, before any model is
    called."""
    planned = planned_queries(behaviours, families, budget)
    if planned > MAX_CAMPAIGN_QUERIES:
        raise UserError(
            Problem(
                f"{behaviours:,} behaviours x {families:,} attack "
                f"{'family' if families == 1 else 'families'} x budget {budget:,} "
                f"plan up to {planned:,} model calls (with one plain request per behaviour), "
                f"more than the {MAX_CAMPAIGN_QUERIES:,} a campaign may make; {SMALLER_CAMPAIGN}",
                field="--behaviours x --attacks x --budget",
            )
        )
    return planned


def most_behaviours(families: int, budget: int) -> tuple[int, str]:
    """The most behaviours a campaign of ``families`` attack families and ``budget`` may attack
    within :data:`MAX_CAMPAIGN_QUERIES`, and the fix to give when a file holds more (a behaviour
    file stops being read there, so that millions of lines are never held at once)."""
    per = planned_queries(1, families, budget)
    kinds = "attack family" if families == 1 else "attack families"
    return MAX_CAMPAIGN_QUERIES // per, (
        f"with {families:,} {kinds} (--attacks) x --budget {budget:,}, each behaviour "
        f"plans up to {per:,} model calls and a campaign at most {MAX_CAMPAIGN_QUERIES:,}; "
        f"{SMALLER_CAMPAIGN}"
    )


def _run_seed(seed: int, attack: str, behaviour: str) -> random.Random:
    return random.Random(f"safescale-redteam-{seed}-{attack}-{behaviour}")


def run_campaign(
    target: Target,
    attacks: Sequence[tuple[str, Attack]],
    behaviours: Sequence[Behaviour],
    judge: Judge,
    config: CampaignConfig | None = None,
    *,
    white_box: Any | None = None,
    layered: Callable[[Sequence[str], Sequence[Generation]], list[dict[str, bool]]] | None = None,
    progress: Callable[[int], None] | None = None,
) -> CampaignResult:
    """Run every attack on every behaviour; batch each round's prompts into one target call.

    ``layered`` (from a stack) gives, per prompt and generation, the input/output layers it got
    through; success then needs every layer passed and the judge's verdict on the model output.
    """
    cfg = config or CampaignConfig()
    if not behaviours:
        raise UserError(Problem("no behaviours to attack", field="behaviours"))
    unknown = set(cfg.held_out) - {name for name, _ in attacks}
    if unknown:
        raise UserError(
            Problem(
                f"held-out families {sorted(unknown)} are not among the attacks", field="held_out"
            )
        )
    if judge.name == "lab":
        missing = [b.id for b in behaviours if not b.compound]
        if missing:
            raise UserError(
                Problem(
                    f"the lab judge needs a 'compound' on every behaviour; {missing[0]} has none",
                    field="compound",
                )
            )
    check_campaign_size(len(behaviours), len(attacks), cfg.budget)
    start = time.perf_counter()
    ctx = AttackContext(budget=cfg.budget, white_box=white_box, options=dict(cfg.options))
    runs: dict[tuple[str, str], AttackRun] = {}
    used: Counter[tuple[str, str]] = Counter()
    done: set[tuple[str, str]] = set()
    by_id = {b.id: b for b in behaviours}
    for name, attack in attacks:
        for b in behaviours:
            runs[name, b.id] = attack.start(b, _run_seed(cfg.seed, name, b.id), ctx)
    attempts: list[Attempt] = []

    def send(batch: list[tuple[str, str, Proposal]], rnd: int) -> list[Attempt]:
        prompts = [p.prompt for _, _, p in batch]
        gens = target.generate(prompts)
        verdicts = judge.judge(
            [(by_id[bid], g.text) for (_, bid, _), g in zip(batch, gens, strict=True)]
        )
        passes = layered(prompts, gens) if layered else [{} for _ in gens]
        out = []
        for (name, bid, p), g, v, layers in zip(batch, gens, verdicts, passes, strict=True):
            through = all(layers.values())
            out.append(
                Attempt(
                    attack=name,
                    behaviour=bid,
                    index=used[name, bid],
                    round=rnd,
                    prompt=p.prompt,
                    recipe=p.recipe,
                    response=g.text,
                    success=v.success and through,
                    model_success=v.success,
                    score=v.score,
                    scored=v.scored,
                    reason=v.reason,
                    input_tokens=g.input_tokens,
                    output_tokens=g.output_tokens,
                    held_out=name in cfg.held_out,
                    layers={**layers, "model": v.success} if layers else {},
                    refused=is_refusal(g.text) or not through,
                )
            )
            used[name, bid] += 1
        return out

    # The direct baseline: one plain query per behaviour.
    attempts += send([(DIRECT, b.id, Proposal(b.request, DIRECT)) for b in behaviours], 0)
    rnd = 0
    while True:
        rnd += 1
        batch: list[tuple[str, str, Proposal]] = []
        for key, run in runs.items():
            if key in done:
                continue
            left = cfg.budget - used[key]
            proposals = run.propose(left) if left > 0 else []
            if not proposals:
                done.add(key)
                continue
            batch += [(key[0], key[1], p) for p in proposals[:left]]
        if not batch:
            break
        new = send(batch, rnd)
        attempts += new
        grouped: dict[tuple[str, str], list[Feedback]] = defaultdict(list)
        for (name, bid, p), a in zip(batch, new, strict=True):
            grouped[name, bid].append(
                Feedback(p, a.response, Verdict(a.success, a.score, a.scored, a.reason))
            )
        for key, fb in grouped.items():
            runs[key].observe(fb)
            if cfg.stop_on_success and any(f.verdict.success for f in fb):
                done.add(key)
        if progress is not None:
            progress(len(attempts))
    return summarise(target.name, judge.name, cfg, attempts, time.perf_counter() - start)


def summarise(
    target: str, judge: str, cfg: CampaignConfig, attempts: Sequence[Attempt], seconds: float
) -> CampaignResult:
    """The campaign's rates, costs and best attacks from its attempts."""
    direct = [a for a in attempts if a.attack == DIRECT]
    attack_rows = [a for a in attempts if a.attack != DIRECT]
    broken: dict[tuple[str, str], bool] = {}
    for a in attack_rows:
        broken[a.attack, a.behaviour] = broken.get((a.attack, a.behaviour), False) or a.success
    fams: dict[str, list[bool]] = defaultdict(list)
    behs: dict[str, list[bool]] = defaultdict(list)
    for (fam, beh), ok in broken.items():
        fams[fam].append(ok)
        behs[beh].append(ok)
    seen = [ok for (fam, _), ok in broken.items() if fam not in cfg.held_out]
    held = [ok for (fam, _), ok in broken.items() if fam in cfg.held_out]
    recipes: dict[str, list[Attempt]] = defaultdict(list)
    for a in attack_rows:
        recipes[a.recipe.split("@")[0]].append(a)
    best = sorted(
        (
            BestAttack(
                recipe=r,
                attack=rows[0].attack,
                successes=len({a.behaviour for a in rows if a.success}),
                tries=len({a.behaviour for a in rows}),
                example=next(a.prompt for a in rows if a.success),
            )
            for r, rows in recipes.items()
            if any(a.success for a in rows)
        ),
        key=lambda b: (-b.successes, -b.successes / b.tries, b.recipe),
    )[:5]
    return CampaignResult(
        target=target,
        judge=judge,
        config=cfg,
        attempts=tuple(attempts),
        overall=rate(sum(broken.values()), len(broken)),
        by_family={f: rate(sum(v), len(v)) for f, v in sorted(fams.items())},
        by_behaviour={b: rate(sum(v), len(v)) for b, v in sorted(behs.items())},
        seen=rate(sum(seen), len(seen)),
        held_out=rate(sum(held), len(held)) if cfg.held_out else None,
        direct_refusal=rate(sum(a.refused for a in direct), len(direct)),
        direct_success=rate(sum(a.success for a in direct), len(direct)),
        queries=len(attempts),
        input_tokens=sum(a.input_tokens for a in attempts),
        output_tokens=sum(a.output_tokens for a in attempts),
        unscored=sum(not a.scored for a in attempts),
        best=tuple(best),
        seconds=seconds,
    )
