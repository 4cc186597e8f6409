"""Toy data: seed-determined streams, float32, a fixed test set, the right shapes."""

import numpy as np
import pytest
import torch

from toflow.data import TOY_SETS, ToyStream, toy_sample, toy_test_set
from toflow.data.toy import CHUNK


@pytest.mark.parametrize("name", list(TOY_SETS))
def test_stream_does_not_depend_on_batch_size(name):
    whole = ToyStream(name, seed=5).take(0, 9000)
    stream = ToyStream(name, seed=5)
    pieces, position = [], 0
    for size in (1, 100, 4095, 7, 4797):
        pieces.append(stream.take(position, size))
        position += size
    assert torch.equal(torch.cat(pieces), whole)
    assert whole.dtype == torch.float32 and whole.shape == (9000, 2)
    assert torch.isfinite(whole).all()


def test_a_long_stream_keeps_few_chunks_and_gives_the_same_samples():
    stream = ToyStream("moons", seed=2)
    whole = stream.take(0, 7 * CHUNK)  # seven chunks: the oldest are let go of on the way
    assert len(stream._cache) <= 5
    assert torch.equal(ToyStream("moons", seed=2).take(6 * CHUNK, CHUNK), whole[6 * CHUNK:])
    assert torch.equal(stream.take(0, 10), whole[:10])  # a chunk let go of is drawn again, the same


@pytest.mark.parametrize("name", list(TOY_SETS))
def test_seeds_and_test_set(name):
    a, b = toy_sample(name, 500, seed=0), toy_sample(name, 500, seed=1)
    assert not torch.equal(a, b)
    test = toy_test_set(name, 1000)
    assert torch.equal(test, toy_test_set(name, 1000))
    assert not torch.equal(test[:500], a)
    assert test.abs().max() < 8


def test_checkerboard_lies_on_the_dark_squares():
    x = toy_sample("checkerboard", 20000).numpy()
    assert np.abs(x).max() <= 4
    cell = np.floor(x / 2).astype(int)  # 4x4 board of 2x2 squares
    assert ((cell[:, 0] + cell[:, 1]) % 2 == 0).all()
    counts = np.unique(cell[:, 0] * 10 + cell[:, 1], return_counts=True)[1]
    assert len(counts) == 8 and counts.min() > 0.8 * counts.mean()


def test_eight_gaussians_modes():
    x = toy_sample("8gaussians", 16000).numpy() * 1.414
    angle = np.round(np.arctan2(x[:, 1], x[:, 0]) / (np.pi / 4)) % 8
    assert len(np.unique(angle)) == 8
    radius = np.linalg.norm(x, axis=1)
    assert abs(np.median(radius) - 4.0) < 0.1


def test_unknown_set_is_refused():
    with pytest.raises(ValueError, match="data.name"):
        ToyStream("spiral")


def test_dequantised_pixels_stay_strictly_inside_the_unit_interval():
    from toflow.data import dequantize

    # (255 + u) / 256 rounds to exactly 1.0 in float32 for u within 2^-16 of 1: about 15 in 2 million draws
    values = torch.full((2_000_000,), 255, dtype=torch.uint8)
    top = dequantize(values, 256, torch.Generator().manual_seed(0))
    bottom = dequantize(torch.zeros(2_000_000, dtype=torch.uint8), 256, torch.Generator().manual_seed(0))
    assert top.max() < 1.0 and bottom.min() > 0.0
    assert top.dtype == torch.float32 and top.min() >= 255 / 256


def test_dequantisation_clamps_onto_the_float32_neighbours_of_0_and_1():
    from toflow.data import dequantize

    # values outside [0, L) land past the ends for every u, so every pixel meets the clamp
    above = dequantize(torch.full((100,), 256), 256, torch.Generator().manual_seed(0))
    below = dequantize(torch.full((100,), -1), 256, torch.Generator().manual_seed(0))
    largest_below_1 = torch.nextafter(torch.tensor(1.0), torch.tensor(0.0))
    assert torch.equal(above, torch.full((100,), largest_below_1.item()))  # 1 - 2^-24, where the logit is finite
    assert torch.equal(below, torch.full((100,), torch.finfo(torch.float32).tiny))
