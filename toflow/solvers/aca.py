"""Adaptive checkpoint adjoint (ACA; Zhuang et al., ICML 2020).

Forward: adaptive dopri5 without a graph, recording each accepted step (t_i, h_i, y_i);
trial steps are not repeated and the last stage is reused as the next first (FSAL), so
each accepted step is computed once. Backward: walk the steps in reverse, recompute each
from its checkpoint y_i with a graph (6 evaluations: the 7th stage only serves the error
estimate) and backpropagate a_i = a_{i+1} d y_{i+1} / d y_i through it. The gradient
equals autograd through the same accepted steps; memory holds one state per step.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import own_gradient_solver
from .control import Tolerance
from .integrators import AdaptiveDopri5
from .steps import at, dopri5_step


class _ACA(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y0, t0, t1, f, tol, max_steps, *params):
        checkpoints: list[tuple[float, float, Tensor]] = []
        with torch.no_grad():
            y1, f1 = AdaptiveDopri5().integrate(f, y0, float(t0.detach()), float(t1.detach()), tol, max_steps,
                                                record=lambda t, h, y: checkpoints.append((t, h, y)))
        ctx.f, ctx.steps = f, [(t, h) for t, h, _ in checkpoints]
        ctx.save_for_backward(*params, *(y for _, _, y in checkpoints))
        ctx.n_params = len(params)
        f1 = y1.new_zeros(0) if f1 is None else f1
        ctx.mark_non_differentiable(f1)
        return y1, f1

    @staticmethod
    def backward(ctx, grad_y1, _grad_f1):
        saved = ctx.saved_tensors
        params, states = saved[: ctx.n_params], saved[ctx.n_params:]
        f = ctx.f
        a = grad_y1
        grad_params = [torch.zeros_like(p) for p in params]
        for (t, h), y in zip(reversed(ctx.steps), reversed(states)):
            with torch.enable_grad():
                y = y.detach().requires_grad_(True)
                y_next, _, _ = dopri5_step(f, t, h, y, f(at(t, y), y), with_error=False)
                grads = torch.autograd.grad(y_next, (y, *params), a, allow_unused=True)
            a = grads[0]
            for acc, g in zip(grad_params, grads[1:]):
                if g is not None:
                    acc.add_(g)
        return (a, None, None, None, None, None, *grad_params)


def solve_aca(f, y0: Tensor, t0: Tensor, t1: Tensor, params, tol: Tolerance, max_steps: int):
    """``(y1, f1)``: y(t1) with ACA gradients for y0 and ``params`` (t1 a constant), and dopri5's last stage."""
    y1, f1 = _ACA.apply(y0, t0.detach(), t1.detach(), f, tol, max_steps, *params)
    return y1, (f1 if f1.numel() else None)


ACA = own_gradient_solver("aca", AdaptiveDopri5, solve_aca,
                          "Adaptive checkpoint adjoint over dopri5 (its own gradient method).")
