"""``safescale redteam run|behaviours|attacks|calibrate|import-garak``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from safescale._errors import Problem, UserError
from safescale._input import check_count, check_id, check_seed, quote
from safescale.cli._common import check_output, check_output_folder, console, print_json
from safescale.cli._eval import _record, _workspace

app = typer.Typer(
    help="Red-teaming: attack campaigns, judges, safeguard stacks, garak import.",
    no_args_is_help=True,
)


def _csv(text: str | None) -> list[str]:
    return [x.strip() for x in (text or "").split(",") if x.strip()]


def _behaviours(spec: str, seed: int, families: int, budget: int) -> tuple[list[Any], str]:
    """The behaviours ``spec`` names; a file is read up to the most a campaign of ``families``
    attack families and ``budget`` may attack."""
    from safescale.redteam import lab_behaviours, load_behaviours, most_behaviours

    if spec == "lab" or spec.startswith("lab:"):
        n = spec.partition(":")[2]
        # ASCII digits only: str.isdigit() takes '²', which int() refuses.
        if n and not (n.isascii() and n.isdigit() and len(n) <= 7 and 1 <= int(n) <= MAX_N):
            raise UserError(
                Problem(
                    f"{quote(spec)}: use lab or lab:N, N from 1 to {MAX_N:,}", field="--behaviours"
                )
            )
        return lab_behaviours(seed, int(n) if n else None), f"lab world seed {seed}"
    most, fix = most_behaviours(families, budget)
    return load_behaviours(spec, most=most, fix=fix), spec


MAX_BUDGET = 100_000
"""Most queries per attack and behaviour (each is a model call)."""
MAX_N = 1_000_000
"""Most behaviours ``lab:N`` or ``behaviours --n`` may ask for."""


@app.command("run")
def run(
    target: Annotated[
        str,
        typer.Option("--target", "-t", help="Lab/HF model folder, Inspect model, or stack .yaml."),
    ],
    behaviours: Annotated[
        str,
        typer.Option("--behaviours", "-b", help="Behaviour JSONL, or lab / lab:N (the lab world)."),
    ],
    attacks: Annotated[
        str, typer.Option("--attacks", "-a", help="Comma-separated attack families, or all.")
    ] = "all",
    budget: Annotated[int, typer.Option("--budget", help="Queries per attack and behaviour.")] = 8,
    judge: Annotated[str, typer.Option("--judge", help="lab (ground truth) or rubric.")] = "lab",
    judge_model: Annotated[
        str | None, typer.Option("--judge-model", help="Inspect model for the rubric judge.")
    ] = None,
    attacker: Annotated[
        str | None, typer.Option("--attacker", help="Inspect model driving the pair attack.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Campaign seed (and lab world seed).")] = 0,
    held_out: Annotated[
        str | None, typer.Option("--held-out", help="Families held out of tuning, reported apart.")
    ] = None,
    benign: Annotated[
        str | None,
        typer.Option(
            "--benign", help="Benign look-alikes for over-refusal (JSONL or lab); stacks."
        ),
    ] = None,
    labelled: Annotated[
        Path | None, typer.Option("--labelled", help="Labelled JSONL to calibrate the judge on.")
    ] = None,
    safeguard: Annotated[
        str | None, typer.Option("--safeguard", help="Policy safeguard the evidence is bound to.")
    ] = None,
    policy: Annotated[str, typer.Option("--policy", help="Policy id or file.")] = "lab",
    model_id: Annotated[
        str | None,
        typer.Option("--model-id", help="Model id for the evidence (default: folder name)."),
    ] = None,
    log_dir: Annotated[Path, typer.Option("--log-dir", help="Folder for the Inspect log.")] = Path(
        "logs"
    ),
    plot: Annotated[Path | None, typer.Option("--plot", help="PNG of the stack's layers.")] = None,
    device: Annotated[str, typer.Option("--device", help="torch device for local models.")] = "cpu",
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Run ATTACKS x BEHAVIOURS against TARGET; log every attempt; record safeguard evidence."""
    from safescale._io import atomic_write_bytes, file_sha256
    from safescale.redteam import (
        CampaignConfig,
        StackTarget,
        attack_families,
        calibrate_judge,
        check_campaign_size,
        lab_benign,
        load_behaviours,
        load_labelled,
        load_stack,
        locate_stack_problem,
        make_judge,
        make_target,
        policy_safeguard,
        run_campaign,
        stack_plot,
        stack_result,
        write_campaign_log,
    )

    check_count(budget, "--budget", lo=1, hi=MAX_BUDGET)
    check_seed(seed)
    for flag, value in (("--judge-model", judge_model), ("--attacker", attacker)):
        if value is not None:
            check_id(value, flag, what="Inspect model")
    for flag, value in (("--model-id", model_id), ("--safeguard", safeguard)):
        if value is not None:
            check_id(value, flag)
    from safescale._model_folder import check_device

    check_id(device, "--device")
    check_device(device, "--device")
    check_output_folder(log_dir, "--log-dir")
    if plot is not None:
        plot = check_output(plot, "--plot")
    chosen = attack_families(_csv(attacks) or ["all"])
    items, source = _behaviours(behaviours, seed, len(chosen), budget)
    check_campaign_size(len(items), len(chosen), budget)
    # Read before the campaign: a bad file is refused before any model is called.
    controls = (lab_benign(seed) if benign == "lab" else load_behaviours(benign)) if benign else []
    j = make_judge(judge, **({"seed": seed} if judge == "lab" else {"model": judge_model}))
    calibration = calibrate_judge(j, load_labelled(labelled, j)) if labelled else None
    stack = None
    spec = load_stack(target) if target.endswith((".yaml", ".yml")) else None
    # The evidence's model id, checked before any model is loaded (a folder's name may not be
    # an id).
    mid = model_id or _default_model_id(target, spec[0] if spec else None)
    pol = None
    if safeguard:
        check_id(mid, "--model-id", what="model id (the folder's name is not one: give --model-id)")
        # The safeguard is checked against the policy before any model is loaded or called.
        from safescale.policy import load_policy

        pol = load_policy(policy)
        policy_safeguard(pol, safeguard, "--safeguard")
    if spec is not None:
        try:
            stack = StackTarget(*spec, device=device)
        except UserError as exc:
            raise locate_stack_problem(exc, target) from None
        tgt: Any = stack
    else:
        tgt = make_target(target, device=device)
    # The local model (gradient attacks); for a stack, its model layer.
    white_box = stack.model if stack is not None else tgt
    options = {"attacker": attacker} if attacker else {}
    cfg = CampaignConfig(budget=budget, seed=seed, held_out=tuple(_csv(held_out)), options=options)
    result = run_campaign(
        tgt,
        chosen,
        items,
        j,
        cfg,
        white_box=white_box,
        layered=stack.layered if stack else None,
    )
    if calibration is not None:
        from dataclasses import replace

        result = replace(result, calibration=calibration)
    sres = None
    if stack is not None:
        sres = stack_result(stack, result.attempts, controls, seed=seed)
        if plot:
            atomic_write_bytes(plot, stack_plot(sres))
    log = write_campaign_log(
        result,
        log_dir,
        behaviours_path=source,
        metadata={"stack": _stack_json(sres)} if sres else None,
    )
    assert log.location is not None
    recorded = None
    evidence: list[Any] = []
    if safeguard and pol is not None:
        from safescale.redteam import campaign_evidence

        evidence = campaign_evidence(
            result,
            policy=pol,
            safeguard=safeguard,
            model_id=mid,
            log_sha256=file_sha256(log.location),
            log_path=log.location,
            extra={"stack": _stack_json(sres)} if sres else None,
        )
        recorded = _record(_workspace(), evidence, [Path(log.location)])
    _print(result, sres, log.location, evidence, recorded, as_json)


