"""What every solver provides: settings, a gradient method, the end-time derivative, and a
``NeuralODE`` to run in.

A solver is a frozen set of settings (its keyword arguments, each checked where it is
given) plus two operations on a field ``f(t, y)``: ``solve`` (differentiable in y0, the
parameters and the end time t1) and ``integrate`` (no gradients: sampling, evaluation).
The CNF block never asks which solver it has.

The settings every solver takes are the tolerances, ``control`` and ``max_steps`` (a fixed
grid, like torchdiffeq's, takes the tolerances and does not use them); ``sensitivity`` and
``step_size`` belong to the solvers that have them, and :func:`toflow.solvers.build_solver`
refuses a setting the chosen solver does not take.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Callable

import torch
from torch import Tensor, nn

from ..registry import Registry
from . import auto
from .control import NonFiniteError, SolverError, Tolerance
from .end_time_grad import Derivative, EndTimeRecord, along, attach_end_time, dloss_dT, field_at_end
from .sensitivity import solve_adjoint, solve_autograd
from .steps import Field

__all__ = ["CONTROLS", "NonFiniteError", "SOLVERS", "Solver", "SolverError", "WithSensitivity"]

SOLVERS = Registry("solver.name", settings="solver")  # every solver, by ``solver.name``

CONTROLS = ("all", "state")  # what the training error norm sees: the integrals too, or the state alone


def _continuous_derivative(f, t1: float, y1: Tensor, adjoint: Tensor) -> Tensor:
    return dloss_dT(adjoint, field_at_end(f, t1, y1))


@dataclass(frozen=True)
class Solver:
    """Settings shared by the solvers, and the solve every solver runs (see :meth:`solve`).

    ``atol``/``rtol``: tolerances of adaptive solvers in training; ``test_atol``/``test_rtol``
    in evaluation (None: the training ones). ``control``: what the training error norm sees,
    ``all`` (the state and the integrals riding with it: a flow's log-density and regulariser
    integrals) or ``state`` (only the columns that feed back into the dynamics). Evaluation
    always controls all of them, and every sample's error on its own
    (:class:`~toflow.solvers.control.Tolerance`). ``max_steps``: steps one solve may take.
    """

    atol: float = 1e-5
    rtol: float = 1e-5
    test_atol: float | None = None
    test_rtol: float | None = None
    control: str = "all"
    max_steps: int = 10000

    name = "solver"
    integrator_type = None  # the class of an adaptive solver's integrator
    gradient_function = None  # gradient_function(f, y0, t0, t1, params, tol, max_steps) -> (y1, f1)

    def __post_init__(self):
        for key in ("atol", "rtol", "test_atol", "test_rtol"):
            value = getattr(self, key)
            if value is not None and not value > 0:
                raise ValueError(f"solver.{key}: must be positive, got {value}")
        if self.max_steps <= 0:
            raise ValueError(f"solver.max_steps: must be positive, got {self.max_steps}")
        if self.control not in CONTROLS:
            raise ValueError(f"solver.control: '{self.control}' is not one of {', '.join(CONTROLS)}")

    @property
    def integrator(self):
        return self.integrator_type()

    @property
    def evaluation_tolerances(self) -> tuple[float, float]:
        """``(atol, rtol)`` of evaluation."""
        return self.test_atol or self.atol, self.test_rtol or self.rtol

    def tolerance(self, training: bool, controlled: int | None = None) -> Tolerance:
        """The error control of a training solve (``control`` decides whether the integrals after
        the first ``controlled`` columns are in it), or of an evaluation (all columns, per sample)."""
        if training:
            return Tolerance(self.atol, self.rtol, controlled, integrals=self.control == "all")
        return Tolerance(*self.evaluation_tolerances, controlled, integrals=True, per_sample=True)

    def tightened(self, factor: float) -> "Solver":
        """This solver with its evaluation tolerances divided by ``factor`` (the convergence check)."""
        atol, rtol = self.evaluation_tolerances
        return replace(self, test_atol=atol / factor, test_rtol=rtol / factor)

    def gradient_method(self, f, y0: Tensor, t0: Tensor, t1: Tensor, params: tuple, tol: Tolerance):
        """``(y1, f1)``: y(t1) with gradients for y0 and ``params``, t1 held constant; f1 = F(y1, t1)
        where it came for free, else None."""
        return type(self).gradient_function(f, y0, t0, t1, params, tol, self.max_steps)

    def end_time_derivative(self, f, y0: Tensor, t0: float, t1: float, y1: Tensor) -> Derivative:
        """a(T) -> a(T) . v(T), v(T) = dy(T)/dT: here F(y(T), T), evaluated when the derivative is
        called, with the weights of that moment (after the weights step, eq. 12-13)."""
        return partial(_continuous_derivative, f, t1, y1.detach())

    def _derivative_now(self, f, y0: Tensor, t0: float, t1: float, y1: Tensor, f1: Tensor | None) -> Derivative:
        """The same with the weights of now, for this solve's own backward pass: v(T) from ``f1``
        (dopri5's last stage) or one evaluation now. A fixed grid's discrete derivative is the same
        whenever it is taken, as the weights do not move before the backward pass."""
        if not self.integrator.adaptive:
            return self.end_time_derivative(f, y0, t0, t1, y1)
        return along(field_at_end(f, t1, y1) if f1 is None else f1.detach())

    def solve(self, f: Field, y0: Tensor, t0: Tensor, t1: Tensor, params: tuple, tol: Tolerance,
              record: EndTimeRecord | None = None) -> Tensor:
        r"""The solution at t1 of dy/dt = f(t, y), y(t0) = y0, with gradients for y0, ``params`` and t1.

        The gradient method (``solver.sensitivity``, or the solver's own) treats t1 as a constant;
        the end time's gradient is attached to the output (eq. 12-13):

        .. math:: \frac{dL}{dT} = a(T) \cdot v(T), \quad a(T) = \frac{\partial L}{\partial y(T)}

        with v(T) = f(T, y(T)) for an adaptive solver, the derivative of the discrete solution
        for a fixed grid.

        Args:
            f: The field, f(t, y) -> dy/dt, y of shape ``(B, D)`` (a flow's augmented state).
            y0: The initial state, shape ``(B, D)``.
            t0: The start time, a 0-dim tensor (a constant).
            t1: The end time, a 0-dim tensor; its gradient is attached where it requires one.
            params: The parameters whose gradients the backward pass gives.
            tol: The error control (:meth:`tolerance`).
            record: For TO-FLOW's after-step T step: receives T, a(T) and the derivative.

        Returns:
            y(t1), shape ``(B, D)``.
        """
        y1, f1 = self.gradient_method(f, y0, t0, t1, params, tol)
        end = (f, y0.detach(), float(t0.detach()), float(t1.detach()), y1)
        later = self.end_time_derivative(*end)
        derivative = self._derivative_now(*end, f1) if t1.requires_grad else later
        return attach_end_time(y1, t1, derivative, record, later)

    def integrate(self, f: Field, y0: Tensor, t0: float, t1: float, tol: Tolerance) -> Tensor:
        """The solution at t1 without gradients (t1 < t0 integrates backward in time).

        Args:
            f: The field, f(t, y) -> dy/dt.
            y0: The initial state, shape ``(B, D)``.
            t0: The start time.
            t1: The end time.
            tol: The error control (:meth:`tolerance`).

        Returns:
            y(t1), shape ``(B, D)``.
        """
        with torch.no_grad():
            return self.integrator.integrate(f, y0, t0, t1, tol, self.max_steps)[0]

    def build(self, dynamics: nn.Module):
        from .neural_ode import FlowODE  # torchdyn's model layer imports Lightning: loaded where a flow first solves

        return FlowODE(dynamics, self)


def own_gradient_solver(name: str, integrator_type: type, gradient_function: Callable, doc: str) -> type:
    """A solver class whose gradient method is its own (it takes no ``sensitivity``), registered as ``name``.

    Args:
        name: ``solver.name``; the class is called ``name.upper()``.
        integrator_type: The class of its adaptive integrator.
        gradient_function: ``gradient_function(f, y0, t0, t1, params, tol, max_steps) -> (y1, f1)``.
        doc: The class's docstring.

    Returns:
        The registered class.
    """
    namespace = {"name": name, "integrator_type": integrator_type, "__doc__": doc,
                 "gradient_function": staticmethod(gradient_function), "__module__": gradient_function.__module__}
    return SOLVERS.register(dataclass(frozen=True)(type(name.upper(), (Solver,), namespace)))


@dataclass(frozen=True)
class WithSensitivity(Solver):
    """A solver whose gradient method is chosen: ``adjoint`` (the adjoint system solved
    backward; memory constant in the steps), ``autograd`` (through the accepted steps) or
    ``auto`` (per block, the fastest exact method whose memory fits ``memory_budget_mb``:
    :mod:`toflow.solvers.auto`)."""

    sensitivity: str = "adjoint"
    memory_budget_mb: float | None = None  # for ``auto``; None: auto.BUDGET_MB

    sensitivities = ("adjoint", "autograd", "auto")
    reduced_adjoint = True  # the backward state without the integral columns (sensitivity.solve_adjoint)
    checkpointed = None  # an adaptive-checkpoint method for ``auto`` (dopri5: ACA)

    def __post_init__(self):
        super().__post_init__()
        if self.sensitivity not in self.sensitivities:
            raise ValueError(f"solver.sensitivity: '{self.sensitivity}' is not one of {', '.join(self.sensitivities)} "
                             f"for {self.name}")
        if self.memory_budget_mb is not None and (self.sensitivity != "auto" or not self.memory_budget_mb > 0):
            raise ValueError(f"solver.memory_budget_mb: a positive budget for sensitivity auto, got "
                             f"{self.memory_budget_mb} with sensitivity {self.sensitivity}")

    def gradient_method(self, f, y0, t0, t1, params, tol):
        if self.sensitivity != "auto":
            return self._run(self.sensitivity, f, y0, t0, t1, params, tol)
        if not torch.is_grad_enabled():  # no gradient to choose a method for
            return self.integrator.integrate(f, y0, float(t0), float(t1), tol, self.max_steps)
        footprint, shape = auto.footprint_of(f), tuple(y0.shape)
        methods = auto.METHODS if self.checkpointed is not None else ("autograd", "adjoint")
        budget = self.memory_budget_mb or auto.BUDGET_MB
        if tol.per_sample:  # a solve at the evaluation tolerances: its size says nothing of training's
            return self._run(auto.choose(footprint, shape, budget, methods), f, y0, t0, t1, params, tol)
        if shape not in footprint.bytes_per_evaluation:
            footprint.bytes_per_evaluation[shape] = auto.graph_bytes(f, t0.to(y0.dtype), y0, params)
        footprint.state_bytes = y0.numel() * y0.element_size()
        footprint.sensitivity = auto.choose(footprint, shape, budget, methods)
        counted = auto.Counted(f, footprint)
        out = self._run(footprint.sensitivity, counted, y0, t0, t1, params, tol)
        counted.stop()
        return out

    def _run(self, sensitivity: str, f, y0, t0, t1, params, tol):
        if sensitivity == "aca":
            return type(self).checkpointed(f, y0, t0, t1, params, tol, self.max_steps)
        if sensitivity == "autograd":
            return solve_autograd(self.integrator, f, y0, t0, t1, params, tol, self.max_steps)
        return solve_adjoint(self.integrator, f, y0, t0, t1, params, tol, self.max_steps, self.reduced_adjoint)
