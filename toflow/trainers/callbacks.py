"""Lightning callbacks: the periodic data | density | samples picture."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pytorch_lightning as pl

from .plots import figure_2d


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
