"""The eight 2-D benchmark densities of the CNF literature (FFJORD's toy sets).

Each set is a map from per-sample noise to a point, so a stream of samples depends only
on the seed, never on how it is cut into batches: the stream is built from fixed-size
chunks, chunk k drawn from a generator seeded by (seed, k). Shapes, scales and noise
levels follow FFJORD's ``toy_data.py``; where FFJORD fixes per-batch proportions (equal
ring or arm counts, evenly spaced angles) a sample here picks its ring, arm or angle at
random, which gives the same density.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch
from torch import Tensor

from ..registry import Registry

CHUNK = 4096
TOY_SETS = Registry("data.name")  # name -> generator(rng, n) -> (n, 2) array


def _swissroll(rng: np.random.Generator, n: int) -> np.ndarray:
    # sklearn's make_swiss_roll(noise=1.0), coordinates (x, z), scaled by 1/5
    t = 1.5 * np.pi * (1 + 2 * rng.random(n))
    points = np.stack([t * np.cos(t), t * np.sin(t)], 1) + rng.standard_normal((n, 2))
    return points / 5


def _circles(rng: np.random.Generator, n: int) -> np.ndarray:
    # sklearn's make_circles(factor=0.5, noise=0.08), scaled by 3
    radius = np.where(rng.random(n) < 0.5, 1.0, 0.5)
    angle = 2 * np.pi * rng.random(n)
    points = radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1)
    return 3 * (points + 0.08 * rng.standard_normal((n, 2)))


def _rings(rng: np.random.Generator, n: int) -> np.ndarray:
    # four concentric rings of radii 0.75, 1.5, 2.25, 3, noise 0.08
    radius = 0.75 * (1 + rng.integers(0, 4, n))
    angle = 2 * np.pi * rng.random(n)
    points = radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1)
    return points + 0.08 * rng.standard_normal((n, 2))


def _moons(rng: np.random.Generator, n: int) -> np.ndarray:
    # sklearn's make_moons(noise=0.1), then 2 x + (-1, -0.2)
    angle = np.pi * rng.random(n)
    upper = rng.random(n) < 0.5
    x = np.where(upper, np.cos(angle), 1 - np.cos(angle))
    y = np.where(upper, np.sin(angle), 0.5 - np.sin(angle))
    points = np.stack([x, y], 1) + 0.1 * rng.standard_normal((n, 2))
    return 2 * points + np.array([-1.0, -0.2])


def _eight_gaussians(rng: np.random.Generator, n: int) -> np.ndarray:
    # centres at radius 4 every 45 degrees, std 0.5, all divided by 1.414
    angle = np.pi / 4 * rng.integers(0, 8, n)
    centres = 4.0 * np.stack([np.cos(angle), np.sin(angle)], 1)
    return (centres + 0.5 * rng.standard_normal((n, 2))) / 1.414


def _pinwheel(rng: np.random.Generator, n: int) -> np.ndarray:
    # five arms: radial std 0.3, tangential std 0.1, rate 0.25, scaled by 2
    arm = rng.integers(0, 5, n)
    features = rng.standard_normal((n, 2)) * np.array([0.3, 0.1])
    features[:, 0] += 1.0
    angle = 2 * np.pi / 5 * arm + 0.25 * np.exp(features[:, 0])
    cos, sin = np.cos(angle), np.sin(angle)
    rotated = np.stack([features[:, 0] * cos + features[:, 1] * sin, -features[:, 0] * sin + features[:, 1] * cos], 1)
    return 2 * rotated


def _two_spirals(rng: np.random.Generator, n: int) -> np.ndarray:
    # two arms of 540 degrees, point-mirrored, /3, noise 0.1
    turn = np.sqrt(rng.random(n)) * 540 * (2 * np.pi) / 360
    arm = np.stack([-np.cos(turn) * turn, np.sin(turn) * turn], 1) + 0.5 * rng.random((n, 2))
    sign = np.where(rng.random(n) < 0.5, 1.0, -1.0)[:, None]
    return sign * arm / 3 + 0.1 * rng.standard_normal((n, 2))


def _checkerboard(rng: np.random.Generator, n: int) -> np.ndarray:
    # uniform on the dark squares of a 4x4 board on [-4, 4]^2
    x1 = 4 * rng.random(n) - 2
    x2 = rng.random(n) - 2 * rng.integers(0, 2, n) + np.floor(x1) % 2
    return 2 * np.stack([x1, x2], 1)


for _name, _generator in (("swissroll", _swissroll), ("circles", _circles), ("rings", _rings), ("moons", _moons),
                         ("8gaussians", _eight_gaussians), ("pinwheel", _pinwheel), ("2spirals", _two_spirals),
                         ("checkerboard", _checkerboard)):
    TOY_SETS.register(_generator, name=_name)


def _check(name: str) -> None:
    TOY_SETS[name]  # refuses an unregistered name


def _chunk(name: str, seed: int, index: int) -> np.ndarray:
    rng = np.random.default_rng([zlib.crc32(name.encode()), seed, index])
    return TOY_SETS[name](rng, CHUNK)


class ToyStream:
    """The infinite, seed-determined sample stream of one toy set.

    ``take(start, n)`` returns samples ``start .. start+n-1`` of the stream (float32),
    whatever the batch size used to read it.
    """

    def __init__(self, name: str, seed: int = 0):
        _check(name)
        self.name, self.seed = name, seed
        self._cache: dict[int, np.ndarray] = {}

    def _get(self, index: int) -> np.ndarray:
        if index not in self._cache:
            if len(self._cache) > 4:
                self._cache.pop(next(iter(self._cache)))
            self._cache[index] = _chunk(self.name, self.seed, index)
        return self._cache[index]

    def take(self, start: int, n: int) -> Tensor:
        out = np.empty((n, 2))
        filled = 0
        while filled < n:
            index, offset = divmod(start + filled, CHUNK)
            count = min(CHUNK - offset, n - filled)
            out[filled: filled + count] = self._get(index)[offset: offset + count]
            filled += count
        return torch.from_numpy(out.astype(np.float32))


def toy_test_set(name: str, size: int = 5000) -> Tensor:
    """The fixed held-out set of ``name``: the same for every run seed, disjoint from training streams."""
    _check(name)
    rng = np.random.default_rng([zlib.crc32(b"test:" + name.encode())])
    return torch.from_numpy(TOY_SETS[name](rng, size).astype(np.float32))


def toy_sample(name: str, n: int, seed: int = 0) -> Tensor:
    """The first ``n`` samples of the stream of ``name`` with ``seed``."""
    return ToyStream(name, seed).take(0, n)

