"""Lightning callbacks: periodic pictures (2-D: data | density | samples; images: a sample grid)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pytorch_lightning as pl

from .plots import figure_2d, sample_grid


class DensityPlots(pl.Callback):
    """Every ``every`` steps: Fig. 1's three panels to TensorBoard (``density``) and to
    ``<run>/plots/step_<n>.png``."""

    def __init__(self, every: int, folder: Path, data):
        self.every, self.folder, self.data = every, Path(folder), data

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        step = trainer.global_step
        if step % self.every or not trainer.is_global_zero:
            return
        fig = figure_2d(module.flow, self.data, title=f"step {step}")
        self.folder.mkdir(parents=True, exist_ok=True)
        fig.savefig(self.folder / f"step_{step:06d}.png", dpi=80)
        if trainer.logger is not None:
            trainer.logger.experiment.add_figure("density", fig, step)
        plt.close(fig)


class SampleGrids(pl.Callback):
    """Every ``every`` steps: a grid of samples at ``temperature`` to TensorBoard (``samples``)
    and to ``<run>/plots/samples_<n>.png``."""

    def __init__(self, every: int, folder: Path, temperature: float = 1.0):
        self.every, self.folder, self.temperature = every, Path(folder), temperature

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        step = trainer.global_step
        if step % self.every or not trainer.is_global_zero:
            return
        save_grid(module.flow, self.folder / f"samples_{step:06d}.png", self.temperature, trainer.logger, step)


def save_grid(flow, path: Path, temperature: float, logger=None, step: int = 0) -> None:
    from torchvision.utils import save_image  # torchvision only where images are drawn

    grid = sample_grid(flow, temperature=temperature)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, path)
    if logger is not None:
        logger.experiment.add_image("samples", grid, step)
