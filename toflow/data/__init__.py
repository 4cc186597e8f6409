"""Data: the 2-D toy sets and their streams, image sets and their dequantisation."""

from ..errors import DataError
from .dequantization import bits_per_dim, dequantize
from .images import IMAGE_SETS, image_shape, load_images
from .source import DataSource, check_data, data_sets, event_shape, make_source
from .toy import TOY_SETS, ToyStream, toy_sample, toy_test_set

__all__ = ["DataError", "DataSource", "IMAGE_SETS", "TOY_SETS", "ToyStream", "bits_per_dim", "check_data", "data_sets",
           "dequantize",
           "event_shape", "image_shape", "load_images", "make_source", "toy_sample", "toy_test_set"]
