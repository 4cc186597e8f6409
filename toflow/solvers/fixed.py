"""Fixed-step methods (RK4, Euler, and any registered step function), for debugging and
RNODE-style runs (RNODE: rk4, step 0.25).

The interval [t0, T] is cut into n = ceil((T - t0) / step_size) equal steps of
h = (T - t0) / n. Between two multiples of ``step_size`` the grid stretches with T and the
discrete solution is a smooth function of T; at each multiple n jumps by one, and the
solution jumps by the difference of the method's errors on the two grids.

The end time's gradient is the derivative of that discrete solution (between the jumps):
dL/dT = d/dT [a . y_n(T)] with a = a(T) held fixed, taken by autograd through the steps
re-run on a grid that carries T's gradient (t_i = t0 + i h, h = (T - t0) / n). F(y_n, T),
the continuous velocity, differs from it by the method's error, which at Euler's usual
steps changes its size and even its sign.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .base import SOLVERS, WithSensitivity
from .end_time_grad import Derivative, dloss_dT
from .integrators import FixedGrid
from .steps import euler_step, rk4_step


def _discrete_derivative(grid: FixedGrid, f, y0: Tensor, t0: float, t1: float, max_steps: int,
                         adjoint: Tensor) -> Tensor:
    with torch.enable_grad():
        T = torch.tensor(t1, dtype=torch.float64, device=y0.device, requires_grad=True)
        y1, _ = grid.integrate(f, y0, t0, T, None, max_steps)
        return torch.autograd.grad(dloss_dT(adjoint, y1), T)[0]  # d/dT [a . y_n(T)] = a . v(T)


@dataclass(frozen=True)
class FixedStep(WithSensitivity):
    """A fixed-grid solver; ``step_size`` is the largest step. Subclasses set ``step``."""

    step_size: float | None = None

    step = None  # the method's step function, step(f, t, h, y) -> y_new

    def __post_init__(self):
        super().__post_init__()
        if self.step_size is None:
            raise ValueError(f"solver.step_size: {self.name} needs a step size (e.g. 0.25 as RNODE)")
        if not self.step_size > 0:
            raise ValueError(f"solver.step_size: must be positive, got {self.step_size}")

    @property
    def integrator(self) -> FixedGrid:
        return FixedGrid(type(self).step, self.step_size)

    def end_time_derivative(self, f, y0: Tensor, t0: float, t1: float, y1: Tensor) -> Derivative:
        """a(T) -> d/dT [a . y_n(T)], the discrete solution's derivative (one more solve when called)."""
        return lambda adjoint: _discrete_derivative(self.integrator, f, y0, t0, t1, self.max_steps, adjoint)


def fixed_step_solver(name: str, step) -> type:
    """The solver class of the fixed-step method ``step(f, t, h, y) -> y_new``, called ``name``.

    ``SOLVERS.register(fixed_step_solver("midpoint", midpoint_step))`` makes it ``solver.name: midpoint``.
    """
    namespace = {"name": name, "step": staticmethod(step), "__doc__": step.__doc__, "__module__": step.__module__}
    return dataclass(frozen=True)(type(name, (FixedStep,), namespace))


@SOLVERS.register
@dataclass(frozen=True)
class RK4(FixedStep):
    """Classical fourth-order Runge-Kutta on a fixed grid (4 evaluations per step)."""

    name = "rk4"
    step = staticmethod(rk4_step)


@SOLVERS.register
@dataclass(frozen=True)
class Euler(FixedStep):
    """Explicit Euler on a fixed grid (1 evaluation per step)."""

    name = "euler"
    step = staticmethod(euler_step)
