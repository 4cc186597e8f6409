"""What every solver provides: tolerances, a step budget, and a ``NeuralODE`` to integrate with."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .neural_ode import SENSITIVITIES, FlowODE


class SolverError(RuntimeError):
    """An integration could not finish: too many steps or a step size that underflowed."""


@dataclass(frozen=True)
class Solver:
    """Settings shared by the solvers; subclasses name their step.

    ``test_atol``/``test_rtol`` are the evaluation tolerances (None: the training ones).
    ``max_steps`` bounds the accepted and rejected steps of one solve.
    """

    atol: float = 1e-5
    rtol: float = 1e-5
    sensitivity: str = "adjoint"
    test_atol: float | None = None
    test_rtol: float | None = None
    max_steps: int = 10000

    name = "solver"
    evaluations_per_step = 1

    def __post_init__(self):
        for key in ("atol", "rtol", "test_atol", "test_rtol"):
            value = getattr(self, key)
            if value is not None and not value > 0:
                raise ValueError(f"solver.{key}: must be positive, got {value}")
        if self.max_steps <= 0:
            raise ValueError(f"solver.max_steps: must be positive, got {self.max_steps}")
        if self.sensitivity not in SENSITIVITIES:
            raise ValueError(f"solver.sensitivity: '{self.sensitivity}' is not one of {', '.join(SENSITIVITIES)}")

    @property
    def max_evaluations(self) -> int:
        """Field evaluations one solve may use before it is stopped (two extra for the first step size)."""
        return self.evaluations_per_step * self.max_steps + 2

    def make_step(self) -> nn.Module:
        raise NotImplementedError

    def build(self, dynamics: nn.Module) -> FlowODE:
        return FlowODE(dynamics, self.make_step(), sensitivity=self.sensitivity, atol=self.atol, rtol=self.rtol,
                       eval_atol=self.test_atol, eval_rtol=self.test_rtol)
