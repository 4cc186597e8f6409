"""Fixed invertible maps around the CNF blocks of an image flow, each with its log-determinant."""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn


class LogitTransform(nn.Module):
    """y = logit(s), s = alpha + (1 - 2 alpha) x, for x in [0, 1] (FFJORD, RealNVP).

    log |dy/dx| = sum over pixels of log(1 - 2 alpha) - log(s (1 - s)).
    ``alpha``: 1e-6 (FFJORD) keeps the map near the identity of the logit; 0.05 (RNODE on
    CIFAR-10) keeps y away from the tails.
    """

    def __init__(self, alpha: float = 1e-6):
        super().__init__()
        if not 0 <= alpha < 0.5:
            raise ValueError(f"model.logit_alpha: must lie in [0, 0.5), got {alpha}")
        self.alpha = alpha

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        s = self.alpha + (1 - 2 * self.alpha) * x
        y = torch.log(s) - torch.log1p(-s)
        log_det = (math.log(1 - 2 * self.alpha) - torch.log(s) - torch.log1p(-s)).flatten(1).sum(1)
        return y, log_det

    def inverse(self, y: Tensor) -> Tensor:
        return (torch.sigmoid(y) - self.alpha) / (1 - 2 * self.alpha)


def squeeze(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, 4C, H/2, W/2): each 2x2 patch into channels (volume-preserving)."""
    return rearrange(x, "b c (h p1) (w p2) -> b (c p1 p2) h w", p1=2, p2=2)


def unsqueeze(x: Tensor) -> Tensor:
    """The inverse of :func:`squeeze`."""
    return rearrange(x, "b (c p1 p2) h w -> b c (h p1) (w p2)", p1=2, p2=2)
