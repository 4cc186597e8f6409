"""Dormand-Prince 5(4) with adaptive steps: torchdyn's ``dopri5`` (FFJORD's default solver)."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Solver
from .neural_ode import Dopri5Step


@dataclass(frozen=True)
class Dopri5(Solver):
    """Adaptive dopri5, gradients by the adjoint (default, memory constant in the steps)
    or by autograd through the accepted steps. Six new field evaluations per step (FSAL)."""

    name = "dopri5"
    evaluations_per_step = 6

    def make_step(self):
        return Dopri5Step()
