"""How gradients reach the weights and the initial state: ``autograd`` and ``adjoint``.

Both treat the end time as a constant and return ``(y1, f1)``, with f1 = F(y(T), T) where
the integrator has it for free (dopri5's last stage), else None; the end time's gradient
is attached to y1 by :mod:`toflow.solvers.end_time_grad`, the same for every solver.
t0 is a constant (its gradient is never returned).

- ``autograd``: backpropagate through the accepted steps of the forward loop.
- ``adjoint``: solve the adjoint system backward from T to t0 (Chen et al. 2018),

      d/dt [y, a, a_theta] = [F, -a dF/dy, -a dF/dtheta],  [y, a, a_theta](T) = [y(T), dL/dy(T), 0],

  with the same integrator and tolerances; the step control sees y and a only (seminorm).
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
    def forward(ctx, y0, t0, t1, integrator, f, tol, max_steps, *params):
        with torch.no_grad():
            y1, f1 = integrator.integrate(f, y0, float(t0), float(t1), tol, max_steps)
        ctx.integrator, ctx.f, ctx.tol, ctx.max_steps = integrator, f, tol, max_steps
        ctx.times = (float(t0), float(t1))
        ctx.save_for_backward(y1, *params)
        f1 = y1.new_zeros(0) if f1 is None else f1
        ctx.mark_non_differentiable(f1)
        return y1, f1

    @staticmethod
    def backward(ctx, grad_y1, _grad_f1):
        y1, *params = ctx.saved_tensors
        f, (t0, t1) = ctx.f, ctx.times
        shape, n = y1.shape, y1.numel()

        def adjoint_dynamics(t: Tensor, state: Tensor) -> Tensor:
            flat = state[0]
            y, a = flat[:n].reshape(shape), flat[n: 2 * n].reshape(shape)
            with torch.enable_grad():
                y = y.detach().requires_grad_(True)
                dy = f(t, y)
                vjp = torch.autograd.grad(dy, (y, *params), a, allow_unused=True)
            vjp = [torch.zeros_like(x) if g is None else g for g, x in zip(vjp, (y, *params))]
            return torch.cat([dy.detach().reshape(-1), *(-g.reshape(-1) for g in vjp)])[None]

        start = torch.cat([y1.reshape(-1), grad_y1.reshape(-1), _flat([torch.zeros_like(p) for p in params], y1)])
        adjoint_tol = Tolerance(ctx.tol.atol, ctx.tol.rtol, controlled=2 * n)
        end, _ = ctx.integrator.integrate(adjoint_dynamics, start[None], t1, t0, adjoint_tol, ctx.max_steps)
        end = end[0]
        grad_y0 = end[n: 2 * n].reshape(shape)
        grad_params, offset = [], 2 * n
        for p in params:
            grad_params.append(end[offset: offset + p.numel()].reshape(p.shape))
            offset += p.numel()
        return (grad_y0, None, None, None, None, None, None, *grad_params)


def solve_adjoint(integrator, f, y0: Tensor, t0: Tensor, t1: Tensor, params, tol: Tolerance, max_steps: int):
    y1, f1 = _Adjoint.apply(y0, t0.detach(), t1.detach(), integrator, f, tol, max_steps, *params)
    return y1, (f1 if f1.numel() else None)
