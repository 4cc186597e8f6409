"""Every error toflow raises on purpose, in one module that imports nothing heavy.

The commands turn them into one line and an exit code (:mod:`toflow.trainers.commands`): bad input
(:class:`ConfigError`, :class:`DataError`, :class:`CheckpointError`, :class:`UsageError`) is exit
code 2, a run that cannot go on (:class:`SolverError`, :class:`TrainingFailed`) 1, and a signal
(:class:`Interrupted`, :class:`Stopped`) 128 + its number.
"""

from __future__ import annotations

import signal
from pathlib import Path


class ConfigError(ValueError):
    """A configuration value or key was refused. The message is one line naming the key."""


class UsageError(ValueError):
    """A command-line argument was refused. The message is one line naming the argument."""


class DataError(RuntimeError):
    """A data set could not be found or read. The message is one line."""


class CheckpointError(RuntimeError):
    """A checkpoint could not be used. The message is one line."""


class WriteError(OSError):
    """A file could not be written (a full disk, a size limit); what was there before is whole."""


class SolverError(RuntimeError):
    """An integration could not finish: too many steps or a step size that underflowed."""


class NonFiniteError(SolverError):
    """The state or the field became NaN or infinite during an integration."""


class TrainingFailed(RuntimeError):
    """Training could not go on (a command's exit code 1)."""


class Interrupted(RuntimeError):
    """Training stopped on a signal after saving its checkpoint.

    Args:
        signum: The signal's number.
        step: The training step the checkpoint holds.
        path: Where the checkpoint was saved.
    """

    def __init__(self, signum: int, step: int, path: Path):
        self.signum, self.step, self.path = signum, step, path
        name = signal.Signals(signum).name
        super().__init__(f"stopped by {name} at step {step}; checkpoint saved to {path} "
                         "(continue with trainer.resume=true)")


class Stopped(RuntimeError):
    """A command stopped by a signal before it wrote anything.

    Args:
        signum: The signal's number.
        what: What the user should know of the state left behind, e.g. that a file is as it was.
    """

    def __init__(self, signum: int, what: str = ""):
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}{'; ' + what if what else ''}")
