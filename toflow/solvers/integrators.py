"""Integrators: loops of steps from t0 to t1 (either direction), with no gradient logic.

Each ``integrate(f, y0, t0, t1, tol, max_steps, record)`` returns ``(y1, f1)`` where
``f1 = f(t1, y1)`` if the method has it for free (dopri5's last stage), else None.
``record(t, h, y)`` is called with every accepted step's start, for the checkpointing
sensitivities. Time is carried in Python floats (double precision) whatever the state's
dtype; the last step lands exactly on t1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor

from .control import StepBudget, Tolerance, initial_step, next_step
from .steps import StepFunction, alf_step, at, dopri5_step

Record = Optional[Callable[[float, float, Tensor], None]]


def _direction(t0: float, t1: float) -> float:
    return 1.0 if t1 >= t0 else -1.0


# A step may be stretched this much to end the solve, as MATLAB's ode45 does by 10% (Shampine &
# Reichelt 1997): the sliver it would leave costs a whole step. 5% keeps a stretched step's expected
# error ratio at SAFETY^5 1.05^5 = 0.75 (10%: 0.95), so it is seldom rejected.
STRETCH = 1.05


def _clamp_to_end(t: float, h: float, t1: float, direction: float) -> tuple[float, bool]:
    """Land on t1 when it lies within ``STRETCH`` h (see above)."""
    remaining = t1 - t
    if direction * (STRETCH * h - remaining) >= 0:
        return remaining, True
    return h, False


def _adaptive_loop(f, attempt, y0: Tensor, carry: Tensor, t0: float, t1: float, error_order: int, tol: Tolerance,
                   max_steps: int, record: Record):
    """The accept/reject loop shared by the adaptive methods.

    ``attempt(t, h, y, carry) -> (y_new, carry_new, error)``, where ``carry`` is what a
    method hands from step to step: dopri5's last stage, the leapfrog's velocity. Both
    start as f(t0, y0), which seeds the first step size. Returns the end state and carry.
    """
    direction = _direction(t0, t1)
    budget = StepBudget(max_steps, t0, t1, y0.dtype)
    h = direction * initial_step(f, t0, y0, carry, error_order, tol, direction)
    t, y = t0, y0
    while t != t1:
        h, last = _clamp_to_end(t, h, t1, direction)
        budget.spend(t, h)
        y_new, carry_new, error = attempt(t, h, y, carry)
        ratio = tol.ratio(error, y, y_new)
        accepted = ratio <= 1.0
        if accepted:
            if record is not None:
                record(t, h, y)
            t, y, carry = (t1 if last else t + h), y_new, carry_new
        h = direction * next_step(abs(h), ratio, error_order, accepted)
    return y, carry


@dataclass(frozen=True)
class AdaptiveDopri5:
    """Dormand-Prince 5(4) with error control; 6 new evaluations per step (FSAL)."""

    error_order = 4
    adaptive = True

    def integrate(self, f, y0: Tensor, t0: float, t1: float, tol: Tolerance, max_steps: int, record: Record = None):
        if t1 == t0:
            return y0, None
        k1 = f(at(t0, y0), y0)

        def attempt(t, h, y, k):
            y_new, error, k7 = dopri5_step(f, t, h, y, k)
            return y_new, k7, error

        return _adaptive_loop(f, attempt, y0, k1, t0, t1, self.error_order, tol, max_steps, record)


@dataclass(frozen=True)
class FixedGrid:
    """A fixed-step method, given by its step function, on n = ceil(|t1 - t0| / step_size)
    equal steps of h = (t1 - t0) / n.

    ``t1`` may be a 0-dim tensor: the grid then carries its gradient (t_i = t0 + i h with
    h = (t1 - t0) / n), so the solution is differentiated in T as the discrete map it is.
    """

    step: StepFunction  # step(f, t, h, y) -> y_new
    step_size: float
    adaptive = False

    def steps(self, t0: float, t1: float) -> tuple[int, float]:
        n = max(1, math.ceil(abs(t1 - t0) / self.step_size - 1e-9))
        return n, (t1 - t0) / n

    def integrate(self, f, y0: Tensor, t0: float, t1, tol: Tolerance, max_steps: int, record: Record = None):
        end = float(t1.detach()) if torch.is_tensor(t1) else t1
        if end == t0:
            return y0, None
        n, h_value = self.steps(t0, end)
        h = (t1 - t0) / n  # h_value, or a tensor that carries T's gradient
        budget = StepBudget(max_steps, t0, end, y0.dtype)
        step, y = self.step, y0
        for i in range(n):
            t = t0 + i * h
            budget.spend(t0 + i * h_value, h_value)
            if record is not None:
                record(t, h, y)
            y = step(f, t, h, y)
        return y, None


@dataclass(frozen=True)
class AdaptiveLeapfrog:
    """MALI's asynchronous leapfrog over (y, v), v(t0) = f(t0, y0), with error control
    (estimate h/2 (u - v), first order); one evaluation per step."""

    error_order = 1
    adaptive = True

    def integrate_pair(self, f, y0: Tensor, v0: Tensor, t0: float, t1: float, tol: Tolerance, max_steps: int,
                       record: Record = None):
        def attempt(t, h, y, v):
            return alf_step(f, t, h, y, v)

        return _adaptive_loop(f, attempt, y0, v0, t0, t1, self.error_order, tol, max_steps, record)

    def integrate(self, f, y0: Tensor, t0: float, t1: float, tol: Tolerance, max_steps: int, record: Record = None):
        if t1 == t0:
            return y0, None
        y, _ = self.integrate_pair(f, y0, f(at(t0, y0), y0), t0, t1, tol, max_steps, record)
        return y, None
