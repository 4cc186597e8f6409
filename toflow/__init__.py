"""toflow: continuous normalizing flows trained fast, with TO-FLOW's trainable end time.

    import toflow
    cfg = toflow.load_config("configs/toy_checkerboard_toflow.yaml", ["trainer.max_steps=500"])
    flow = toflow.build_flow(cfg)
    summary = toflow.train(cfg)
    flow, cfg = toflow.load_flow(summary["log_dir"])

The names below are imported when first used, so that ``import toflow`` (and every command's
start-up) stays light until torch or Lightning is needed.
"""

from importlib import import_module

from .config import RunConfig, load_config
from .errors import ConfigError

_LAZY = {"build_flow": "toflow.config.components", "train": "toflow.trainers.train",
         "load_flow": "toflow.trainers.load"}

__all__ = ["ConfigError", "RunConfig", "build_flow", "load_config", "load_flow", "train"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'toflow' has no attribute {name!r}")
