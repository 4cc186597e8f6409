"""Dormand-Prince 5(4) with adaptive steps (FFJORD's default solver)."""

from __future__ import annotations

from dataclasses import dataclass

from .aca import solve_aca
from .base import SOLVERS, WithSensitivity
from .integrators import AdaptiveDopri5


@SOLVERS.register
@dataclass(frozen=True)
class Dopri5(WithSensitivity):
    """Adaptive dopri5; gradients by the adjoint (default: memory constant in the steps),
    by autograd through the accepted steps, or ``auto`` (autograd, ACA or the adjoint, as
    memory allows). Six new evaluations per step (FSAL)."""

    name = "dopri5"
    integrator_type = AdaptiveDopri5
    checkpointed = staticmethod(solve_aca)