def _default_model_id(target: str, spec: Any) -> str:
    if spec is not None:
        return Path(spec.model).name or spec.name
    return Path(target).name if Path(target).is_dir() else target


def _stack_json(s: Any) -> dict[str, Any] | None:
    return None if s is None else s.as_dict()


def _print(
    result: Any, sres: Any, log: str, evidence: list[Any], recorded: Any, as_json: bool
) -> None:
    if as_json:
        cal = result.calibration
        print_json(
            {
                "target": result.target,
                "judge": result.judge,
                "log": log,
                "asr": result.overall.as_dict(),
                "by_family": {k: v.as_dict() for k, v in result.by_family.items()},
                "by_behaviour": {k: v.as_dict() for k, v in result.by_behaviour.items()},
                "seen": result.seen.as_dict(),
                "held_out": result.held_out.as_dict() if result.held_out else None,
                "direct_refusal": result.direct_refusal.as_dict(),
                "queries": result.queries,
                "input_tokens": result.input_tokens,
                "output_tokens": result.output_tokens,
                "unscored": result.unscored,
                "best": [
                    {
                        "recipe": b.recipe,
                        "attack": b.attack,
                        "successes": b.successes,
                        "tries": b.tries,
                        "example": b.example,
                    }
                    for b in result.best
                ],
                "calibration": None
                if cal is None
                else {
                    "agreement": cal.agreement.as_dict(),
                    "sensitivity": cal.sensitivity.as_dict(),
                    "specificity": cal.specificity.as_dict(),
                    "unscored": cal.unscored,
                },
                "stack": _stack_json(sres),
                "seconds": result.seconds,
                "evidence": [e.id for e in evidence],
                "ledger": recorded is not None,
            }
        )
        return
    console.print(
        f"target {result.target}, judge {result.judge}, {result.queries} queries, "
        f"{result.input_tokens + result.output_tokens} tokens, {result.seconds:.1f} s"
    )
    console.print(f"attack success rate (family x behaviour pairs): {result.overall}")
    for fam, r in result.by_family.items():
        tag = " (held out)" if fam in result.config.held_out else ""
        console.print(f"  {fam}{tag}: {r}")
    if result.held_out is not None:
        console.print(f"seen families: {result.seen}; held-out families: {result.held_out}")
    console.print(f"plain requests refused: {result.direct_refusal}")
    for b in result.best:
        console.print(f"best: {b.recipe} broke {b.successes}/{b.tries} behaviours")
    if result.calibration is not None:
        console.print(f"judge agreement with labels: {result.calibration.agreement}")
    if sres is not None:
        for layer in sres.layers:
            console.print(
                f"  layer {layer.name}: catch {layer.catch_rate} of {layer.reached} reaching "
                f"it; over-refusal {layer.over_refusal}"
            )
        rr = sres.ratio
        ci = (
            f"[{rr.lo:.2f}, {rr.hi:.2f}]"
            if rr.lo is not None and rr.hi is not None
            else "(no interval)"
        )
        ratio = f"{rr.value:.2f}" if rr.value is not None else "undefined"
        console.print(f"joint {sres.joint} vs independent {sres.product:.4f}: ratio {ratio} {ci}")
        console.print(
            f"over-refusal {sres.over_refusal}; added latency "
            f"{sres.added_latency * 1000:.2f} ms/prompt ({sres.added_fraction:.1%})"
        )
    console.print(f"log: {log}")
    if evidence:
        where = "recorded in the ledger" if recorded is not None else "not recorded (no workspace)"
        console.print(f"evidence {', '.join(e.id for e in evidence)}: {where}")


