"""Pictures of a 2-D flow: data | model density | model samples (the paper's Fig. 1)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ..data import toy_test_set  # noqa: E402
from .evaluation import evaluating  # noqa: E402
from .load import load_trained  # noqa: E402

LIMIT = 4.0


def density_grid(flow, n: int = 100, limit: float = LIMIT, batch_size: int = 2500) -> torch.Tensor:
    """p(x) on an n x n grid over [-limit, limit]^2 (rows: y, columns: x)."""
    axis = torch.linspace(-limit, limit, n)
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    points = torch.stack([xs.flatten(), ys.flatten()], 1).to(flow.end_times()[0].T)
    with evaluating(flow):
        logp = torch.cat([flow.log_prob(chunk) for chunk in points.split(batch_size)])
    return logp.exp().reshape(n, n).cpu()


SAMPLE_BATCH = 10000  # samples mapped back at a time


def samples(flow, n: int = 2000, seed: int = 0, temperature: float = 1.0) -> torch.Tensor:
    """``n`` samples drawn at ``temperature`` from a generator seeded with ``seed``, mapped back
    ``SAMPLE_BATCH`` at a time."""
    with evaluating(flow):
        generator = torch.Generator().manual_seed(seed)
        return flow.sample(n, temperature=temperature, generator=generator, batch_size=SAMPLE_BATCH).cpu()


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
    from torchvision.utils import make_grid  # torchvision only where images are drawn

    images = samples(flow, n, seed, temperature)
    return make_grid(images.clamp(0, 1).float(), nrow=int(n ** 0.5), padding=1, pad_value=1.0)


def figure_1(runs: dict, limit: float = LIMIT, grid: int = 100):
    """The paper's Figure 1: for each 2-D set (columns), its data and the density of each mode's
    trained flow (rows), the test NLL in each title. ``runs``: {set: {mode: run directory}}."""
    modes = sorted({mode for by_mode in runs.values() for mode in by_mode}, key=lambda m: (m != "fixed", m))
    fig, axes = plt.subplots(1 + len(modes), len(runs), figsize=(2.2 * len(runs), 2.3 * (1 + len(modes))),
                             squeeze=False)
    for column, (name, by_mode) in enumerate(runs.items()):
        data = toy_test_set(name, 5000).numpy()
        axes[0, column].hist2d(data[:, 0], data[:, 1], bins=100, range=[[-limit, limit]] * 2, cmap="viridis")
        axes[0, column].set_title(f"{name}: data", fontsize=8)
        for row, mode in enumerate(modes, start=1):
            if mode not in by_mode:
                axes[row, column].axis("off")
                continue
            loaded = load_trained(by_mode[mode])
            axes[row, column].imshow(density_grid(loaded.flow, grid, limit).numpy(), origin="lower", cmap="viridis",
                                     extent=[-limit, limit, -limit, limit])
            summary = Path(by_mode[mode]) / "summary.json"
            nll = json.loads(summary.read_text())["test_nll"] if summary.is_file() else float("nan")
            axes[row, column].set_title(f"{mode}: {nll:.3f} nats", fontsize=8)
    for ax in axes.flat:
        ax.set(xticks=[], yticks=[], aspect="equal")
    fig.tight_layout()
    return fig
