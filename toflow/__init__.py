"""toflow: continuous normalizing flows trained fast, with TO-FLOW's trainable end time.

    import toflow
    cfg = toflow.load_config("configs/toy_checkerboard_toflow.yaml", ["trainer.max_steps=500"])
    flow = toflow.build_flow(cfg)
    summary = toflow.train(cfg)
    flow, cfg = toflow.load_flow(summary["log_dir"])
"""

from .config import ConfigError, RunConfig, load_config
from .models import build_flow
from .trainers import train
from .trainers.load import load_flow

__all__ = ["ConfigError", "RunConfig", "build_flow", "load_config", "load_flow", "train"]
__version__ = "0.1.0"
