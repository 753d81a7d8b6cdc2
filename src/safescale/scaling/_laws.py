"""Scaling-law forms: sums of power-law terms, registered by name.

Every built-in form is ``L = sum_k coef_k * x_k ** (-exponent_k)`` with an optional constant
term. In log space, with ``c_k = log coef_k`` and ``v_k = log x_k``, each term is linear in the
parameters, ``u_k = c_k - s_k * v_k``, and the prediction is ``log L = logsumexp_k u_k``. This
is the parameterisation of Hoffmann et al. (2022), "Training Compute-Optimal Large Language
Models", Approach 3 (``log L = LSE(a - alpha log N, b - beta log D, e)``), and it lets one
vectorised objective serve every form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from safescale._registry import Registry

Variable = Literal["N", "D", "C"]
"""Model parameters ``N``, training tokens ``D``, training compute ``C`` (FLOP)."""

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Term:
    """One power-law term ``coef * x ** (-exponent)``, or a constant when ``variable`` is None."""

    coef: str
    """Name of the coefficient (``A``); the fit works with its log (``a``)."""
    exponent: str | None = None
    """Name of the exponent (``alpha``); None for a constant term."""
    variable: Variable | None = None
    """Which input the term decays in; None for a constant term."""


@dataclass(frozen=True)
class LawForm:
    """A scaling-law form: its terms, parameter order and the starting grid for the fit."""

    name: str
    """Registry name (``chinchilla``)."""
    description: str
    """One line shown in help and reports."""
    terms: tuple[Term, ...]
    """The power-law terms summed to give the loss."""

    def __post_init__(self) -> None:
        if not self.terms:
            raise ValueError("a law form needs at least one term")
        for t in self.terms:
            if (t.exponent is None) != (t.variable is None):
                raise ValueError(f"term {t.coef}: give both exponent and variable, or neither")

    @property
    def coef_names(self) -> tuple[str, ...]:
        """Coefficient names, in parameter order."""
        return tuple(t.coef for t in self.terms)

    @property
    def exponent_names(self) -> tuple[str, ...]:
        """Exponent names, in parameter order (after the coefficients)."""
        return tuple(t.exponent for t in self.terms if t.exponent is not None)

    @property
    def param_names(self) -> tuple[str, ...]:
        """All parameters: coefficients (fitted as logs) then exponents."""
        return self.coef_names + self.exponent_names

    @property
    def variables(self) -> tuple[Variable, ...]:
        """Inputs the law depends on, in the order ``predict`` takes them."""
        seen: list[Variable] = []
        for t in self.terms:
            if t.variable is not None and t.variable not in seen:
                seen.append(t.variable)
        return tuple(seen)

    @property
    def n_params(self) -> int:
        """Number of free parameters."""
        return len(self.param_names)

    def design(self, logs: FloatArray) -> FloatArray:
        """The linear map from parameters to term values, ``u = G @ theta``.

        Args:
            logs: ``(n, len(variables))`` natural logs of the inputs.

        Returns:
            ``G`` of shape ``(n, K, P)``: ``u[i, k] = G[i, k] @ theta`` for K terms, P params.
        """
        n = logs.shape[0]
        g = np.zeros((n, len(self.terms), self.n_params))
        n_coef = len(self.terms)
        exponent_index = {name: n_coef + j for j, name in enumerate(self.exponent_names)}
        for k, t in enumerate(self.terms):
            g[:, k, k] = 1.0
            if t.exponent is not None and t.variable is not None:
                g[:, k, exponent_index[t.exponent]] = -logs[:, self.variables.index(t.variable)]
        return g

    def grid(self) -> FloatArray:
        """Starting points of Hoffmann et al. (2022), Approach 3, in log space.

        Constant terms ``e`` in {-1, -0.5, ..., 1}, decaying coefficients ``a, b`` in
        {0, 5, ..., 25}, exponents in {0, 0.5, ..., 2}: 4,500 starts for Chinchilla.

        Returns:
            ``(S, P)`` array of starting parameter vectors.
        """
        axes = []
        for t in self.terms:
            axes.append(np.arange(-1.0, 1.01, 0.5) if t.exponent is None else np.arange(0.0, 26, 5))
        axes += [np.arange(0.0, 2.01, 0.5)] * len(self.exponent_names)
        mesh = np.meshgrid(*axes, indexing="ij")
        return np.stack([m.ravel() for m in mesh], axis=1)

    def to_natural(self, theta: FloatArray) -> dict[str, float]:
        """Parameters on their natural scale (``E``, ``A``, ``alpha``) from a log-space vector."""
        out: dict[str, float] = {}
        for j, name in enumerate(self.param_names):
            out[name] = float(np.exp(theta[j])) if j < len(self.terms) else float(theta[j])
        return out

    def from_natural(self, params: dict[str, float]) -> FloatArray:
        """Inverse of :meth:`to_natural`."""
        n_coef = len(self.terms)
        return np.array(
            [
                np.log(params[name]) if j < n_coef else params[name]
                for j, name in enumerate(self.param_names)
            ]
        )

    def log_predict(self, theta: FloatArray, logs: FloatArray) -> FloatArray:
        """``log L`` at inputs whose natural logs are ``logs`` (``(n, V)``); theta: ``(..., P)``."""
        u = np.einsum("ikj,...j->...ik", self.design(logs), theta)
        top = u.max(axis=-1, keepdims=True)
        return (top + np.log(np.exp(u - top).sum(axis=-1, keepdims=True)))[..., 0]


LAWS: Registry[LawForm] = Registry("law")
"""Every law form by name; outside packages add forms through the ``safescale.law`` group."""

_E = Term("E")
for _form in (
    LawForm(
        "chinchilla",
        "L(N, D) = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022)",
        (_E, Term("A", "alpha", "N"), Term("B", "beta", "D")),
    ),
    LawForm("compute", "L(C) = E + A/C^alpha", (_E, Term("A", "alpha", "C"))),
    LawForm(
        "compute-broken",
        "L(C) = E + A/C^alpha + B/C^beta: a smoothly broken power law in C (the slope bends "
        "from the steeper exponent to the shallower one)",
        (_E, Term("A", "alpha", "C"), Term("B", "beta", "C")),
    ),
    LawForm(
        "kaplan-nd",
        "L(N, D) = A/N^alpha + B/D^beta: no irreducible term (Chinchilla without E)",
        (Term("A", "alpha", "N"), Term("B", "beta", "D")),
    ),
    LawForm("kaplan-n", "L(N) = A/N^alpha (Kaplan et al. 2020)", (Term("A", "alpha", "N"),)),
    LawForm("kaplan-d", "L(D) = A/D^alpha (Kaplan et al. 2020)", (Term("A", "alpha", "D"),)),
    LawForm("kaplan-c", "L(C) = A/C^alpha (Kaplan et al. 2020)", (Term("A", "alpha", "C"),)),
):
    LAWS.add(_form.name, _form)
