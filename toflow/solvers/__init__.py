"""ODE solvers. Each gives gradients for the weights, the initial state and the end time T.

``solver.name`` picks one from :data:`SOLVERS`; the CNF block does not know which runs.

| name   | steps                  | gradient                                  |
|--------|------------------------|-------------------------------------------|
| dopri5 | adaptive, 5(4)         | adjoint (default) or autograd             |
| aca    | adaptive dopri5        | adaptive checkpoint adjoint               |
| mali   | adaptive async leapfrog| MALI: exact inverse, constant memory      |
| rk4    | fixed, ``step_size``   | autograd or adjoint                       |
| euler  | fixed, ``step_size``   | autograd or adjoint                       |
"""

from __future__ import annotations

from .aca import ACA
from .base import Solver, SolverError
from .control import NonFiniteError, Tolerance
from .dopri5 import Dopri5
from .fixed import RK4, Euler
from .mali import MALI
from .neural_ode import FlowODE

SOLVERS = {cls.name: cls for cls in (Dopri5, ACA, MALI, RK4, Euler)}


def build_solver(name: str = "dopri5", **settings) -> Solver:
    """The solver registered as ``name``, with ``atol``, ``rtol``, ``sensitivity``, ... ."""
    try:
        cls = SOLVERS[name]
    except KeyError:
        raise ValueError(f"solver.name: '{name}' is not one of {', '.join(SOLVERS)}") from None
    return cls(**settings)


__all__ = ["ACA", "Dopri5", "Euler", "FlowODE", "MALI", "NonFiniteError", "RK4", "SOLVERS", "Solver", "SolverError",
           "Tolerance", "build_solver"]
