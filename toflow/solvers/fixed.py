"""Fixed-step RK4 and Euler, for debugging and RNODE-style runs (RNODE: rk4, step 0.25).

The interval [t0, T] is cut into n = ceil(|T - t0| / step_size) equal steps, so a
trainable T moves the grid smoothly.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import Solver
from .integrators import FixedGrid


@dataclass(frozen=True)
class _FixedStep(Solver):
    def __post_init__(self):
        super().__post_init__()
        if self.step_size is None:
            raise ValueError(f"solver.step_size: {self.name} needs a step size (e.g. 0.25 as RNODE)")

    @property
    def integrator(self):
        return FixedGrid(self.name, self.step_size)


@dataclass(frozen=True)
class RK4(_FixedStep):
    """Classical fourth-order Runge-Kutta on a fixed grid (4 evaluations per step)."""

    name = "rk4"


@dataclass(frozen=True)
class Euler(_FixedStep):
    """Explicit Euler on a fixed grid (1 evaluation per step)."""

    name = "euler"
