"""Step-size control shared by the adaptive solvers (Hairer, Norsett & Wanner, sec. II.4).

The error of a step is measured in the RMS norm of ``error / (atol + rtol max(|y|, |y_new|))``
over the *controlled* part of the state only (a seminorm): the first ``controlled``
columns of the (batch, features) state. The log-density and regulariser integrals ride
in the remaining columns; they never feed back into the dynamics, so leaving them out
keeps them from shrinking the steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

SAFETY, MIN_FACTOR, MAX_FACTOR = 0.9, 0.2, 10.0


class SolverError(RuntimeError):
    """An integration could not finish: too many steps or a step size that underflowed."""


class NonFiniteError(SolverError):
    """The state or the field became NaN or infinite during an integration."""


@dataclass(frozen=True)
class Tolerance:
    """``atol``/``rtol`` and which columns the error norm sees (None: all)."""

    atol: float
    rtol: float
    controlled: int | None = None

    def ratio(self, error: Tensor, y: Tensor, y_new: Tensor) -> float:
        """RMS of the scaled error: a step is accepted when this is <= 1."""
        if self.controlled is not None:
            error, y, y_new = (v[:, : self.controlled] for v in (error, y, y_new))
        scale = self.atol + self.rtol * torch.maximum(y.abs(), y_new.abs())
        ratio = float((error / scale).detach().pow(2).mean().sqrt())
        if ratio != ratio or ratio == float("inf"):
            raise NonFiniteError("the state or the field became NaN or infinite")
        return ratio

    def rms(self, value: Tensor, y: Tensor) -> float:
        if self.controlled is not None:
            value, y = value[:, : self.controlled], y[:, : self.controlled]
        return float((value / (self.atol + self.rtol * y.abs())).detach().pow(2).mean().sqrt())


def initial_step(f, t0: float, y0: Tensor, f0: Tensor, error_order: int, tol: Tolerance, direction: float) -> float:
    """Hairer's starting step size (one extra field evaluation); positive."""
    from .steps import at

    d0, d1 = tol.rms(y0, y0), tol.rms(f0, y0)
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    f1 = f(at(t0 + direction * h0, y0), y0 + (direction * h0) * f0)
    d2 = tol.rms(f1 - f0, y0) / h0
    if max(d1, d2) <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / (error_order + 1))
    return min(100 * h0, h1)


def next_step(h: float, ratio: float, error_order: int, accepted: bool) -> float:
    """Scale |h| by safety * ratio^(-1/(q+1)), within [0.2, 10]; never grow after a rejection."""
    if ratio == 0.0:
        return h * MAX_FACTOR
    factor = min(MAX_FACTOR, max(MIN_FACTOR, SAFETY * ratio ** (-1.0 / (error_order + 1))))
    return h * (factor if accepted else min(1.0, factor))


class StepBudget:
    """Counts the steps of one solve; stops it past ``max_steps`` or on step-size underflow."""

    def __init__(self, max_steps: int, t0: float, t1: float, dtype: torch.dtype = torch.float64):
        self.max_steps, self.taken = max_steps, 0
        self.t0, self.t1 = t0, t1
        # below this |h| the field no longer sees t move (time is passed in the state's dtype)
        self.min_step = 4 * torch.finfo(dtype).eps * max(abs(t0), abs(t1), abs(t1 - t0))

    def spend(self, t: float, h: float) -> None:
        self.taken += 1
        if self.taken > self.max_steps:
            raise SolverError(f"more than {self.max_steps} steps (solver.max_steps) integrating "
                              f"[{self.t0:.4g}, {self.t1:.4g}], stopped at t={t:.6g}")
        if abs(h) < self.min_step:
            raise SolverError(f"step size underflow (h={h:.3g}) at t={t:.6g} integrating "
                              f"[{self.t0:.4g}, {self.t1:.4g}] after {self.taken} steps")
