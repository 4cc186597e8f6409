"""torchdyn's ``NeuralODE``, running toflow's solvers.

torchdyn has no plugin point for a new sensitivity, so :class:`FlowODE` overrides
``NeuralODE.odeint`` to hand the integration to a :class:`~toflow.solvers.Solver`, and
keeps the rest of torchdyn's model layer (its vector-field wrapper and module shell).
On the way it avoids torchdyn 1.0.6's faults: float32 tableau constants (toflow's
steps hold float64 Python floats), a non-leaf parameter cache that breaks
``copy.deepcopy`` (never stored), a wrong-signed dL/dt0 (t0 is constant) and an
``interpolated_adjoint`` without end-time gradients (not offered).
"""

from __future__ import annotations

from torch import Tensor, nn
from torchdyn.core import NeuralODE


class FlowODE(NeuralODE):
    """``NeuralODE`` over a flow's augmented state; ``self.training`` picks the tolerances.

    The first ``dynamics.numel`` columns of the state (the flow's z) feed back into the
    dynamics; the log-density and regulariser integrals follow them, each a group of its own in
    the error norm (:meth:`~toflow.solvers.Solver.tolerance`).
    """

    def __init__(self, dynamics: nn.Module, solver):
        super().__init__(dynamics, solver=solver, sensitivity=getattr(solver, "sensitivity", "autograd"),
                         atol=solver.atol, rtol=solver.rtol, return_t_eval=False)
        del self.vf_params  # a non-leaf tensor: it breaks copy.deepcopy
        self.controlled = getattr(dynamics, "numel", None)

    def _tolerance(self):
        return self.solver.tolerance(self.training, self.controlled)

    def odeint(self, x: Tensor, t_span: Tensor, save_at=(), args={}):  # noqa: B006 (torchdyn's signature)
        params = tuple(p for p in self.vf.parameters() if p.requires_grad)
        end = self.solver.solve(self.vf, x, t_span[0], t_span[-1], params, self._tolerance(), args.get("record"))
        return t_span, end[None]

    def end_state(self, x: Tensor, t_span: Tensor, record=None) -> Tensor:
        """The state at ``t_span[-1]`` of the solution from ``x`` at ``t_span[0]``; ``record``
        (an :class:`~toflow.solvers.EndTimeRecord`) is filled for the after-step T step."""
        return self(x, t_span, args={"record": record})[-1]

    def integrate(self, f, x: Tensor, t_span: Tensor) -> Tensor:
        """Integrate another field ``f(t, x)`` with this solver, without gradients."""
        return self.solver.integrate(f, x, float(t_span[0]), float(t_span[-1]), self.solver.tolerance(self.training))
