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

import numpy as np
import torch

from ..data import IMAGE_SETS
from .commands import run_command
from .load import load_trained
from .plots import samples
from .reliability import CheckpointError

FORMATS = (".png", ".pt", ".npy")


def draw(flow, n: int, temperature: float = 1.0, seed: int = 0) -> tuple[torch.Tensor, int]:
    """``n`` samples at ``temperature`` from a generator seeded with ``seed``, and the NFE they took."""
    flow.reset_nfe()
    drawn = samples(flow, n, seed, temperature)
    return drawn, flow.nfe["forward"]


def save(drawn: torch.Tensor, flow, out: Path, title: str = "") -> None:
    """Write ``drawn`` to ``out`` as its suffix says."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".pt":
        torch.save(drawn, out)
    elif out.suffix == ".npy":
        np.save(out, drawn.numpy())
    elif drawn.dim() == 2:
        import matplotlib.pyplot as plt

        from .plots import LIMIT, density_grid

        fig, axes = plt.subplots(1, 2, figsize=(8, 4.2))
        axes[0].hist2d(drawn[:, 0].numpy(), drawn[:, 1].numpy(), bins=100, range=[[-LIMIT, LIMIT]] * 2,
                       cmap="viridis")
        axes[0].set_title(f"{len(drawn)} samples")
        axes[1].imshow(density_grid(flow).numpy(), origin="lower", cmap="viridis", extent=[-LIMIT, LIMIT] * 2)
        axes[1].set_title("model density")
        for ax in axes:
            ax.set(xticks=[], yticks=[], aspect="equal")
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(out, dpi=100)
        plt.close(fig)
    else:
        from torchvision.utils import make_grid, save_image

        save_image(make_grid(drawn.clamp(0, 1).float(), nrow=max(1, int(len(drawn) ** 0.5)), padding=1,
                             pad_value=1.0), out)


def _sample(args: argparse.Namespace) -> int:
    loaded = load_trained(args.run, args.which)
    out = Path(args.out) if args.out else loaded.checkpoint.parent.parent / "sampled.png"
    if out.suffix not in FORMATS:
        raise CheckpointError(f"--out: {out} should end in {', '.join(FORMATS)}")
    n = args.n if args.n is not None else (64 if loaded.cfg.data.name in IMAGE_SETS else 2000)
    if n < 1 or not args.temperature > 0:
        raise CheckpointError(f"--n and --temperature: must be positive, got {n} and {args.temperature}")
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
