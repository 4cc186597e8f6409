"""Step 2 of TO-FLOW's coordinate descent (paper sec. 3.1): the end-time update.

After the weights step, for every block whose end time has its own optimizer:

    g_T = dL/dT + alpha sign(T)          (eq. 12-13, plus the gradient of TR, eq. 15-16)
    T  <- Q(g_T, T)                      (eq. 14, Q = Adam)
    T  <- Clip(T)                        (eq. 17)

dL/dT comes from eq. 12-13 at z(T) with the updated weights (``grad="after_step"``) or
from the backward pass that gave the weights' gradient (``grad="same_pass"``); the end
time itself says which (``EndTime.dloss_dT``). The trainer calls :func:`temporal_step`.
"""

from __future__ import annotations

import math

import torch
from torch.optim import Optimizer


class TimeStep(dict):
    """The gradients a T step used, by block index, and what became of it: ``finite`` is false
    when some gradient was NaN or infinite, in which case no T moved (the caller decides
    what else to undo)."""

    def __init__(self, grads: dict | None = None, finite: bool = True):
        super().__init__(grads or {})
        self.finite = finite


def time_optimized_blocks(flow) -> list:
    return [block for block in flow.blocks() if block.end_time.has_own_optimizer]


def time_gradients(flow, reduce=None) -> dict:
    """Set g_T = dL/dT + alpha sign(T) as the gradient of every TO-FLOW end time.

    ``reduce(tensor)`` averages a gradient over data-parallel processes (the after-step
    gradient is computed after the backward pass, outside DDP's reduction), so every
    process takes the same step. Returns ``{block index: g_T}``.
    """
    used = {}
    for index, block in enumerate(time_optimized_blocks(flow)):
        end_time = block.end_time
        grad = block.dloss_dT()
        if end_time.stepped_after_solve and reduce is not None:
            grad = reduce(grad)
        grad = grad.detach().reshape(end_time.T.shape) + end_time.dregularization_dT()
        end_time.T.grad = grad.to(end_time.T.dtype)
        used[index] = float(grad)
    return used


def temporal_step(flow, optimizer: Optimizer | None, reduce=None) -> TimeStep:
    """The whole step 2: :func:`time_gradients`, then, if every one is finite, Q's step (eq. 14)
    and Clip(T) (eq. 17). A non-finite gradient moves nothing and clears the gradients."""
    if optimizer is None:
        return TimeStep()
    used = time_gradients(flow, reduce)
    blocks = time_optimized_blocks(flow)
    if not all(math.isfinite(g) for g in used.values()):
        for block in blocks:
            block.end_time.T.grad = None
        return TimeStep(used, finite=False)
    if used:
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        for block in blocks:
            block.end_time.clip_()
    return TimeStep(used)


def time_optimizer(flow) -> torch.optim.Optimizer | None:
    """Adam over the TO-FLOW end times at their ``lr`` (Q of eq. 14), or None if there are none."""
    timed = [block.end_time for block in time_optimized_blocks(flow)]
    if not timed:
        return None
    return torch.optim.Adam([end_time.T for end_time in timed], lr=timed[0].lr)
