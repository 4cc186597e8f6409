"""How gradients reach the weights and the initial state: ``autograd`` and ``adjoint``.

Both treat the end time as a constant and return ``(y1, f1)``, with f1 = F(y(T), T) where
the integrator has it for free (dopri5's last stage), else None; the end time's gradient
is attached to y1 by :mod:`toflow.solvers.end_time_grad`, the same for every solver.
t0 is a constant (its gradient is never returned).

- ``autograd``: backpropagate through the accepted steps of the forward loop.
- ``adjoint``: solve the adjoint system backward from T to t0 (Chen et al. 2018),

      d/dt [y, a, a_theta] = [F, -a dF/dy, -a dF/dtheta],  [y, a, a_theta](T) = [y(T), dL/dy(T), 0],

  with the same integrator and tolerances. Of a flow's augmented state only z feeds back
  into F: the log-density and regulariser columns are integrals, so their adjoints stay
  dL/dl(T), dL/dr(T) and their reconstruction is never read. The backward state is
  therefore [z, a_z, a_theta], and the step control sees z and a_z only: the parameters'
  adjoints are summed, never reported, so they stay out of the norm (Kidger, Chen & Lyons 2021).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .control import Tolerance


def solve_autograd(integrator, f, y0: Tensor, t0: Tensor, t1: Tensor, params, tol: Tolerance, max_steps: int):
    return integrator.integrate(f, y0, float(t0.detach()), float(t1.detach()), tol, max_steps)


def _flat(tensors, like) -> Tensor:
    return torch.cat([t.reshape(-1) for t in tensors]) if tensors else like.new_zeros(0)


class _Adjoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y0, t0, t1, integrator, f, tol, max_steps, reduced, *params):
        with torch.no_grad():
            y1, f1 = integrator.integrate(f, y0, float(t0), float(t1), tol, max_steps)
        ctx.integrator, ctx.f, ctx.tol, ctx.max_steps = integrator, f, tol, max_steps
        ctx.times, ctx.reduced = (float(t0), float(t1)), reduced
        ctx.save_for_backward(y1, *params)
        f1 = y1.new_zeros(0) if f1 is None else f1
        ctx.mark_non_differentiable(f1)
        return y1, f1

    @staticmethod
    def backward(ctx, grad_y1, _grad_f1):
        y1, *params = ctx.saved_tensors
        # the state's leading ``kept`` columns feed back into F; the integrals after them do not,
        # so their adjoints are constant and their reconstruction is never read: leave both out
        kept = ctx.tol.controlled if ctx.reduced and ctx.tol.controlled is not None else y1.shape[-1]
        z1, a1 = y1[..., :kept], grad_y1[..., :kept]
        integrals, a_integrals = torch.zeros_like(y1[..., kept:]), grad_y1[..., kept:]
        shape, n = z1.shape, z1.numel()

        def adjoint_dynamics(t: Tensor, state: Tensor) -> Tensor:
            flat = state[0]
            z, a = flat[:n].reshape(shape), flat[n: 2 * n].reshape(shape)
            with torch.enable_grad():
                z = z.detach().requires_grad_(True)
                dy = ctx.f(t, torch.cat([z, integrals], -1))
                vjp = torch.autograd.grad(dy, (z, *params), torch.cat([a, a_integrals], -1), allow_unused=True)
            vjp = [torch.zeros_like(x) if g is None else g for g, x in zip(vjp, (z, *params))]
            return torch.cat([dy[..., :kept].detach().reshape(-1), *(-g.reshape(-1) for g in vjp)])[None]

        start = torch.cat([z1.reshape(-1), a1.reshape(-1), _flat([torch.zeros_like(p) for p in params], y1)])
        adjoint_tol = Tolerance(ctx.tol.atol, ctx.tol.rtol, controlled=2 * n)
        end, _ = ctx.integrator.integrate(adjoint_dynamics, start[None], ctx.times[1], ctx.times[0], adjoint_tol,
                                          ctx.max_steps)
        end = end[0]
        grad_y0 = torch.cat([end[n: 2 * n].reshape(shape), a_integrals], -1)
        grad_params, offset = [], 2 * n
        for p in params:
            grad_params.append(end[offset: offset + p.numel()].reshape(p.shape))
            offset += p.numel()
        return (grad_y0, None, None, None, None, None, None, None, *grad_params)


def solve_adjoint(integrator, f, y0: Tensor, t0: Tensor, t1: Tensor, params, tol: Tolerance, max_steps: int,
                  reduced: bool = True):
    """``reduced``: the backward state holds only the columns that feed back into F (the first
    ``tol.controlled``), with their adjoints and the weights'; False: the whole state."""
    y1, f1 = _Adjoint.apply(y0, t0.detach(), t1.detach(), integrator, f, tol, max_steps, reduced, *params)
    return y1, (f1 if f1.numel() else None)
