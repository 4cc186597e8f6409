import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> None:
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(str(path), "wb").write(data)


@pytest.fixture
def fake_mnist(tmp_path: Path) -> Path:
    """A data root holding 48 training and 16 test MNIST-shaped images of smooth blobs."""
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 48), ("t10k", 16)):
        # smooth blobs, so the images have structure
        yy, xx = np.mgrid[:28, :28]
        centres = rng.uniform(8, 20, size=(n, 2))
        images = 255 * np.exp(-((yy[None] - centres[:, :1, None]) ** 2 + (xx[None] - centres[:, 1:, None]) ** 2) / 40)
        write_idx(raw / f"{split}-images-idx3-ubyte", images)
        write_idx(raw / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, n))
    return tmp_path / "data"
