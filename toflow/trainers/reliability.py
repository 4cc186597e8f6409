"""What keeps a long run safe: atomic checkpoints, a checkpoint on SIGTERM/SIGINT, and
refusing checkpoints that are truncated, altered or not toflow's.
"""

from __future__ import annotations

import os
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from ..errors import CheckpointError, Interrupted, Stopped


@contextmanager
def stop_on_signals(what: str = "", signums=(signal.SIGINT, signal.SIGTERM)):
    """Within: SIGINT and SIGTERM raise :class:`Stopped` (where the next Python line runs), so
    what is being written atomically is either whole or not written; ``what`` is said with it."""
    def handle(signum, frame):
        raise Stopped(signum, what)

    previous = {signum: signal.signal(signum, handle) for signum in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to a temporary file beside it, syncs it, then renames it into
    place: a checkpoint on disk is always complete, whatever moment the process dies."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(handle, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file of its own beside ``path``, then rename it into place:
    a reader sees the old text or the new, and processes writing at once do not collide."""
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
        os.chmod(tmp, 0o644)  # as a file written plainly would be, not mkstemp's owner-only
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path) -> dict:
    """A toflow checkpoint, loaded with ``weights_only=True`` (no code runs from it);
    a truncated, altered or foreign file raises :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint: no such file: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a damaged file
        reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint: {path} is truncated, altered or not a checkpoint ({reason})") from None
    if not isinstance(checkpoint, dict) or not {"state_dict", "toflow", "hyper_parameters"} <= checkpoint.keys():
        raise CheckpointError(f"checkpoint: {path} is not a toflow checkpoint")
    return checkpoint


class StopOnSignal(pl.Callback):
    """On SIGTERM or SIGINT: finish the current step, save ``last``, and stop with
    :class:`Interrupted`. A second SIGINT interrupts at once. (Lightning itself notes
    SIGTERM in ``trainer.received_sigterm``; SIGINT is caught here.)"""

    SIGNALS = (signal.SIGINT,)

    def __init__(self, last_checkpoint: Path):
        self.last_checkpoint = Path(last_checkpoint)
        self.received: int | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum

    def on_fit_start(self, trainer, module) -> None:
        for signum in self.SIGNALS:
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                break

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if self.received is None:
            return
        trainer.save_checkpoint(self.last_checkpoint)
        raise Interrupted(self.received, trainer.global_step, self.last_checkpoint)

    def on_fit_end(self, trainer, module) -> None:
        self.restore()

    def on_exception(self, trainer, module, exception) -> None:
        self.restore()

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
