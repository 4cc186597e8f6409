"""FFJORD's multiscale image flow (ODENVP): logit, then per scale CNF blocks, a squeeze,
more CNF blocks, and half the channels factored out.

    x -> logit -> [scale 0: blocks, squeeze, blocks] -> keep c/2 | factor out c/2
               -> [scale 1: ...] -> ... -> [last scale: blocks] -> z = all factored parts

log p(x) = log N(z; 0, I) + log|det logit'| + sum over blocks of int Tr(df/dz) dt. There are
n_scales = the number of halvings while the side stays >= 4 (3 for 28x28, 4 for 32x32);
every scale but the last squeezes. With one block per place and ConcatConv 64-64-64
fields this is FFJORD's model: 400,323 parameters on 1x28x28, 679,441 on 3x32x32
(end times included).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from .cnf import CNF, Flow, FlowOutput, add_regularization
from .transforms import LogitTransform, squeeze, unsqueeze


def number_of_scales(height: int, width: int) -> int:
    n = 0
    while height >= 4 and width >= 4:
        n, height, width = n + 1, height // 2, width // 2
    return max(n, 1)


class Scale(nn.Module):
    """CNF blocks at (c, h, w), then (if ``squeezes``) a squeeze and blocks at (4c, h/2, w/2)."""

    def __init__(self, shape: Sequence[int], make_block: Callable[[tuple], CNF], num_blocks: int, squeezes: bool):
        super().__init__()
        c, h, w = shape
        self.squeezes = squeezes
        self.before = nn.ModuleList(make_block((c, h, w)) for _ in range(num_blocks))
        self.after = nn.ModuleList(make_block((4 * c, h // 2, w // 2)) for _ in range(num_blocks if squeezes else 0))
        self.out_shape = (4 * c, h // 2, w // 2) if squeezes else (c, h, w)

    def blocks(self) -> list[CNF]:
        return [*self.before, *self.after]

    def forward(self, x: Tensor) -> FlowOutput:
        log_det = x.new_zeros(x.shape[0])
        regularization: dict = {}
        for index, block in enumerate(self.blocks()):
            if self.squeezes and index == len(self.before):
                x = squeeze(x)
            x, block_log_det, block_reg = block.transform(x)
            log_det = log_det + block_log_det
            add_regularization(regularization, block_reg)
        if self.squeezes and not self.after:
            x = squeeze(x)
        return FlowOutput(x, log_det, regularization)

    def inverse(self, x: Tensor, fraction: float = 1.0) -> Tensor:
        for block in reversed(self.after):
            x = block.inverse(x, fraction)
        if self.squeezes:
            x = unsqueeze(x)
        for block in reversed(self.before):
            x = block.inverse(x, fraction)
        return x


class MultiscaleFlow(Flow):
    """The multiscale flow over images of ``shape`` (C, H, W) with values in [0, 1].

    ``make_block(shape)`` builds one CNF block for a state of that shape (its field, end
    time, solver, regularisers, Hutchinson trace).
    """

    def __init__(self, shape: Sequence[int], make_block: Callable[[tuple], CNF], num_blocks: int = 1,
                 logit_alpha: float = 1e-6, n_scales: int | None = None):
        super().__init__()
        if num_blocks < 1:
            raise ValueError(f"model.num_blocks: must be positive, got {num_blocks}")
        c, h, w = shape
        self.shape = tuple(shape)
        self.logit = LogitTransform(logit_alpha)
        most = number_of_scales(h, w)
        if n_scales is not None and not 1 <= n_scales <= most:
            raise ValueError(f"model.scales: between 1 and {most} for {h}x{w} images, got {n_scales}")
        n_scales = n_scales or most
        scales, factored = [], []
        for index in range(n_scales):
            last = index == n_scales - 1
            scale = Scale((c, h, w), make_block, num_blocks, squeezes=not last)
            scales.append(scale)
            c, h, w = scale.out_shape
            if not last:
                factored.append((c - c // 2, h, w))
                c = c // 2
        factored.append((c, h, w))
        self.scales = nn.ModuleList(scales)
        self.latent_shapes = factored  # shapes of the parts of z, in order
        self.latent_shape = (sum(c * h * w for c, h, w in factored),)

    # ------------------------------------------------------------------ density
    def prepare(self, x: Tensor) -> Tensor:
        """The logit of x, what the first block sees."""
        return self.logit(x)[0]

    def transform(self, x: Tensor) -> FlowOutput:
        """x in [0, 1] -> z (flattened, all factored parts), log|det dz/dx|, regularisers' integrals."""
        h, log_det = self.logit(x)
        parts, regularization = [], {}
        for index, scale in enumerate(self.scales):
            h, scale_log_det, scale_reg = scale(h)
            log_det = log_det + scale_log_det
            add_regularization(regularization, scale_reg)
            if index < len(self.scales) - 1:
                keep = h.shape[1] // 2
                h, out = h[:, :keep], h[:, keep:]
                parts.append(out.flatten(1))
        parts.append(h.flatten(1))
        return FlowOutput(torch.cat(parts, 1), log_det, regularization)

    def inverse(self, z: Tensor, fraction: float = 1.0) -> Tensor:
        sizes = [c * h * w for c, h, w in self.latent_shapes]
        parts = [p.reshape(-1, *shape) for p, shape in zip(z.split(sizes, 1), self.latent_shapes)]
        h = parts[-1]
        for index in range(len(self.scales) - 1, -1, -1):
            if index < len(self.scales) - 1:
                h = torch.cat([h, parts[index]], 1)
            h = self.scales[index].inverse(h, fraction)
        return self.logit.inverse(h)

    # ------------------------------------------------------------------ the flow contract
    def blocks(self) -> list[CNF]:
        return [block for scale in self.scales for block in scale.blocks()]
