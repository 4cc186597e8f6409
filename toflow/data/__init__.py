"""Data: the 2-D toy sets and their streams, image sets and their dequantisation."""

from .images import IMAGE_SETS, DataError, bits_per_dim, dequantize, image_shape, load_images
from .source import DATA_SETS, DataSource, check_data, event_shape, make_source
from .toy import TOY_SETS, ToyStream, toy_sample, toy_test_set

__all__ = ["DATA_SETS", "DataError", "DataSource", "IMAGE_SETS", "TOY_SETS", "ToyStream", "bits_per_dim", "check_data",
           "dequantize",
           "event_shape", "image_shape", "load_images", "make_source", "toy_sample", "toy_test_set"]
