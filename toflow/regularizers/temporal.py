"""Temporal regularisation TR(T) = alpha |T| (paper eq. 15), added to the loss in eq. 16."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class TemporalRegularization:
    """TR(T) = alpha |T|; its gradient alpha sign(T) is added to dL/dT in the T step."""

    alpha: float = 0.1

    def __post_init__(self):
        if self.alpha < 0:
            raise ValueError(f"time.alpha: must be non-negative, got {self.alpha}")

    def __call__(self, T: Tensor) -> Tensor:
        return self.alpha * T.abs()

    def grad(self, T: Tensor) -> Tensor:
        return self.alpha * torch.sign(T.detach())
