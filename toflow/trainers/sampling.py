"""Samples of a trained flow, drawn from a seed and saved as a picture or as raw arrays (the
``sample`` command's work)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from .plots import LIMIT, density_grid, plt, samples

FORMATS = (".png", ".pt", ".npy")


def memory_needed(flow, n: int) -> int:
    """Bytes that ``n`` samples take while they are drawn: the noise, the samples and their copy on the CPU."""
    ref = flow.end_times()[0].T
    return 3 * n * math.prod(flow.latent_shape) * ref.element_size()


def free_memory() -> int:
    """Bytes of memory free on this machine now."""
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


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
        from torchvision.utils import make_grid, save_image  # torchvision only where images are drawn

        save_image(make_grid(drawn.clamp(0, 1).float(), nrow=max(1, int(len(drawn) ** 0.5)), padding=1,
                             pad_value=1.0), out)
