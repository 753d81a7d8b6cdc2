"""The evaluator the assessment loop uses by default: run the policy's suites through Inspect."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from safescale.ledger import Workspace
from safescale.policy import Evaluation, Evidence, ModelRecord


class SuiteEvaluator:
    """Runs an evaluation's ``suite`` on a model's local weights and stores the Inspect log.

    Models without a local weights folder, and evaluations without a suite, produce no
    evidence here: the assessment then relies on recorded evidence (``safescale eval import``).
    """

    def __init__(
        self,
        *,
        data_dir: Path | None = None,
        log_dir: Path | None = None,
        limit: int | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.limit = limit

    def __call__(self, ws: Workspace, model: ModelRecord, spec: Evaluation) -> Sequence[Evidence]:
        if spec.suite is None or model.weights_ref is None:
            return []
        weights = Path(model.weights_ref)
        if not weights.is_dir():
            return []
        from safescale.evals import run_suite

        corpus = model.extra.get("corpus")
        result = run_suite(
            spec.suite,
            str(weights),
            limit=self.limit,
            log_dir=self.log_dir or ws.root / "logs",
            data_dir=self.data_dir or (Path(corpus) if isinstance(corpus, str) else None),
            model_id=model.id,
        )
        for path in result.files:
            ws.add_artifact(path)
        return list(result.evidence)