@app.command("behaviours")
def behaviours_(
    out: Annotated[Path, typer.Option("--out", "-o", help="JSONL file to write.")],
    seed: Annotated[int, typer.Option("--seed", help="Lab world seed.")] = 0,
    benign: Annotated[bool, typer.Option("--benign", help="Benign look-alikes instead.")] = False,
    n: Annotated[int | None, typer.Option("--n", help="At most N behaviours.")] = None,
) -> None:
    """Write the lab world's restricted behaviours (or benign look-alikes) as JSONL."""
    from safescale.redteam import lab_behaviours, lab_benign, write_behaviours

    out = check_output(out, "--out")
    check_seed(seed)
    if n is not None:
        check_count(n, "--n", lo=1, hi=MAX_N)
    rows = lab_benign(seed, n) if benign else lab_behaviours(seed, n)
    write_behaviours(out, rows)
    console.print(f"wrote {len(rows)} behaviours to {out}")


@app.command("attacks")
def attacks_() -> None:
    """List the attack families."""
    from safescale.redteam import ATTACKS

    for name in ATTACKS.names():
        console.print(name)


@app.command("calibrate")
def calibrate(
    labelled: Annotated[Path, typer.Argument(help="JSONL: behaviour, response, label, compound.")],
    judge: Annotated[str, typer.Option("--judge", help="lab or rubric.")] = "lab",
    judge_model: Annotated[str | None, typer.Option("--judge-model", help="Inspect model.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Lab world seed.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Measure a judge against labels: agreement, sensitivity, specificity, with intervals."""
    from safescale.redteam import calibrate_judge, load_labelled, make_judge

    check_seed(seed)
    if judge_model is not None:
        check_id(judge_model, "--judge-model", what="Inspect model")
    j = make_judge(judge, **({"seed": seed} if judge == "lab" else {"model": judge_model}))
    cal = calibrate_judge(j, load_labelled(labelled, j))
    if as_json:
        print_json(
            {
                "judge": cal.judge,
                "agreement": cal.agreement.as_dict(),
                "sensitivity": cal.sensitivity.as_dict(),
                "specificity": cal.specificity.as_dict(),
                "unscored": cal.unscored,
            }
        )
        return
    console.print(
        f"judge {cal.judge}: agreement {cal.agreement}; sensitivity {cal.sensitivity}; "
        f"specificity {cal.specificity}; unscored {cal.unscored}"
    )


@app.command("import-garak")
def import_garak(
    report: Annotated[Path, typer.Argument(help="garak's report.jsonl.")],
    model_id: Annotated[str, typer.Option("--model-id", help="Model id for the evidence.")],
    safeguard: Annotated[str, typer.Option("--safeguard", help="Safeguard id the tests speak to.")],
    policy: Annotated[
        str | None,
        typer.Option(
            "--policy",
            help="Policy id or file that defines the safeguard (default: the workspace's).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Turn a garak report into safeguard-test evidence."""
    from safescale.redteam import garak_evidence, policy_safeguard

    check_id(model_id, "--model-id")
    check_id(safeguard, "--safeguard")
    ws = _workspace()
    # As for `safeguard test`: --policy, else the workspace's default policy; with neither (no
    # workspace, nothing recorded) the safeguard is taken as given.
    ref = policy or (ws.config.default_policy if ws is not None else None)
    if ref is not None:
        from safescale.policy import load_policy

        policy_safeguard(load_policy(ref), safeguard, "--safeguard")
    evidence = garak_evidence(report, model_id=model_id, safeguard=safeguard)
    recorded = _record(ws, evidence, [report])
    if as_json:
        print_json(
            {
                "evidence": [
                    {
                        "id": e.id,
                        "metric": e.metric,
                        "value": e.value,
                        "n": e.n,
                        "interval": [e.interval.lo, e.interval.hi] if e.interval else None,
                        **{k: e.details.get(k) for k in ("probe", "detector")},
                    }
                    for e in evidence
                ],
                "ledger": recorded is not None,
            }
        )
        return
    for e in evidence:
        what = (
            f"{e.details.get('probe')} / {e.details.get('detector')}"
            if "probe" in e.details
            else "pooled"
        )
        lo, hi = (e.interval.lo, e.interval.hi) if e.interval else (0.0, 1.0)
        console.print(f"{what}: attack success {e.value:.3f} [{lo:.3f}, {hi:.3f}] (n={e.n})")
    if recorded is None:
        console.print("no workspace: nothing recorded (safescale init makes one)")
    else:
        console.print(
            f"recorded {len(recorded.new)} entries in the ledger"
            + (f"; {len(recorded.known)} already there (this report, model and safeguard)"
               if recorded.known else "")
        )  # fmt: skip
