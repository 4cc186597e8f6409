"""Step-size control shared by the adaptive solvers (Hairer, Norsett & Wanner, sec. II.4).

A step's error is scaled componentwise, ``e_i / (atol + rtol max(|y_i|, |y_new_i|))``, and
reduced to one ratio by a *mixed* norm over the column groups of the (batch, features) state:

- the first ``controlled`` columns (a flow's z, the part that feeds back into the dynamics)
  form one group, measured by their RMS;
- each column after them (the log-density, each regulariser integral) is a group of its own
  when ``integrals`` is set, and left out of the norm otherwise (a seminorm);
- ``per_sample``: each sample's ratio is the largest of its groups', and the step's ratio the
  largest over samples, so every sample's error is bounded by the tolerance, however many
  easy samples share its batch; otherwise each group's RMS runs over the whole batch and the
  ratio is the largest group's (torchdiffeq's mixed norm for tuple states).

A group of its own keeps the log-density's error at the tolerance: inside one RMS with the
D columns of z it could grow sqrt(D + 1) times larger before a step is rejected.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import NonFiniteError, SolverError
from .steps import at

SAFETY, MIN_FACTOR, MAX_FACTOR = 0.9, 0.2, 10.0


@dataclass(frozen=True)
class Tolerance:
    """``atol``/``rtol`` and the norm that measures a step's error against them (see the module).

    ``controlled``: the leading columns that feed back into the dynamics (None: the whole
    state is one group); ``integrals``: the columns after them are in the norm, each a group of
    its own; ``per_sample``: the norm bounds every sample's error, not the batch's RMS.
    """

    atol: float
    rtol: float
    controlled: int | None = None
    integrals: bool = False
    per_sample: bool = False

    def norm(self, scaled: Tensor) -> float:
        """The mixed norm of an already scaled error (or value), a Python float."""
        rows = scaled.detach().reshape(scaled.shape[0], -1) if scaled.dim() > 1 else scaled.detach()[None]
        if self.controlled is None:
            groups = [rows]
        else:
            groups = [rows[:, : self.controlled]] + ([rows[:, self.controlled:]] if self.integrals else [])
        if self.per_sample:  # each sample's RMS over z, each integral's own size; the largest over samples
            parts = [groups[0].pow(2).mean(1, keepdim=True).sqrt(), *(g.abs() for g in groups[1:])]
        else:  # each group's RMS over the batch, each integral column alone
            parts = [groups[0].pow(2).mean().sqrt()[None], *(g.pow(2).mean(0).sqrt() for g in groups[1:])]
        return float(torch.cat([part.reshape(-1) for part in parts if part.numel()]).max())

    def ratio(self, error: Tensor, y: Tensor, y_new: Tensor) -> float:
        """The norm of the scaled error: a step is accepted when this is <= 1."""
        ratio = self.norm(error / (self.atol + self.rtol * torch.maximum(y.abs(), y_new.abs())))
        if ratio != ratio or ratio == float("inf"):
            raise NonFiniteError("the state or the field became NaN or infinite")
        return ratio

    def rms(self, value: Tensor, y: Tensor) -> float:
        """The same norm of ``value`` scaled by ``y`` (for the starting step size)."""
        return self.norm(value / (self.atol + self.rtol * y.abs()))


def initial_step(f, t0: float, y0: Tensor, f0: Tensor, error_order: int, tol: Tolerance, direction: float) -> float:
    """Hairer's starting step size (one extra field evaluation); positive."""
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
