"""Step 2 of TO-FLOW's coordinate descent (paper sec. 3.1): the end-time update.

After the weights step, for every block whose end time has its own optimizer:

    g_T = dL/dT + alpha sign(T)          (eq. 12-13, plus the gradient of TR, eq. 15-16)
    T  <- Q(g_T, T)                      (eq. 14, Q = Adam)
    T  <- Clip(T)                        (eq. 17)

dL/dT comes from eq. 12-13 at z(T) with the updated weights (``grad="alternating"``) or
from the backward pass that gave the weights' gradient (``grad="joint"``).
"""

from __future__ import annotations

import torch
from torch.optim import Optimizer


def time_optimized_blocks(flow) -> list:
    return [block for block in flow.blocks() if block.end_time.has_own_optimizer]


def time_gradients(flow, reduce=None) -> dict:
    """Set g_T = dL/dT + alpha sign(T) as the gradient of every TO-FLOW end time.

    ``reduce(tensor)`` averages a gradient over data-parallel processes (the alternating
    gradient is computed after the backward pass, outside DDP's reduction), so every
    process takes the same step. Returns ``{block index: g_T}``.
    """
    used = {}
    for index, block in enumerate(time_optimized_blocks(flow)):
        end_time = block.end_time
        if end_time.grad == "alternating":
            grad = block.alternating_time_grad()
            if reduce is not None:
                grad = reduce(grad)
        else:
            grad = end_time.T.grad if end_time.T.grad is not None else torch.zeros_like(end_time.T)
        grad = grad.detach().reshape(end_time.T.shape) + end_time.regularization_grad()
        end_time.T.grad = grad.to(end_time.T.dtype)
        used[index] = float(grad)
    return used


def time_step(flow, optimizer: Optimizer) -> None:
    """Step the end times with their gradients (eq. 14), then Clip(T) (eq. 17)."""
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    for block in time_optimized_blocks(flow):
        block.end_time.clip_()


def temporal_step(flow, optimizer: Optimizer, reduce=None) -> dict:
    """The whole step 2: :func:`time_gradients`, then :func:`time_step`. Returns the gradients used."""
    used = time_gradients(flow, reduce)
    if used:
        time_step(flow, optimizer)
    return used
