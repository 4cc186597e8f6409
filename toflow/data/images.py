"""Image data sets as uint8 tensors (N, C, H, W).

MNIST, Fashion-MNIST and CIFAR-10 are read through torchvision from ``data.root``
(``<root>/MNIST/raw``, ``<root>/FashionMNIST/raw``, ``<root>/cifar-10-batches-py``);
nothing is downloaded: a missing set stops with one line saying which files to put
where. IDX files may lie there gzipped; Fashion-MNIST is also taken from the gzip files
of Debian's ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist/``). Either
is unpacked once into ``data.root``, each file whole or not at all (runs may start on it
together). scikit-learn's 8x8 digits (17 grey levels) make a tiny real set. Their
dequantisation is in :mod:`toflow.data.dequantization`.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import DataError

IMAGE_SETS = ("mnist", "fashion_mnist", "cifar10", "digits")
SHAPES = {"mnist": (1, 28, 28), "fashion_mnist": (1, 28, 28), "cifar10": (3, 32, 32), "digits": (1, 8, 8)}
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")


def image_shape(name: str, resize: int | None = None) -> tuple:
    """(C, H, W) of the set's images after ``resize``."""
    c, h, w = SHAPES[name]
    return (c, resize, resize) if resize else (c, h, w)


def levels(name: str) -> int:
    return 17 if name == "digits" else 256


def origin(name: str, root: str | Path = "data") -> str:
    """Where :func:`load_images` reads ``name`` from, in words (said before it reads)."""
    root = Path(root)
    if name == "digits":
        return "scikit-learn's 8x8 digits (sklearn.datasets.load_digits)"
    if name == "cifar10":
        return str(root / "cifar-10-batches-py")
    raw = root / ("MNIST" if name == "mnist" else "FashionMNIST") / "raw"
    if all((raw / f).is_file() for f in MNIST_FILES):
        return str(raw)
    if all((raw / f"{f}.gz").is_file() for f in MNIST_FILES):
        return f"{raw} (its .gz files, unpacked there)"
    if name == "fashion_mnist" and all((DEBIAN_FASHION / f"{f}.gz").is_file() for f in MNIST_FILES):
        return f"{DEBIAN_FASHION} (Debian's dataset-fashion-mnist; data.root {root} has none), unpacked into {raw}"
    return f"{raw} (missing)"


def _dataset_class(name: str):
    from torchvision import datasets  # torchvision only where an image set is read

    return {"mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST, "cifar10": datasets.CIFAR10}[name]


def _sources(cls) -> list[str]:
    """Where torchvision downloads ``cls`` from."""
    return list(cls.mirrors) if hasattr(cls, "mirrors") else [cls.url]


def fetch(name: str, root: Path) -> None:
    """Download ``name`` into ``root`` with torchvision (which checks each file's MD5), through a
    scratch folder beside it, so that a failed or stopped download leaves nothing to be mistaken
    for data.

    Args:
        name: ``mnist``, ``fashion_mnist`` or ``cifar10``.
        root: ``data.root``.

    Raises:
        DataError: One line saying what was tried, why it failed and where to put the files.
    """
    cls = _dataset_class(name)
    folder = "cifar-10-batches-py" if name == "cifar10" else cls.__name__
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root, prefix=".downloading-") as scratch, \
                contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            cls(scratch, train=True, download=True)
            cls(scratch, train=False, download=True)
            if not (root / folder).exists():
                (Path(scratch) / folder).rename(root / folder)
    except Exception as err:  # torchvision raises several kinds for an unreachable network or a bad file
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:120]
        raise DataError(f"data.name={name}: not found in {root}, and the download from {', '.join(_sources(cls))} "
                        f"failed ({reason}); put the files in {root / folder}, or set data.download=false to "
                        "read only what is there") from None


