"""Vector fields, the CNF block and its trainable end time."""

from .cnf import CNF, CNFDynamics, Flow, FlowOutput, standard_normal_logprob
from .divergence import ExactTrace, HutchinsonTrace, make_trace
from .end_time import EndTime, TemporalRegularization
from .fields import ConcatConv2d, ConcatConvNet, ConcatSquashLinear, ConcatSquashMLP, LinearField
from .multiscale import MultiscaleFlow
from .transforms import LogitTransform, squeeze, unsqueeze

__all__ = ["CNF", "CNFDynamics", "Flow", "FlowOutput", "ConcatConv2d", "ConcatConvNet", "ConcatSquashLinear", "ConcatSquashMLP",
           "LogitTransform", "MultiscaleFlow", "squeeze", "unsqueeze", "EndTime", "ExactTrace",
           "HutchinsonTrace", "LinearField", "TemporalRegularization", "make_trace", "standard_normal_logprob"]

from .build import build_flow  # noqa: E402

__all__ += ["build_flow"]
