"""Evaluations through Inspect AI: a fast local-model provider, log-likelihood scoring, evidence.

``run_suite`` evaluates a model (a local Hugging Face folder or any Inspect model string) on a
named suite, a JSONL task or an Inspect task file, and returns metrics with intervals and the
Evidence records; ``evidence_from_log`` turns an existing Inspect or lm-eval log into evidence.
"""

from safescale.evals._backend import (
    LL_BACKENDS,
    BatchScoring,
    GroupedScoring,
    LoglikelihoodBackend,
    Loglikelihoods,
    select_backend,
    supports_prefetch,
)
from safescale.evals._data import TaskData, load_jsonl_task
from safescale.evals._evidence import (
    RecordedEvidence,
    evidence_from_eval_log,
    evidence_from_lm_eval_results,
    evidence_from_log,
    evidence_id,
    find_workspace,
    model_dir_sha256,
    read_log_evidence,
    record_evidence,
)
from safescale.evals._identity import (
    ModelIdentity,
    ServedWeights,
    resolve_model_identity,
    served_context,
    served_weights,
)
from safescale.evals._lm import (
    MAX_BATCH,
    MAX_CONTEXT,
    ContextWarning,
    ContinuationScore,
    LocalLM,
    LocalModelConfig,
    LoglikelihoodGroup,
    ScoredText,
    encode_pair,
    encode_pairs,
    load_local_model,
    unload_local_models,
)
from safescale.evals._mc import (
    DEFAULT_TEMPLATE,
    MCPrediction,
    loglikelihood_choice,
    loglikelihood_scorer,
    mc_predict,
)
from safescale.evals._run import EvalRunResult, RunOptions, run_evals, run_suite
from safescale.evals._server import ModelServer
from safescale.evals._stats import MetricEstimate, wilson_interval
from safescale.evals._suites import SCORERS, SUITES, Suite, build_task, resolve_task

__all__ = [
    "DEFAULT_TEMPLATE",
    "LL_BACKENDS",
    "MAX_BATCH",
    "MAX_CONTEXT",
    "SCORERS",
    "SUITES",
    "BatchScoring",
    "ContextWarning",
    "ContinuationScore",
    "EvalRunResult",
    "GroupedScoring",
    "LocalLM",
    "LocalModelConfig",
    "LoglikelihoodBackend",
    "LoglikelihoodGroup",
    "Loglikelihoods",
    "MCPrediction",
    "MetricEstimate",
    "ModelIdentity",
    "ModelServer",
    "RecordedEvidence",
    "RunOptions",
    "ScoredText",
    "ServedWeights",
    "Suite",
    "TaskData",
    "build_task",
    "encode_pair",
    "encode_pairs",
    "evidence_from_eval_log",
    "evidence_from_lm_eval_results",
    "evidence_from_log",
    "evidence_id",
    "find_workspace",
    "load_jsonl_task",
    "load_local_model",
    "loglikelihood_choice",
    "loglikelihood_scorer",
    "mc_predict",
    "model_dir_sha256",
    "read_log_evidence",
    "record_evidence",
    "resolve_model_identity",
    "resolve_task",
    "run_evals",
    "run_suite",
    "select_backend",
    "served_context",
    "served_weights",
    "supports_prefetch",
    "unload_local_models",
    "wilson_interval",
]
