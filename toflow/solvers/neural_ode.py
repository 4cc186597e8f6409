"""torchdyn's ``NeuralODE`` with the guards a trainable end time needs.

torchdyn 1.0.6 is the integration core. This subclass keeps its solvers and its adjoint
and fixes what breaks for TO-FLOW:

- Its tableaus are built in float32 and cast in place per solve, so a float64 run
  integrates with float32-rounded coefficients (and a float32 run degrades a shared
  solver for every later float64 one). :class:`Dopri5Step` keeps a float64 master
  tableau and casts a copy per solve.
- ``NeuralODE`` stores the flattened parameters as a non-leaf tensor, so
  ``copy.deepcopy`` fails; here they are rebuilt per solve and never stored.
- Its adjoint returns a wrong dL/dt0 (wrong sign); t0 is kept constant by
  :class:`~toflow.models.EndTime`, and only dL/dT is used. Its dL/dT,
  a(T) . F(z(T), T), is correct.
- Its ``interpolated_adjoint`` gives no gradient for ``t_span``: it is not offered.
- Evaluation may use its own tolerances (``test_atol``, ``test_rtol``), chosen by
  ``self.training``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchdyn.core import NeuralODE
from torchdyn.numerics import odeint
from torchdyn.numerics.sensitivity import _gather_odefunc_adjoint
from torchdyn.numerics.solvers.ode import DormandPrince45

SENSITIVITIES = ("adjoint", "autograd")


class Dopri5Step(DormandPrince45):
    """Dormand-Prince 5(4) step of torchdyn, with float64 coefficients cast per solve."""

    def __init__(self):
        super().__init__(dtype=torch.float64)
        self._master = self.tableau
        self._factors = (0.9, 0.2, 10.0)  # safety, min_factor, max_factor

    def sync_device_dtype(self, x: Tensor, t_span: Tensor):
        c, a, bsol, berr = self._master
        self.tableau = c.to(x), [ai.to(x) for ai in a], bsol.to(x), berr.to(x)
        safety, lo, hi = self._factors
        like = t_span if t_span.is_floating_point() else x
        self.safety, self.min_factor, self.max_factor = (torch.tensor(v, dtype=like.dtype, device=x.device)
                                                         for v in (safety, lo, hi))
        return x, t_span.to(x.device)


class FlowODE(NeuralODE):
    """``NeuralODE`` over a flow's augmented state, returning the state at the end of ``t_span``."""

    def __init__(self, dynamics: nn.Module, step: nn.Module, sensitivity: str = "adjoint",
                 atol: float = 1e-5, rtol: float = 1e-5, eval_atol: float | None = None,
                 eval_rtol: float | None = None):
        if sensitivity not in SENSITIVITIES:
            raise ValueError(f"solver.sensitivity: '{sensitivity}' is not one of {', '.join(SENSITIVITIES)} "
                             "(torchdyn's interpolated_adjoint gives no gradient for the end time)")
        super().__init__(dynamics, solver=step, sensitivity=sensitivity, atol=atol, rtol=rtol,
                         atol_adjoint=atol, rtol_adjoint=rtol, return_t_eval=False)
        del self.vf_params  # non-leaf: breaks deepcopy; rebuilt per solve
        self.eval_atol = atol if eval_atol is None else eval_atol
        self.eval_rtol = rtol if eval_rtol is None else eval_rtol

    def tolerances(self) -> tuple[float, float]:
        return (self.atol, self.rtol) if self.training else (self.eval_atol, self.eval_rtol)

    def odeint(self, x: Tensor, t_span: Tensor, save_at=(), args={}):  # noqa: B006 (torchdyn's signature)
        atol, rtol = self.tolerances()
        if self.sensalg == "autograd":
            return odeint(self.vf, x, t_span, self.solver, atol, rtol)
        params = torch.cat([p.contiguous().flatten() for p in self.vf.parameters()])
        adjoint = _gather_odefunc_adjoint(self.vf, params, self.solver, atol, rtol, None, self.solver_adjoint,
                                          atol, rtol, None, problem_type="standard")
        return adjoint.apply(params, x, t_span)

    def end_state(self, x: Tensor, t_span: Tensor) -> Tensor:
        """The state at ``t_span[-1]`` of the solution from ``x`` at ``t_span[0]``."""
        return self(x, t_span)[-1]

    def integrate(self, f, x: Tensor, t_span: Tensor) -> Tensor:
        """Integrate another field ``f(t, x)`` with this solver and tolerances, without gradients."""
        atol, rtol = self.tolerances()
        with torch.no_grad():
            return odeint(f, x, t_span, self.solver, atol, rtol)[1][-1]
