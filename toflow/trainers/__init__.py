"""Training: the Lightning module (coordinate descent), ``train``, the CLI."""

from .evaluation import EVAL_SEED, evaluating, mean_nll
from .module import FlowModule
from .objective import objective
from .temporal import TimeStep, temporal_step
from .train import SUMMARY_KEYS, train

__all__ = ["EVAL_SEED", "FlowModule", "SUMMARY_KEYS", "TimeStep", "evaluating", "mean_nll", "objective",
           "temporal_step", "train"]
