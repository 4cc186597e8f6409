"""MALI (Zhuang et al., ICLR 2021): the asynchronous leapfrog with its exact inverse.

Forward: integrate (y, v), v(t0) = f(t0, y0), with adaptive ALF steps and keep only the
end pair and the step sizes. Backward: from (y_N, v_N) invert each step algebraically to
get (y_i, v_i) back, recompute the step from there with a graph and backpropagate the
adjoint pair (a_y, a_v) through it; finally through v(t0) = f(t0, y0). Memory does not
grow with the number of steps (two evaluations per step backward: inverse and recompute).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import own_gradient_solver
from .control import Tolerance
from .integrators import AdaptiveLeapfrog
from .steps import alf_inverse, alf_step, at


def _accumulate(totals: list, grads) -> None:
    for acc, g in zip(totals, grads):
        if g is not None:
            acc.add_(g)


class _MALI(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y0, t0, t1, f, tol, max_steps, *params):
        steps: list[tuple[float, float]] = []
        t0_, t1_ = float(t0.detach()), float(t1.detach())
        with torch.no_grad():
            v0 = f(at(t0_, y0), y0)
            y1, v1 = AdaptiveLeapfrog().integrate_pair(f, y0, v0, t0_, t1_, tol, max_steps,
                                                       record=lambda t, h, y: steps.append((t, h)))
        ctx.f, ctx.steps, ctx.t0 = f, steps, t0_
        ctx.save_for_backward(y1, v1, *params)
        return y1

    @staticmethod
    def backward(ctx, grad_y1):
        y, v, *params = ctx.saved_tensors
        f = ctx.f
        a_y, a_v = grad_y1, torch.zeros_like(grad_y1)
        grad_params = [torch.zeros_like(p) for p in params]
        for t, h in reversed(ctx.steps):
            with torch.no_grad():
                y, v = alf_inverse(f, t, h, y, v)
            with torch.enable_grad():
                y_, v_ = y.detach().requires_grad_(True), v.detach().requires_grad_(True)
                y_next, v_next, _ = alf_step(f, t, h, y_, v_, with_error=False)
                grads = torch.autograd.grad((y_next, v_next), (y_, v_, *params), (a_y, a_v), allow_unused=True)
            a_y, a_v = grads[0], grads[1]
            _accumulate(grad_params, grads[2:])
        with torch.enable_grad():
            y_ = y.detach().requires_grad_(True)
            grads = torch.autograd.grad(f(at(ctx.t0, y_), y_), (y_, *params), a_v, allow_unused=True)
        a_y = a_y + grads[0]
        _accumulate(grad_params, grads[1:])
        return (a_y, None, None, None, None, None, *grad_params)


def solve_mali(f, y0: Tensor, t0: Tensor, t1: Tensor, params, tol: Tolerance, max_steps: int):
    """``(y1, None)``: y(t1) with MALI gradients for y0 and ``params`` (t1 a constant); the
    leapfrog's velocity at the end is not F(y(t1), t1), so no free last stage."""
    return _MALI.apply(y0, t0.detach(), t1.detach(), f, tol, max_steps, *params), None


MALI = own_gradient_solver("mali", AdaptiveLeapfrog, solve_mali,
                           "Adaptive asynchronous leapfrog with reverse-accurate gradients (its own gradient method).")
