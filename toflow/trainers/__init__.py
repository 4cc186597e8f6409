"""Training: the Lightning module (coordinate descent), ``train``, the CLI."""

from .evaluation import EVAL_SEED, evaluating, mean_nll
from .module import FlowModule
from .objective import OBJECTIVES, build_objective, objective, register_objective
from .temporal import TimeStep, temporal_step
from .train import SUMMARY_KEYS, train

__all__ = ["EVAL_SEED", "FlowModule", "OBJECTIVES", "SUMMARY_KEYS", "TimeStep", "build_objective", "evaluating",
           "mean_nll", "objective", "register_objective", "temporal_step", "train"]
