"""The end time's gradient, for every solver and for TO-FLOW's T step after the weights step.

With a(T) = dL/dy(T) and v(T) = dy(T)/dT the velocity of the solution at its end,

    dL/dT = a(T) . v(T)                                        (paper eq. 12-13)

For an adaptive solver v(T) = F(y(T), T), the field at the end (free from dopri5's last
stage, else one evaluation). A fixed grid of n steps stretches with T between multiples
of its step, so its v(T) is the derivative of the discrete solution, not F.

The solvers' gradient methods treat T as a constant; :func:`attach_end_time` gives the
solve's output its T gradient and, for that T step (``time.grad: after_step``), fills an
:class:`EndTimeRecord`: T, the derivative a -> a . v(T) and, once the backward pass has
run, a(T). The record is held by the block's ``EndTime.record``.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .steps import at

Derivative = Callable[[Tensor], Tensor]  # a(T) -> a(T) . v(T), a scalar


def field_at_end(f, t1: float, y1: Tensor) -> Tensor:
    """F(y(T), T), one evaluation without a graph."""
    with torch.no_grad():
        return f(at(t1, y1), y1.detach())


def dloss_dT(adjoint: Tensor, velocity: Tensor) -> Tensor:
    """dL/dT = a(T) . v(T) (eq. 12-13), summed over the batch and the state."""
    return (adjoint * velocity).sum()


def along(velocity: Tensor) -> Derivative:
    """The derivative a -> a . v for a known velocity v."""
    return lambda adjoint: dloss_dT(adjoint, velocity)


class EndTimeRecord:
    """What the after-step T step needs from the last training solve of a block.

    ``T``: where that solve ended; ``adjoint``: a(T) = dL/ds(T), set by the backward pass
    that followed it; ``derivative``: a -> a . v(T), evaluated with the weights as they are
    when it is called (after the weights step, eq. 12-13).
    """

    def __init__(self):
        self.T: float | None = None
        self.adjoint: Tensor | None = None
        self.derivative: Derivative | None = None

    def dloss_dT(self) -> Tensor:
        """dL/dT = a(T) . v(T) with the current weights."""
        if self.derivative is None:
            raise RuntimeError("end-time gradient: no training solve has run since the record was made")
        if self.adjoint is None:
            raise RuntimeError(f"end-time gradient: the solve that ended at T={self.T:.4g} has had no backward "
                               "pass; call loss.backward() before the T step")
        return self.derivative(self.adjoint)


class _AttachEndTime(torch.autograd.Function):
    """Identity on y(T); its backward hands a(T) to the record and gives T its gradient."""

    @staticmethod
    def forward(ctx, y1: Tensor, t1: Tensor, derivative: Derivative, record: EndTimeRecord | None):
        ctx.derivative, ctx.record = derivative, record
        return y1.clone()

    @staticmethod
    def backward(ctx, adjoint: Tensor):
        if ctx.record is not None:
            ctx.record.adjoint = adjoint.detach()
        grad_t = None
        if ctx.needs_input_grad[1]:
            grad_t = ctx.derivative(adjoint).reshape(())
        return adjoint, grad_t, None, None


def attach_end_time(y1: Tensor, t1: Tensor, derivative: Derivative, record: EndTimeRecord | None = None,
                    fresh: Derivative | None = None) -> Tensor:
    """y(T), with dL/dT = ``derivative``(a(T)) where T carries a gradient, and ``record`` filled
    (T now, a(T) on the backward pass, ``fresh``: the derivative at the weights of call time)."""
    trained = torch.is_tensor(t1) and t1.requires_grad
    if record is not None:
        record.T, record.adjoint, record.derivative = float(t1.detach()), None, fresh or derivative
    if not (trained or record is not None):
        return y1
    return _AttachEndTime.apply(y1, t1, derivative, record)
