"""``python -m toflow.trainers.animate RUN [--frames K] [--out flow.gif]``: the flow moving.

K frames at times from t0 (the data side) to T (the noise side): for 2-D runs the density of
the data carried to each time beside particles carried back from the noise, for images a grid
of samples carried back part of the way (:mod:`toflow.trainers.animation`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import UsageError
from .commands import run_command


def _animate(args: argparse.Namespace) -> int:
    if args.frames < 2:
        raise UsageError(f"--frames: at least 2, got {args.frames}")
    from .animation import animate  # torch and matplotlib load only once the arguments are accepted
    from .load import load_trained

    loaded = load_trained(args.run, args.which)
    out = Path(args.out) if args.out else loaded.checkpoint.parent.parent / "flow.gif"
    animate(loaded.flow, out, args.frames, f"{loaded.cfg.name}, step {loaded.step}", args.seed)
    print(f"{args.frames} frames from {loaded.checkpoint} (step {loaded.step}) -> {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m toflow.trainers.animate", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a run directory or a .ckpt file")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--out", default=None, help="the GIF (default: RUN/flow.gif)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--which", default="best", choices=("best", "last"), help="the checkpoint of a run")
    return run_command(parser, _animate, argv)


if __name__ == "__main__":
    sys.exit(main())
