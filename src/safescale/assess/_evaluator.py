"""The evaluator the assessment loop uses by default: run the policy's suites through Inspect."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from safescale.ledger import Workspace
from safescale.policy import Evaluation, Evidence, ModelRecord


class SuiteEvaluator:
    """Runs an evaluation's ``suite`` on a model and stores the Inspect log.

    The model is reached through its record's ``weights_ref``: a local weights folder, or an
    Inspect model string for a model behind an endpoint (``openai-api-completions/local/m``
    against vLLM or ``safescale serve-model``). For an endpoint, the provider's arguments
    (``base_url``, ``api_key``) come from ``model_args`` (over the record's
    ``extra["model_args"]``), and log-likelihood suites need the model's ``tokenizer`` folder
    (or the record's ``extra["tokenizer"]``). The evidence names the record's model id either way.
    Models without ``weights_ref``, and evaluations without a suite, produce no evidence here:
    the assessment then relies on recorded evidence (``safescale eval import``).
    """

    def __init__(
        self,
        *,
        data_dir: Path | None = None,
        log_dir: Path | None = None,
        limit: int | None = None,
        tokenizer: str | None = None,
        model_args: Mapping[str, Any] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.limit = limit
        self.tokenizer = tokenizer
        self.model_args = dict(model_args or {})

    def __call__(self, ws: Workspace, model: ModelRecord, spec: Evaluation) -> Sequence[Evidence]:
        if spec.suite is None or model.weights_ref is None:
            return []
        from safescale.evals import run_suite
        from safescale.evals._identity import looks_like_path

        ref = model.weights_ref
        args: dict[str, Any] = {}
        tokenizer: str | None = None
        if Path(ref).is_dir():
            target = str(Path(ref))
        elif "/" in ref and not looks_like_path(ref):
            target = ref
            recorded = model.extra.get("model_args")
            args = {**(recorded if isinstance(recorded, dict) else {}), **self.model_args}
            tok = model.extra.get("tokenizer")
            tokenizer = self.tokenizer or (tok if isinstance(tok, str) else None)
        else:
            return []
        corpus = model.extra.get("corpus")
        result = run_suite(
            spec.suite,
            target,
            limit=self.limit,
            log_dir=self.log_dir or ws.root / "logs",
            data_dir=self.data_dir or (Path(corpus) if isinstance(corpus, str) else None),
            model_id=model.id,
            model_args=args,
            tokenizer=tokenizer,
        )
        for path in result.files:
            ws.add_artifact(path)
        return list(result.evidence)