def _mnist_like(name: str, root: Path, train: bool, download: bool) -> Tensor:
    cls = _dataset_class(name)
    raw = root / cls.__name__ / "raw"
    missing = [f for f in MNIST_FILES if not (raw / f).is_file()]
    sources = [raw] + ([DEBIAN_FASHION] if name == "fashion_mnist" else [])
    for source in sources:  # unpack gzip files lying in raw/ or Debian's folder, once
        if missing and all((source / f"{f}.gz").is_file() for f in missing):
            from torchvision.datasets.utils import extract_archive  # torchvision only where an image set is read

            try:
                raw.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryDirectory(dir=raw, prefix=".unpacking-") as scratch:
                    for f in missing:  # a file appears in raw/ whole or not at all, even with runs started together
                        _unpack(extract_archive, source / f"{f}.gz", scratch, name)
                        os.replace(Path(scratch) / f, raw / f)
            except OSError as err:
                raise DataError(f"data.root: cannot unpack {name} into {raw} ({err.strerror or err})") from None
            missing = [f for f in MNIST_FILES if not (raw / f).is_file()]
    if missing and download:
        fetch(name, root)
        missing = [f for f in MNIST_FILES if not (raw / f).is_file()]
    if missing:
        hint = " (or install Debian's dataset-fashion-mnist)" if name == "fashion_mnist" else ""
        raise DataError(f"data.name={name}: missing {', '.join(missing)} in {raw}; put the IDX files (or their "
                        f".gz) there{hint}")
    try:
        images = cls(str(root), train=train, download=False).data
    except Exception:  # a corrupt file: torchvision's words say little
        raise DataError(f"data.name={name}: the files in {raw} are not {name}'s IDX files (cut short or damaged); "
                        "remove them and unpack or fetch them again") from None
    return images[:, None]


def _unpack(extract_archive, archive: Path, into: str, name: str) -> None:
    try:
        extract_archive(str(archive), into)
    except (EOFError, ValueError, zlib.error) as err:  # gzip's refusal of a file cut short or not gzip
        raise DataError(f"data.name={name}: cannot unpack {archive}: it is cut short or not a gzip file "
                        f"({type(err).__name__})") from None


def _cifar10(root: Path, train: bool, download: bool) -> Tensor:
    folder = root / "cifar-10-batches-py"
    if not folder.is_dir() and download:
        fetch("cifar10", root)
    if not folder.is_dir():
        raise DataError(f"data.name=cifar10: missing {folder}; unpack cifar-10-python.tar.gz into {root}")
    try:
        images = _dataset_class("cifar10")(str(root), train=train, download=False).data
    except Exception:  # a corrupt file: torchvision's words say little
        raise DataError(f"data.name=cifar10: the files in {folder} are not CIFAR-10's (cut short or damaged); "
                        "remove them and unpack or fetch them again") from None
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def _digits(train: bool) -> Tensor:
    from sklearn.datasets import load_digits  # scikit-learn only where the digits are read

    images = torch.from_numpy(load_digits().images.astype(np.uint8))[:, None]
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    cut = len(images) - 300
    return images[order[:cut] if train else order[cut:]]


def load_images(name: str, root: str | Path = "data", train: bool = True, resize: int | None = None,
                subset: int | None = None, download: bool = True) -> Tensor:
    """The train or test images of ``name`` as uint8 (N, C, H, W), optionally resized
    (antialiased, then rounded) and cut to the first ``subset``."""
    root = Path(root)
    if name in ("mnist", "fashion_mnist"):
        images = _mnist_like(name, root, train, download)
    elif name == "cifar10":
        images = _cifar10(root, train, download)
    elif name == "digits":
        images = _digits(train)
    else:
        raise DataError(f"data.name: '{name}' is not one of {', '.join(IMAGE_SETS)}")
    if subset:
        images = images[:subset]
    if resize and resize != images.shape[-1]:
        scaled = F.interpolate(images.float(), size=(resize, resize), mode="bilinear", antialias=True,
                               align_corners=False)
        images = scaled.round().clamp(0, levels(name) - 1).to(torch.uint8)
    return images.contiguous()
