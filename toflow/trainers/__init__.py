"""Training: the Lightning module (coordinate descent), ``train``, the CLI."""

from .module import FlowModule, mean_nll
from .objective import objective
from .temporal import temporal_step
from .train import SUMMARY_KEYS, train

__all__ = ["FlowModule", "SUMMARY_KEYS", "mean_nll", "objective", "temporal_step", "train"]
