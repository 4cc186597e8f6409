"""Which checkpoints a run keeps, and which one a run directory gives.

A run keeps ``checkpoints/best.ckpt`` (the lowest test NLL so far) and ``checkpoints/last.ckpt`` (every
``trainer.checkpoint_every`` steps, at the end and on a signal). A run directory gives ``best`` or, asked,
``last``, each falling back to the other.
"""

from __future__ import annotations

from pathlib import Path

from pytorch_lightning.callbacks import ModelCheckpoint

from ..errors import CheckpointError


def checkpoint_callbacks(folder: Path, every: int) -> list[ModelCheckpoint]:
    """``best.ckpt``, the lowest test NLL so far (written after each evaluation), and ``last.ckpt``, every
    ``every`` steps."""
    best = ModelCheckpoint(dirpath=folder, filename="best", monitor="test/nll", mode="min", save_top_k=1,
                           auto_insert_metric_name=False, enable_version_counter=False)
    last = ModelCheckpoint(dirpath=folder, filename="last", every_n_train_steps=every, save_top_k=1,
                           enable_version_counter=False)
    return [best, last]


WHICH = ("best", "last")


def find_checkpoint(target: str | Path, which: str = "best") -> Path:
    """The checkpoint file a run directory (or a checkpoint path) names."""
    if which not in WHICH:
        raise CheckpointError(f"checkpoint: which='{which}' is not one of {', '.join(WHICH)}")
    target = Path(target)
    if target.is_dir():
        for name in (which, *(w for w in WHICH if w != which)):
            if (target / "checkpoints" / f"{name}.ckpt").is_file():
                return target / "checkpoints" / f"{name}.ckpt"
        raise CheckpointError(f"checkpoint: no checkpoints/best.ckpt or last.ckpt in {target}")
    if not target.is_file():
        raise CheckpointError(f"checkpoint: no such run directory or checkpoint: {target}")
    return target
