"""Training: the Lightning module (coordinate descent), the T step, ``train``, evaluation and
the commands. The names below are imported when first used, so that a command can refuse bad
input before Lightning loads."""

from importlib import import_module

_LAZY = {"EVAL_SEED": "evaluation", "evaluating": "evaluation", "mean_nll": "evaluation", "FlowModule": "module",
         "TimeStep": "temporal", "temporal_step": "temporal", "SUMMARY_KEYS": "train", "train": "train"}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
