"""Vector fields, the CNF block and its trainable end time."""

from .cnf import CNF, CNFDynamics, Flow, FlowOutput, standard_normal_logprob
from .divergence import ExactTrace, HutchinsonTrace, make_trace
from .end_time import TIME_MODES, EndTime, TemporalRegularization, TimeMode, register_time_mode
from .fields import ConcatConv2d, ConcatConvNet, ConcatSquashLinear, ConcatSquashMLP, LinearField
from .multiscale import MultiscaleFlow
from .transforms import LogitTransform, squeeze, unsqueeze

__all__ = ["CNF", "CNFDynamics", "ConcatConv2d", "ConcatConvNet", "ConcatSquashLinear", "ConcatSquashMLP", "EndTime",
           "ExactTrace", "Flow", "FlowOutput", "HutchinsonTrace", "LinearField", "LogitTransform", "MultiscaleFlow",
           "TIME_MODES", "TemporalRegularization", "TimeMode", "make_trace", "register_time_mode", "squeeze",
           "standard_normal_logprob", "unsqueeze"]

from .build import build_flow  # noqa: E402

__all__ += ["build_flow"]
