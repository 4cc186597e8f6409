"""ODE solvers. Each gives gradients for the weights, the initial state and the end time T.

``solver.name`` picks one from the registry :data:`SOLVERS`; the CNF block does not know which
runs.

| name   | steps                   | gradient (``solver.sensitivity``)                     |
|--------|-------------------------|-------------------------------------------------------|
| dopri5 | adaptive, 5(4)          | adjoint (default), autograd, or auto (autograd, ACA or adjoint) |
| aca    | adaptive dopri5         | adaptive checkpoint adjoint (its own)                 |
| mali   | adaptive async leapfrog | MALI: exact inverse, constant memory (its own)        |
| rk4    | fixed, ``step_size``    | adjoint (default), autograd, or auto                  |
| euler  | fixed, ``step_size``    | adjoint (default), autograd, or auto                  |

A new solver is a :class:`Solver` subclass and one ``SOLVERS.register`` line; a new fixed-step
method is one step function, ``SOLVERS.register(fixed_step_solver("midpoint", midpoint_step))``.
Build one from settings with ``SOLVERS.build("mali", atol=1e-5, rtol=1e-5)``.
"""

from __future__ import annotations

from .aca import ACA
from .base import SOLVERS, Solver, SolverError, WithSensitivity
from .control import NonFiniteError, Tolerance
from .dopri5 import Dopri5
from .end_time_grad import EndTimeRecord
from .fixed import RK4, Euler, FixedStep, fixed_step_solver
from .mali import MALI

__all__ = ["ACA", "Dopri5", "EndTimeRecord", "Euler", "FixedStep", "FlowODE", "MALI", "NonFiniteError", "RK4",
           "SOLVERS", "Solver", "SolverError", "Tolerance", "WithSensitivity", "fixed_step_solver"]


def __getattr__(name: str):
    if name == "FlowODE":  # torchdyn's model layer imports Lightning: loaded where a flow first solves
        from .neural_ode import FlowODE

        return FlowODE
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
