"""Pictures of a 2-D flow: data | model density | model samples (the paper's Fig. 1)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from .evaluation import evaluating  # noqa: E402

LIMIT = 4.0


def density_grid(flow, n: int = 100, limit: float = LIMIT, batch_size: int = 2500) -> torch.Tensor:
    """p(x) on an n x n grid over [-limit, limit]^2 (rows: y, columns: x)."""
    axis = torch.linspace(-limit, limit, n)
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    points = torch.stack([xs.flatten(), ys.flatten()], 1).to(flow.end_times()[0].T)
    with evaluating(flow):
        logp = torch.cat([flow.log_prob(chunk) for chunk in points.split(batch_size)])
    return logp.exp().reshape(n, n).cpu()


def samples(flow, n: int = 2000, seed: int = 0, temperature: float = 1.0) -> torch.Tensor:
    """``n`` samples drawn at ``temperature`` from a generator seeded with ``seed``."""
    with evaluating(flow):
        return flow.sample(n, temperature=temperature, generator=torch.Generator().manual_seed(seed)).cpu()


def figure_2d(flow, data: torch.Tensor, title: str = "", limit: float = LIMIT, grid: int = 100):
    """A matplotlib figure with three panels: data, model density, model samples."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.2))
    bins, extent = 100, [[-limit, limit], [-limit, limit]]
    data = data.cpu().numpy()
    axes[0].hist2d(data[:, 0], data[:, 1], bins=bins, range=extent, cmap="viridis")
    axes[0].set_title("data")
    axes[1].imshow(density_grid(flow, grid, limit).numpy(), origin="lower", cmap="viridis",
                   extent=[-limit, limit, -limit, limit])
    axes[1].set_title("model density")
    drawn = samples(flow, len(data)).numpy()
    axes[2].hist2d(drawn[:, 0], drawn[:, 1], bins=bins, range=extent, cmap="viridis")
    axes[2].set_title("model samples")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def sample_grid(flow, n: int = 64, temperature: float = 1.0, seed: int = 0) -> torch.Tensor:
    """A grid image (C, H', W') of ``n`` samples drawn at ``temperature``, values in [0, 1]."""
    from torchvision.utils import make_grid

    images = samples(flow, n, seed, temperature)
    return make_grid(images.clamp(0, 1).float(), nrow=int(n ** 0.5), padding=1, pad_value=1.0)
