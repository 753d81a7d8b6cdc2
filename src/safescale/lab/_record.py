"""Training runs into a workspace ledger, with their lineage and corpus, each once."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from safescale.ledger import Workspace
from safescale.policy import ModelRecord


def record_models(
    ws: Workspace,
    trained: Sequence[ModelRecord],
    *,
    lineage: str | None = None,
    corpus: Path | None = None,
) -> list[ModelRecord]:
    """Append ``trained`` runs (``TrainResult.model_record``) to the ledger; return what it holds.

    A run whose id is already recorded with the same weights hash is not appended again (re-
    running a ladder that resumed from its checkpoints records nothing new); the record already
    in the ledger is returned for it. ``lineage`` names the model family for the compute
    triggers (a fine-tuned model without one inherits its parent's); ``corpus`` is noted in
    ``extra``. The loss curve stays in the model folder: the ledger keeps the summary.
    """
    known = {m.id: m for m in ws.models()}
    records, new = [], []
    for r in trained:
        extra = dict(r.extra)
        if lineage:
            extra["lineage"] = lineage
        if corpus is not None:
            extra["corpus"] = str(Path(corpus).resolve())
        extra.pop("loss_curve", None)
        rec = r.model_copy(update={"extra": extra})
        old = known.get(rec.id)
        if old is not None and old.weights_sha256 == rec.weights_sha256:
            records.append(old)
            continue
        new.append(rec)
        records.append(rec)
    if new:
        ws.append_many(new)  # one signed transaction for the whole batch
    return records
