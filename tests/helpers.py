"""What the tests that drive the command line share."""

import subprocess
import sys

TOY_CONFIG = "configs/toy_checkerboard_toflow.yaml"
RUN = [sys.executable, "-m", "toflow.trainers.run"]


def run_cli(*args: str, config: str = TOY_CONFIG, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m toflow.trainers.run CONFIG ARGS...`` to completion, its output captured."""
    return subprocess.run([*RUN, config, *args], capture_output=True, text=True, timeout=timeout)
