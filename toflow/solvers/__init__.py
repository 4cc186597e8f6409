"""ODE solvers. Each gives gradients for the weights, the initial state and the end time T.

``solver.name`` picks one from :data:`SOLVERS`; the CNF block does not know which runs.

| name   | steps                  | gradient                                  |
|--------|------------------------|-------------------------------------------|
| dopri5 | adaptive, 5(4)         | adjoint (default) or autograd             |
| aca    | adaptive dopri5        | adaptive checkpoint adjoint               |
| mali   | adaptive async leapfrog| MALI: exact inverse, constant memory      |
| rk4    | fixed, ``step_size``   | adjoint (default) or autograd             |
| euler  | fixed, ``step_size``   | adjoint (default) or autograd             |

A new solver is a :class:`Solver` subclass passed to :func:`register_solver`; a new
fixed-step method is one step function passed to :func:`register_fixed_step`.
"""

from __future__ import annotations

import dataclasses

from .aca import ACA
from .base import Solver, SolverError, WithSensitivity
from .control import NonFiniteError, Tolerance
from .dopri5 import Dopri5
from .end_time_grad import EndTimeRecord
from .fixed import RK4, Euler, FixedStep, fixed_step_solver
from .mali import MALI
from .neural_ode import FlowODE

SOLVERS: dict[str, type] = {}


def register_solver(cls: type) -> type:
    """Make the solver class ``cls`` available as ``solver.name: <cls.name>`` (usable as a decorator)."""
    SOLVERS[cls.name] = cls
    return cls


def register_fixed_step(name: str, step) -> type:
    """Register the fixed-step method ``step(f, t, h, y) -> y_new`` as the solver ``name``."""
    return register_solver(fixed_step_solver(name, step))


for _cls in (Dopri5, ACA, MALI, RK4, Euler):
    register_solver(_cls)


def solver_settings(name: str) -> tuple:
    """The keyword arguments the solver ``name`` takes."""
    return tuple(f.name for f in dataclasses.fields(SOLVERS[name]))


def build_solver(name: str = "dopri5", **settings) -> Solver:
    """The solver registered as ``name`` with its own ``settings`` (``atol``, ``rtol``, ``sensitivity``,
    ...); a setting given as None takes the solver's default, one it does not take is refused."""
    if name not in SOLVERS:
        raise ValueError(f"solver.name: '{name}' is not one of {', '.join(SOLVERS)}")
    settings = {key: value for key, value in settings.items() if value is not None}
    for key in settings:
        if key not in solver_settings(name):
            raise ValueError(f"solver.{key}: not used by {name} (it takes {', '.join(solver_settings(name))}; "
                             f"leave solver.{key} null)")
    return SOLVERS[name](**settings)


__all__ = ["ACA", "Dopri5", "EndTimeRecord", "Euler", "FixedStep", "FlowODE", "MALI", "NonFiniteError", "RK4",
           "SOLVERS", "Solver", "SolverError", "Tolerance", "WithSensitivity", "build_solver", "register_fixed_step",
           "register_solver", "solver_settings"]
