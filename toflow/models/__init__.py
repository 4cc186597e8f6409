"""Vector fields, the CNF block and its trainable end time, and the multiscale image flow."""

from .cnf import CNF, CNFDynamics, Flow, FlowOutput, standard_normal_logprob
from .divergence import PROBES, TRACES, ExactTrace, HutchinsonTrace, make_trace
from .end_time import TIME_MODES, EndTime, TemporalRegularization, TimeMode
from .fields import ACTIVATIONS, ConcatConv2d, ConcatConvNet, ConcatSquashLinear, ConcatSquashMLP, LinearField
from .multiscale import MultiscaleFlow
from .transforms import LogitTransform, squeeze, unsqueeze

__all__ = ["ACTIVATIONS", "CNF", "CNFDynamics", "ConcatConv2d", "ConcatConvNet", "ConcatSquashLinear",
           "ConcatSquashMLP", "EndTime", "ExactTrace", "Flow", "FlowOutput", "HutchinsonTrace", "LinearField",
           "LogitTransform", "MultiscaleFlow", "PROBES", "TIME_MODES", "TRACES", "TemporalRegularization", "TimeMode",
           "make_trace", "squeeze", "standard_normal_logprob", "unsqueeze"]
