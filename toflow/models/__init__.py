"""Vector fields, the CNF block and its trainable end time."""

from .cnf import CNF, CNFDynamics, FlowOutput, standard_normal_logprob
from .divergence import ExactTrace, HutchinsonTrace, make_trace
from .end_time import EndTime
from .fields import ConcatSquashLinear, ConcatSquashMLP, LinearField

__all__ = ["CNF", "CNFDynamics", "FlowOutput", "ConcatSquashLinear", "ConcatSquashMLP", "EndTime", "ExactTrace",
           "HutchinsonTrace", "LinearField", "make_trace", "standard_normal_logprob"]

from .build import build_flow  # noqa: E402

__all__ += ["build_flow"]
