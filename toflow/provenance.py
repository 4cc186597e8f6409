"""Where a run lives and what it ran on: the run directory's layout, the machine, the versions.

Both the trainer (which writes a run) and the study (which reads many) use these, so they live
below both. Nothing heavy is imported until a function needs it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

RUN_DIR_ENV = "TOFLOW_RUN_DIR"  # hands an unnamed run's directory to the processes DDP launches


def run_dir_of(log_dir: str | None, name: str) -> Path:
    """The run directory: ``log_dir``, or ``runs/<name>-<timestamp>`` when it is not set.

    Args:
        log_dir: ``trainer.log_dir``, or None.
        name: The config's name.

    Returns:
        The directory (not created).
    """
    if log_dir:
        return Path(log_dir)
    if os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    return Path("runs") / f"{name}-{datetime.now():%Y%m%d-%H%M%S}"


def last_checkpoint(run_dir: str | Path) -> Path:
    """Where a run keeps its latest checkpoint (the one ``trainer.resume`` continues from)."""
    return Path(run_dir) / "checkpoints" / "last.ckpt"


def finished_summary(run_dir: str | Path) -> dict | None:
    """The ``summary.json`` of the run in ``run_dir`` if it finished, else None."""
    path = Path(run_dir) / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else None


def machine() -> str:
    """The processor (or GPU), its cores, torch and Python: the line a timing is reported with."""
    import torch  # only where a machine is described

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, Python {platform.python_version()}"


def git_commit() -> str | None:
    """The commit toflow's source is at, where it is a git checkout."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                              text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(config_text: str, device: str, threads: int) -> dict:
    """What it takes to run it again.

    Args:
        config_text: The resolved config as YAML (hashed, so two runs can be told apart).
        device: ``"cpu: <processor>"`` or ``"cuda: <GPU>"``.
        threads: torch's CPU threads.

    Returns:
        The command, the config's SHA-256, toflow's version and git commit, torch's, torchdyn's
        and Lightning's versions, the device and the thread count.
    """
    def installed(package: str) -> str | None:
        try:
            return version(package)
        except PackageNotFoundError:
            return None

    import torch  # only where a run is described: the trainer has it loaded

    return {"command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "config_sha256": hashlib.sha256(config_text.encode()).hexdigest(), "toflow": installed("toflow"),
            "git_commit": git_commit(), "torch": torch.__version__, "torchdyn": installed("torchdyn"),
            "lightning": installed("pytorch-lightning"), "device": device, "threads": threads}
