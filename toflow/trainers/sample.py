"""``python -m toflow.trainers.sample RUN [--n N] [--temperature T] [--seed S] [--out FILE]``:
samples of a trained flow.

``.png`` draws them (2-D: the samples beside the model density; images: a grid), ``.pt``
and ``.npy`` keep the raw samples, (N, 2) or (N, C, H, W). The same seed gives the same
samples. It prints the checkpoint and step it used and the NFE sampling took.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import UsageError
from .commands import run_command


def _sample(args: argparse.Namespace) -> int:
    from ..data import IMAGE_SETS  # torch loads only once the arguments are accepted
    from .load import load_trained
    from .sampling import FORMATS, draw, free_memory, memory_needed, save

    loaded = load_trained(args.run, args.which)
    out = Path(args.out) if args.out else loaded.checkpoint.parent.parent / "sampled.png"
    if out.suffix not in FORMATS:
        raise UsageError(f"--out: {out} should end in {', '.join(FORMATS)}")
    n = args.n if args.n is not None else (64 if loaded.cfg.data.name in IMAGE_SETS else 2000)
    if n < 1 or not args.temperature > 0:
        raise UsageError(f"--n and --temperature: must be positive, got {n} and {args.temperature}")
    need, free = memory_needed(loaded.flow, n), free_memory()
    if need > free / 2:
        raise UsageError(f"--n: {n:,} samples need about {need / 2**30:.1f} GiB, more than half the memory free on "
                         f"this machine ({free / 2**30:.1f} GiB); ask for fewer, in several calls with other --seed")
    drawn, nfe = draw(loaded.flow, n, args.temperature, args.seed)
    save(drawn, loaded.flow, out, f"{loaded.cfg.name}: {n} samples, step {loaded.step}")
    print(f"{n} samples from {loaded.checkpoint} (step {loaded.step}), temperature {args.temperature}, seed "
          f"{args.seed}: {nfe} NFE -> {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m toflow.trainers.sample", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a run directory or a .ckpt file")
    parser.add_argument("--n", type=int, default=None, help="how many samples (default 2000; images: 64)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="FILE.png, .pt or .npy (default: RUN/sampled.png)")
    parser.add_argument("--which", default="best", choices=("best", "last"), help="the checkpoint of a run")
    return run_command(parser, _sample, argv)


if __name__ == "__main__":
    sys.exit(main())
