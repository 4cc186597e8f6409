"""The flow moving: frames from t0 to T, drawn into a GIF (the ``animate`` command's work).

K frames at times t_k from t0 (the data side) to T (the noise side). For 2-D runs, FFJORD's
trajectory picture: the density of the data carried to t_k,

    log p_t(y) = log N(z(T); 0, I) + int_t^T Tr(df/dz) ds,   z the solution from y at t,

and particles: samples drawn at T and carried back to t_k. For images, a grid of samples
carried back part of the way, (T - t_k) of it, in every block. Frames go to a GIF through
matplotlib's animation and Pillow.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
from matplotlib.animation import FuncAnimation, PillowWriter

from .evaluation import evaluating
from .plots import LIMIT, plt


class Frame(NamedTuple):
    t: float  # the block's time
    density: torch.Tensor | None  # (n, n) over [-limit, limit]^2, rows y, columns x (2-D)
    particles: torch.Tensor  # samples carried back to t: (m, 2), or images (m, C, H, W)


def density_at(block, t: float, points: torch.Tensor) -> torch.Tensor:
    """p_t at ``points``: the data's density carried by the flow from t0 to time t."""
    T = float(block.end_time.t_span()[-1])
    state = torch.cat([points, points.new_zeros(len(points), 1 + len(block.regularizers))], 1)
    tol = block.solver.tolerance(False, block.dynamics.numel)
    end = block.solver.integrate(block.dynamics, state, t, T, tol) if t < T else state
    z, minus_trace = end[:, : block.dynamics.numel], end[:, block.dynamics.numel]
    return (-0.5 * (z.pow(2).sum(1) + z.shape[1] * torch.log(torch.tensor(2 * torch.pi))) - minus_trace).exp()


def frames(flow, k: int = 16, grid: int = 80, particles: int = 1000, seed: int = 0, limit: float = LIMIT) -> list:
    """``k`` frames from t0 to T (see the module's docstring)."""
    first = flow.blocks()[0]
    out = []
    with evaluating(flow, seed):
        t0, T = (float(v) for v in first.end_time.t_span())
        for index in range(k):
            share = index / max(k - 1, 1)  # 0 at t0, 1 at T
            t = t0 + share * (T - t0)
            moved = flow.sample(particles, generator=torch.Generator().manual_seed(seed), fraction=1 - share)
            density = None
            if len(flow.blocks()) == 1 and first.event_shape == (2,):
                axis = torch.linspace(-limit, limit, grid, dtype=first.end_time.T.dtype)
                ys, xs = torch.meshgrid(axis, axis, indexing="ij")
                density = density_at(first, t, torch.stack([xs.flatten(), ys.flatten()], 1)).reshape(grid, grid)
            out.append(Frame(t, density, moved))
    return out


def write_gif(shots: list, out: Path, title: str = "", fps: int = 4, limit: float = LIMIT) -> None:
    two_d = shots[0].density is not None
    fig, axes = plt.subplots(1, 2 if two_d else 1, figsize=(8 if two_d else 4.5, 4.4), squeeze=False)
    axes = axes[0]

    def draw(index: int):
        shot = shots[index]
        for ax in axes:
            ax.clear()
            ax.set(xticks=[], yticks=[])
        if two_d:
            axes[0].imshow(shot.density.numpy(), origin="lower", cmap="viridis", extent=[-limit, limit] * 2)
            axes[0].set_title("density")
            axes[1].scatter(shot.particles[:, 0], shot.particles[:, 1], s=1, alpha=0.5)
            axes[1].set(xlim=(-limit, limit), ylim=(-limit, limit), aspect="equal", title="particles")
        else:
            from torchvision.utils import make_grid  # torchvision only where images are drawn

            grid = make_grid(shot.particles.clamp(0, 1).float(), nrow=max(1, int(len(shot.particles) ** 0.5)),
                             padding=1, pad_value=1.0)
            axes[0].imshow(grid.permute(1, 2, 0).numpy(), cmap="gray")
        fig.suptitle(f"{title}  t = {shot.t:.3f}".strip())
        return list(axes)

    animation = FuncAnimation(fig, draw, frames=len(shots), blit=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    animation.save(out, writer=PillowWriter(fps=fps))
    plt.close(fig)


def animate(flow, out: Path, k: int = 16, title: str = "", seed: int = 0) -> list:
    """Draw ``k`` frames of ``flow`` into the GIF ``out``; return the frames."""
    images = len(flow.blocks()[0].event_shape) > 1  # the first block sees (C, H, W) in an image flow
    shots = frames(flow, k, particles=64 if images else 1000, seed=seed)
    write_gif(shots, out, title)
    return shots
