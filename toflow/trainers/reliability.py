"""What keeps a long run safe: one run to a directory (a lock a crash does not leave stuck),
atomic checkpoints and text files, a checkpoint on SIGTERM/SIGINT, and refusing checkpoints that
are truncated, altered or not toflow's.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from ..errors import CheckpointError, ConfigError, Interrupted, Stopped, WriteError
from ..provenance import last_checkpoint


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
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        except OSError as err:
            raise WriteError(f"cannot write the checkpoint {path} ({err.strerror or err})") from None
        try:
            with os.fdopen(handle, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, path)
        except (OSError, RuntimeError) as err:  # torch.save reports a failed write as a RuntimeError
            Path(tmp).unlink(missing_ok=True)
            why = err.strerror if isinstance(err, OSError) and err.strerror else "the write failed: a full disk?"
            raise WriteError(f"cannot write the checkpoint {path} ({why}); the one before it is whole") from None
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
    try:
        handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise WriteError(f"cannot write {path} ({err.strerror or err})") from None
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
        os.chmod(tmp, 0o644)  # as a file written plainly would be, not mkstemp's owner-only
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise WriteError(f"cannot write {path} ({err.strerror or err}); the file is as it was") from None
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
        if zipfile.is_zipfile(path) and "weights only" in str(err).lower():
            raise CheckpointError(f"checkpoint: {path} holds Python objects besides tensors and plain values, which "
                                  "toflow does not load (weights_only); it was not written by toflow") from None
        raise CheckpointError(f"checkpoint: {path} is truncated, altered or not a checkpoint (it cannot be "
                              "read)") from None
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

    def on_train_start(self, trainer, module) -> None:
        # after Lightning has saved the handlers it puts back at its teardown, so that ours is not among them
        for signum in self.SIGNALS:
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                break

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if self.received is None:
            return
        trainer.save_checkpoint(self.last_checkpoint, weights_only=False)
        raise Interrupted(self.received, trainer.global_step, self.last_checkpoint)

    def on_fit_end(self, trainer, module) -> None:
        self.restore()

    def on_exception(self, trainer, module, exception) -> None:
        self.restore()

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


def _distributed_child() -> bool:
    """Whether this process is one a data-parallel launcher started (its run is its first process's)."""
    return os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0"


def _lock(run_dir: Path):
    """This process's exclusive lock on ``run_dir`` (its ``.lock`` file), released when the process
    ends however it ends; a directory another run holds is refused in one line."""
    handle = open(run_dir / ".lock", "a+")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise ConfigError(f"trainer.log_dir: {run_dir} is in use by another run (process {holder}); wait for it to "
                          "end or choose another trainer.log_dir") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


@contextmanager
def run_directory(run_dir: Path):
    """Within: ``run_dir`` exists and this process holds it (see :func:`_lock`). A run that fails
    before its first checkpoint leaves no directory behind, where it made the directory itself."""
    existed = run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"trainer.log_dir: cannot make the run directory {run_dir} ({err.strerror or err})") \
            from None
    handle = None if _distributed_child() else _lock(run_dir)
    try:
        yield run_dir
    except BaseException:
        if not existed and not last_checkpoint(run_dir).exists():
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        if handle is not None:
            handle.close()
