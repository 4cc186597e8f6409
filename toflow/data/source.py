"""One interface over the toy and image sets: training batches, the test set, the event shape."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor
from torch.utils.data import IterableDataset

from .dequantization import ImageBatches, image_test_set
from .images import IMAGE_SETS, image_shape, levels, load_images, origin
from .toy import TOY_SETS, ToyStream, toy_test_set


class ToyBatches(IterableDataset):
    """Successive batches of a toy stream from sample ``start``; process ``rank`` of ``world``
    takes its contiguous share of each global batch."""

    def __init__(self, stream: ToyStream, batch_size: int, start: int = 0, rank: int = 0, world: int = 1):
        self.stream, self.batch_size, self.start = stream, batch_size, start
        self.rank, self.world = rank, world

    def __iter__(self):
        position, share = self.start, self.batch_size // self.world
        while True:
            yield self.stream.take(position + self.rank * share, share)
            position += self.batch_size


@dataclass
class DataSource:
    """``levels``: grey levels of a quantised image set (bits/dim apply), None for 2-D data."""

    name: str
    event_shape: tuple
    test: Tensor
    levels: int | None
    _train_images: Tensor | None = None
    _seed: int = 0
    origin: str = ""  # where the data came from, in words

    @property
    def dim(self) -> int:
        return math.prod(self.event_shape)

    @property
    def is_image(self) -> bool:
        return self.levels is not None

    def train_batches(self, batch_size: int, batches_done: int = 0, rank: int = 0, world: int = 1) -> IterableDataset:
        """The global training batches from batch ``batches_done`` on (the same for any resume
        point), of which process ``rank`` of ``world`` sees its 1/world share."""
        if self.is_image:
            return ImageBatches(self._train_images, batch_size, self.levels, self._seed, batches_done, rank, world)
        return ToyBatches(ToyStream(self.name, self._seed), batch_size, batches_done * batch_size, rank, world)


def data_sets() -> tuple[str, ...]:
    """The names ``data.name`` takes: the registered toy sets, then the image sets."""
    return (*TOY_SETS, *IMAGE_SETS)


def check_data(name: str, root: str = "data", batch_size: int = 512, test_size: int = 5000,
               resize: int | None = None, subset: int | None = None, download: bool = True) -> None:
    """Refuse a data setting out of range (one line naming its key), before anything is read."""
    if name not in data_sets():
        raise ValueError(f"data.name: '{name}' is not one of {', '.join(data_sets())}")
    for key, value in (("batch_size", batch_size), ("test_size", test_size), ("resize", resize), ("subset", subset)):
        if value is not None and value <= 0 or value is None and key in ("batch_size", "test_size"):
            raise ValueError(f"data.{key}: must be positive, got {value}")
    if resize is not None and resize % 2:
        raise ValueError(f"data.resize: must be even (the multiscale flow squeezes by 2), got {resize}")
    if name in TOY_SETS and (resize is not None or subset is not None):
        raise ValueError(f"data.{'resize' if resize is not None else 'subset'}: not used by the 2-D set {name}")


def event_shape(name: str, resize: int | None = None) -> tuple:
    return image_shape(name, resize) if name in IMAGE_SETS else (2,)


def make_source(name: str, seed: int = 0, root: str = "data", test_size: int = 5000, resize: int | None = None,
                subset: int | None = None, download: bool = True) -> DataSource:
    """The data set ``name``: its test set now, its training batches on demand."""
    check_data(name, root, test_size=test_size, resize=resize, subset=subset)
    if name in TOY_SETS:
        return DataSource(name, (2,), toy_test_set(name, test_size), None, None, seed,
                          f"generated: training stream from seed {seed}, a fixed test set of {test_size}")
    where = origin(name, root)
    n_levels = levels(name)
    train = load_images(name, root, train=True, resize=resize, subset=subset, download=download)
    test = load_images(name, root, train=False, resize=resize, download=download)[:test_size]
    return DataSource(name, tuple(train.shape[1:]), image_test_set(test, n_levels), n_levels, train, seed,
                      f"{len(train)} training and {len(test)} test images from {where}")
