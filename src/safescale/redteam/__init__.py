"""Red-teaming and layered safeguards: attacks, judges, campaigns, stacks, evidence.

``run_campaign`` runs attack families (plugins in :data:`ATTACKS`) against behaviours on a
target (a local folder, any Inspect model, or a :class:`StackTarget` built from a stack file),
judges every attempt (:data:`JUDGES`: the lab's ground truth, or a rubric on any Inspect
model), and returns attack success rates with Wilson intervals; ``write_campaign_log`` records
every attempt as an Inspect log and ``campaign_evidence`` binds the result to a policy's
safeguard criteria. ``stack_result`` measures each layer of a stack (the Swiss cheese).
"""

from safescale.redteam._attacks import (
    ATTACKS,
    AUGMENTATIONS,
    TEMPLATES,
    Attack,
    AttackContext,
    AttackRun,
    Feedback,
    Proposal,
    attack_families,
    augment,
    framing,
)
from safescale.redteam._behaviours import (
    Behaviour,
    lab_behaviours,
    lab_benign,
    load_behaviours,
    write_behaviours,
)
from safescale.redteam._campaign import (
    DIRECT,
    MAX_CAMPAIGN_QUERIES,
    Attempt,
    BestAttack,
    CampaignConfig,
    CampaignResult,
    check_campaign_size,
    most_behaviours,
    planned_queries,
    run_campaign,
    summarise,
)
from safescale.redteam._evidence import (
    CriterionRule,
    campaign_evidence,
    criterion_rule,
    policy_safeguard,
)
from safescale.redteam._garak import GarakResult, garak_evidence, read_garak_report
from safescale.redteam._gcg import GCG, GCGSearch
from safescale.redteam._judges import (
    JUDGES,
    Judge,
    JudgeCalibration,
    LabJudge,
    RubricJudge,
    Verdict,
    calibrate_judge,
    is_refusal,
    load_labelled,
    make_judge,
)
from safescale.redteam._layers import CLASSIFIERS, Classifier, make_classifier
from safescale.redteam._log import write_campaign_log
from safescale.redteam._pair import PAIR, parse_attacker
from safescale.redteam._stack import (
    LayerResult,
    StackResult,
    StackSpec,
    StackTarget,
    load_stack,
    locate_stack_problem,
    stack_plot,
    stack_result,
)
from safescale.redteam._stats import Rate, Ratio, independence_ratio, rate
from safescale.redteam._targets import Generation, InspectTarget, LocalTarget, Target, make_target

__all__ = [
    "ATTACKS",
    "AUGMENTATIONS",
    "CLASSIFIERS",
    "DIRECT",
    "GCG",
    "JUDGES",
    "MAX_CAMPAIGN_QUERIES",
    "PAIR",
    "TEMPLATES",
    "Attack",
    "AttackContext",
    "AttackRun",
    "Attempt",
    "Behaviour",
    "BestAttack",
    "CampaignConfig",
    "CampaignResult",
    "Classifier",
    "CriterionRule",
    "Feedback",
    "GCGSearch",
    "GarakResult",
    "Generation",
    "InspectTarget",
    "Judge",
    "JudgeCalibration",
    "LabJudge",
    "LayerResult",
    "LocalTarget",
    "Proposal",
    "Rate",
    "Ratio",
    "RubricJudge",
    "StackResult",
    "StackSpec",
    "StackTarget",
    "Target",
    "Verdict",
    "attack_families",
    "augment",
    "calibrate_judge",
    "campaign_evidence",
    "check_campaign_size",
    "criterion_rule",
    "framing",
    "garak_evidence",
    "independence_ratio",
    "is_refusal",
    "lab_behaviours",
    "lab_benign",
    "load_behaviours",
    "load_labelled",
    "load_stack",
    "locate_stack_problem",
    "make_classifier",
    "make_judge",
    "make_target",
    "most_behaviours",
    "parse_attacker",
    "planned_queries",
    "policy_safeguard",
    "rate",
    "read_garak_report",
    "run_campaign",
    "stack_plot",
    "stack_result",
    "summarise",
    "write_behaviours",
    "write_campaign_log",
]
