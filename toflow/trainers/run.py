"""Command line: ``python -m toflow.trainers.run CONFIG.yaml [key=value ...]``."""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

from ..config import ConfigError, load_config
from ..data import DataError
from ..solvers import SolverError
from .module import NonFiniteTraining
from .reliability import CheckpointError, Interrupted
from .train import train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m toflow.trainers.run",
                                     description="Train a continuous normalizing flow from a YAML config.")
    parser.add_argument("config", help="YAML config, e.g. configs/toy_checkerboard_toflow.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. trainer.max_steps=500")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)
    if not args.debug:
        for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        cfg = load_config(args.config, args.overrides)
        summary = train(cfg)
        if not summary:  # a data-parallel process other than the first
            return 0
    except (ConfigError, DataError, CheckpointError, SolverError, NonFiniteTraining) as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 1 if isinstance(err, (SolverError, NonFiniteTraining)) else 2  # 2: bad input; 1: training failed
    except Interrupted as stop:
        print(f"{stop}", file=sys.stderr)
        return 128 + stop.signum
    score = (f"test {summary['test_bpd']:.4f} bits/dim" if "test_bpd" in summary
             else f"test NLL {summary['test_nll']:.4f} nats")
    print(f"{summary['name']} [{summary['objective']}, {summary['mode']}, {summary['solver']}]: {score} | "
          f"steps {summary['steps']} | NFE fwd {summary['nfe_forward_mean']:.1f} bwd {summary['nfe_backward_mean']:.1f} "
          f"| {summary['time_per_iter_s']:.3f} s/step | T {', '.join(f'{T:.3f}' for T in summary['end_times'])} "
          f"| sampling NFE {summary['sample_nfe']:.0f}")
    board = shutil.which("tensorboard") or str(Path(sys.executable).with_name("tensorboard"))
    print(f"run: {summary['log_dir']}  (open it with: {board} --logdir {summary['log_dir']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
