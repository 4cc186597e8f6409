"""Dequantisation, bits/dim, and the dequantised training batches and test set of an image set.

Dequantisation (uniform): x = (v + u) / L with u ~ U[0, 1), v the integer value and L the number of levels
(256; 17 for digits), kept strictly inside (0, 1). The test set is dequantised once, with a fixed noise, so
test bits/dim are a deterministic function of the model.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import DataError


def dequantize(values: Tensor, n_levels: int, generator: torch.Generator | None = None) -> Tensor:
    """(v + u) / L with u ~ U[0, 1): a float32 image strictly inside (0, 1).

    For the top level and u close to 1, (v + u) / L rounds to exactly 1.0 in float32 (about 7
    in a million such pixels), where the logit is infinite: those are put on the largest
    float32 below 1 (and a pixel at exactly 0 on the smallest above it)."""
    u = torch.rand(values.shape, generator=generator)
    x = (values.float() + u) / n_levels
    info = torch.finfo(x.dtype)
    return x.clamp(info.tiny, 1 - info.eps / 2)


def bits_per_dim(nll_nats: Tensor | float, dim: int, n_levels: int = 256) -> Tensor | float:
    """Paper eq. 18: -(log p(x) / d - log L) / log 2, with log p in nats for x in [0, 1]^d."""
    return (nll_nats / dim + math.log(n_levels)) / math.log(2)


class ImageBatches(torch.utils.data.IterableDataset):
    """Shuffled, dequantised training batches, reproducible from (seed, batch index).

    Batch k is drawn from epoch k // (N // B) under a permutation seeded by (seed, epoch),
    with dequantisation noise seeded by (seed, k): a run resumed at batch k sees exactly
    the batches an uninterrupted one would. Process ``rank`` of ``world`` takes its share
    of each global batch.
    """

    def __init__(self, images: Tensor, batch_size: int, n_levels: int, seed: int = 0, start: int = 0, rank: int = 0,
                 world: int = 1):
        if batch_size > len(images):
            raise DataError(f"data.batch_size: {batch_size} exceeds the {len(images)} training images")
        self.images, self.batch_size, self.n_levels = images, batch_size, n_levels
        self.seed, self.start, self.rank, self.world = seed, start, rank, world
        self.per_epoch = len(images) // batch_size
        self._epoch, self._order = -1, None

    def _permutation(self, epoch: int) -> Tensor:
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed * 100003 + epoch)
            self._epoch, self._order = epoch, torch.randperm(len(self.images), generator=generator)
        return self._order

    def batch(self, k: int) -> Tensor:
        epoch, index = divmod(k, self.per_epoch)
        order = self._permutation(epoch)
        chosen = order[index * self.batch_size: (index + 1) * self.batch_size]
        noise = torch.Generator().manual_seed(self.seed * 1000003 + k + 1)
        return dequantize(self.images[chosen], self.n_levels, noise)

    def __iter__(self):
        k, share = self.start, self.batch_size // self.world
        while True:
            yield self.batch(k)[self.rank * share: (self.rank + 1) * share]
            k += 1


def image_test_set(images: Tensor, n_levels: int) -> Tensor:
    """The test images dequantised once with a fixed noise."""
    return dequantize(images, n_levels, torch.Generator().manual_seed(12345))
