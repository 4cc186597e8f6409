"""What every solver provides: settings, a gradient method, and a ``NeuralODE`` to run in.

A solver is a frozen set of settings plus two operations on a field ``f(t, y)``:
``solve`` (differentiable in y0, the parameters and the end time t1) and ``integrate``
(no gradients: sampling, evaluation). The CNF block never asks which solver it has.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .control import NonFiniteError, SolverError, Tolerance
from .sensitivity import solve_adjoint, solve_autograd

__all__ = ["NonFiniteError", "Solver", "SolverError"]


@dataclass(frozen=True)
class Solver:
    """Settings shared by the solvers.

    ``atol``/``rtol``: tolerances of adaptive solvers in training; ``test_atol``/``test_rtol``
    in evaluation (None: the training ones). ``max_steps``: steps one solve may take.
    ``step_size``: the largest step of fixed-step solvers. ``sensitivity``: ``adjoint`` or
    ``autograd`` for the solvers that offer both (``sensitivities``).
    """

    atol: float = 1e-5
    rtol: float = 1e-5
    sensitivity: str = "adjoint"
    test_atol: float | None = None
    test_rtol: float | None = None
    max_steps: int = 10000
    step_size: float | None = None

    name = "solver"
    sensitivities: tuple = ("adjoint", "autograd")

    def __post_init__(self):
        for key in ("atol", "rtol", "test_atol", "test_rtol", "step_size"):
            value = getattr(self, key)
            if value is not None and not value > 0:
                raise ValueError(f"solver.{key}: must be positive, got {value}")
        if self.max_steps <= 0:
            raise ValueError(f"solver.max_steps: must be positive, got {self.max_steps}")
        if self.sensitivities and self.sensitivity not in self.sensitivities:
            raise ValueError(f"solver.sensitivity: '{self.sensitivity}' is not one of {', '.join(self.sensitivities)} "
                             f"for {self.name}")

    @property
    def integrator(self):
        raise NotImplementedError

    def tolerance(self, training: bool, controlled: int | None = None) -> Tolerance:
        if training:
            return Tolerance(self.atol, self.rtol, controlled)
        return Tolerance(self.test_atol or self.atol, self.test_rtol or self.rtol, controlled)

    def solve(self, f, y0: Tensor, t0: Tensor, t1: Tensor, params: tuple, tol: Tolerance) -> Tensor:
        """y(t1) from y(t0) = y0, with gradients for y0, ``params`` and t1."""
        method = solve_adjoint if self.sensitivity == "adjoint" else solve_autograd
        return method(self.integrator, f, y0, t0, t1, params, tol, self.max_steps)

    def integrate(self, f, y0: Tensor, t0: float, t1: float, tol: Tolerance) -> Tensor:
        """y(t1) without gradients (t1 < t0 integrates backward in time)."""
        with torch.no_grad():
            return self.integrator.integrate(f, y0, t0, t1, tol, self.max_steps)[0]

    def build(self, dynamics: nn.Module):
        from .neural_ode import FlowODE

        return FlowODE(dynamics, self)
