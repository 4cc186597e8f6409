"""Command line: ``python -m toflow.trainers.run CONFIG.yaml [key=value ...]``."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from ..config import RunConfig, load_config
from ..errors import ConfigError
from .commands import run_command


def config_of(args: argparse.Namespace) -> RunConfig:
    """The config the command line describes: a YAML file and overrides, or with ``--resume`` the
    run's own config, its overrides, and the run to continue."""
    if args.resume is None:
        if args.config is None:
            raise ConfigError("config: give a YAML config, or --resume RUN_DIR")
        return load_config(args.config, args.overrides)
    run = Path(args.resume)
    if not (run / "config.yaml").is_file():
        raise ConfigError(f"--resume: {run} holds no run (no config.yaml)")
    if args.config and "=" not in args.config:
        raise ConfigError(f"--resume: {run} continues with its own config; leave {args.config} out (key=value "
                          "overrides may follow)")
    overrides = ([args.config] if args.config else []) + list(args.overrides)
    return load_config(run / "config.yaml", [*overrides, "trainer.resume=true", f"trainer.log_dir={run}"])


def _train(args: argparse.Namespace) -> int:
    cfg = config_of(args)
    from .evaluation import describe  # Lightning and the trainer load only once the config is valid
    from .train import train

    summary = train(cfg, verbose=args.verbose or args.debug)
    if not summary:  # a data-parallel process other than the first
        return 0
    score = describe(summary)
    nfe = f"NFE fwd {summary['nfe_forward_mean']:.1f} bwd {summary['nfe_backward_mean']:.1f}"
    end_times = ", ".join(f"{T:.3f}" for T in summary["end_times"])
    print(f"{summary['name']} [{summary['objective']}, {summary['mode']}, {summary['solver']}]: {score} | "
          f"steps {summary['steps']} | {nfe} | {summary['time_per_iter_s']:.3f} s/step | T {end_times} "
          f"| sampling NFE {summary['sample_nfe']:.0f}")
    board = shutil.which("tensorboard") or str(Path(sys.executable).with_name("tensorboard"))
    print(f"run: {summary['log_dir']}  (open it with: {board} --logdir {summary['log_dir']})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m toflow.trainers.run",
                                     description="Train a continuous normalizing flow from a YAML config.")
    parser.add_argument("config", nargs="?", help="YAML config, e.g. configs/toy_checkerboard_toflow.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. trainer.max_steps=500")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR with its own config")
    parser.add_argument("--verbose", action="store_true", help="let Lightning's banners, tips and notices through")
    return run_command(parser, _train, argv)


if __name__ == "__main__":
    sys.exit(main())
