"""ODE solvers. Each gives gradients for the weights, the initial state and the end time T.

``solver.name`` picks one from :data:`SOLVERS`; the CNF block does not know which runs.
"""

from __future__ import annotations

from .base import Solver, SolverError
from .dopri5 import Dopri5
from .neural_ode import FlowODE

SOLVERS = {"dopri5": Dopri5}


def build_solver(name: str = "dopri5", **settings) -> Solver:
    """The solver registered as ``name``, with ``atol``, ``rtol``, ``sensitivity``, ... ."""
    try:
        cls = SOLVERS[name]
    except KeyError:
        raise ValueError(f"solver.name: '{name}' is not one of {', '.join(SOLVERS)}") from None
    return cls(**settings)


__all__ = ["Solver", "SolverError", "Dopri5", "FlowODE", "SOLVERS", "build_solver"]
