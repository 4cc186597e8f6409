"""What the tests share: the tiny flow they train and differentiate, and the command line."""

import subprocess
import sys

import torch

from toflow.models import CNF, ConcatSquashMLP, EndTime
from toflow.solvers import Dopri5

TOY_CONFIG = "configs/toy_checkerboard_toflow.yaml"
RUN = [sys.executable, "-m", "toflow.trainers.run"]


def tiny_cnf(hidden=(16, 16), solver=None, *, seed=None, T=0.6, mode="toflow", grad="same_pass", alpha=0.1, eps=0.1,
             regularizers=(), trace="exact", dtype=torch.float64, field=None) -> CNF:
    """A small 2-D CNF: a ConcatSquash MLP of widths ``hidden`` (its weights drawn after
    ``torch.manual_seed(seed)`` where a seed is given) or ``field``, on [0, T], with ``solver``
    (default dopri5 at 1e-5), in float64 unless ``dtype`` says otherwise."""
    if seed is not None:
        torch.manual_seed(seed)
    field = field if field is not None else ConcatSquashMLP(2, hidden)
    end_time = EndTime(0.0, T, mode, alpha=alpha, eps=eps, grad=grad)
    return CNF(field, end_time, solver or Dopri5(), regularizers, trace=trace).to(dtype)


def run_cli(*args: str, config: str = TOY_CONFIG, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m toflow.trainers.run CONFIG ARGS...`` to completion, its output captured."""
    return subprocess.run([*RUN, config, *args], capture_output=True, text=True, timeout=timeout)


def call_main(main, argv: list, capsys) -> subprocess.CompletedProcess:
    """A command's ``main(argv)`` in this process, its exit code and output as :func:`run_cli`
    gives them: for what a command says, without a second Python's start-up (about 9 s here,
    most of it Lightning's import)."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    said = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, said.out, said.err)
