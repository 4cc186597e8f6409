"""How gradients reach the weights, the initial state and the end time.

For every method, the end time's gradient is the continuous one,

    dL/dT = a(T) . F(y(T), T),     a(T) = dL/dy(T),

with F(y(T), T) taken from the last dopri5 stage when it is at hand, else one extra
field evaluation. t0 is a constant (its gradient is never returned).

- ``autograd``: backpropagate through the accepted steps of the forward loop.
- ``adjoint``: solve the adjoint system backward from T to t0 (Chen et al. 2018),

      d/dt [y, a, a_theta] = [F, -a dF/dy, -a dF/dtheta],  [y, a, a_theta](T) = [y(T), dL/dy(T), 0],

  with the same integrator and tolerances; the step control sees y and a only (seminorm).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .control import Tolerance
from .steps import at


def field_at_end(f, t1: float, y1: Tensor, f1: Tensor | None) -> Tensor:
    """F(y(T), T): free from dopri5's last stage, else one evaluation without a graph."""
    if f1 is not None:
        return f1.detach()
    with torch.no_grad():
        return f(at(t1, y1), y1.detach())


class _EndTimeGrad(torch.autograd.Function):
    """Identity on y(T) that gives T the gradient a(T) . F(y(T), T)."""

    @staticmethod
    def forward(ctx, y1: Tensor, t1: Tensor, f1: Tensor):
        ctx.save_for_backward(f1)
        return y1.clone()

    @staticmethod
    def backward(ctx, grad_y: Tensor):
        (f1,) = ctx.saved_tensors
        grad_t = (grad_y * f1).sum().reshape(()).to(f1.dtype) if ctx.needs_input_grad[1] else None
        return grad_y, grad_t, None


def attach_end_time(f, y1: Tensor, t1: Tensor, f1: Tensor | None) -> Tensor:
    if not (torch.is_tensor(t1) and t1.requires_grad):
        return y1
    return _EndTimeGrad.apply(y1, t1, field_at_end(f, float(t1.detach()), y1, f1))


def solve_autograd(integrator, f, y0: Tensor, t0: Tensor, t1: Tensor, params, tol: Tolerance, max_steps: int):
    y1, f1 = integrator.integrate(f, y0, float(t0.detach()), float(t1.detach()), tol, max_steps)
    return attach_end_time(f, y1, t1, f1)


def _flat(tensors, like) -> Tensor:
    return torch.cat([t.reshape(-1) for t in tensors]) if tensors else like.new_zeros(0)


class _Adjoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y0, t0, t1, integrator, f, tol, max_steps, *params):
        with torch.no_grad():
            y1, f1 = integrator.integrate(f, y0, float(t0.detach()), float(t1.detach()), tol, max_steps)
        if ctx.needs_input_grad[2]:
            f1 = field_at_end(f, float(t1.detach()), y1, f1)
        ctx.integrator, ctx.f, ctx.tol, ctx.max_steps = integrator, f, tol, max_steps
        ctx.times = (float(t0.detach()), float(t1.detach()))
        ctx.save_for_backward(y1, f1 if f1 is not None else y1.new_zeros(0), *params)
        return y1

    @staticmethod
    def backward(ctx, grad_y1):
        y1, f1, *params = ctx.saved_tensors
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
        grad_t1 = (grad_y1 * f1).sum().reshape(()) if ctx.needs_input_grad[2] else None
        return (grad_y0, None, grad_t1, None, None, None, None, *grad_params)


def solve_adjoint(integrator, f, y0: Tensor, t0: Tensor, t1: Tensor, params, tol: Tolerance, max_steps: int):
    return _Adjoint.apply(y0, t0, t1, integrator, f, tol, max_steps, *params)
