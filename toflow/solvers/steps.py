"""Single steps of the integrators, y(t) -> y(t + h), and the Butcher tableaus they run on.

A tableau is written here as exact fractions (as torchdiffeq and zuko write theirs) and
held as Python floats, each the correctly rounded value of its fraction, so a step
multiplies in the state's own precision with no float32 constant anywhere.

Time ``t`` and step ``h`` are Python floats on the solver's own loops; the fixed-grid
end-time derivative passes them as 0-dim tensors that carry T's gradient, and every step
here accepts either. The field is called as ``f(t_tensor, y)``.

A fixed-step method is one function ``step(f, t, h, y) -> y_new``; register it with
:func:`toflow.solvers.register_fixed_step` to make it a solver.
"""

from __future__ import annotations

from fractions import Fraction as Q
from typing import Callable, NamedTuple, Sequence

import torch
from torch import Tensor

Field = Callable[[Tensor, Tensor], Tensor]
StepFunction = Callable[[Field, "float | Tensor", "float | Tensor", Tensor], Tensor]


class Tableau(NamedTuple):
    c: list  # nodes of stages 2..s
    a: list  # rows of the Runge-Kutta matrix for stages 2..s
    b: list  # weights of the solution
    e: list  # weights of the error estimate (b - b_hat), empty if none


def tableau(c: Sequence, a: Sequence[Sequence], b: Sequence, b_hat: Sequence = ()) -> Tableau:
    """A tableau from exact fractions. The error weights are the difference of the rounded
    weights, ``float(b) - float(b_hat)``, the error estimate of the rounded method."""
    floats = [float(x) for x in b]
    errors = [w - float(x) for w, x in zip(floats + [0.0] * (len(b_hat) - len(b)), b_hat)] if b_hat else []
    return Tableau([float(x) for x in c], [[float(x) for x in row] for row in a], floats, errors)


DOPRI5 = tableau(
    c=[Q(1, 5), Q(3, 10), Q(4, 5), Q(8, 9), 1, 1],
    a=[[Q(1, 5)],
       [Q(3, 40), Q(9, 40)],
       [Q(44, 45), Q(-56, 15), Q(32, 9)],
       [Q(19372, 6561), Q(-25360, 2187), Q(64448, 6561), Q(-212, 729)],
       [Q(9017, 3168), Q(-355, 33), Q(46732, 5247), Q(49, 176), Q(-5103, 18656)],
       [Q(35, 384), 0, Q(500, 1113), Q(125, 192), Q(-2187, 6784), Q(11, 84)]],
    b=[Q(35, 384), 0, Q(500, 1113), Q(125, 192), Q(-2187, 6784), Q(11, 84), 0],
    b_hat=[Q(1951, 21600), 0, Q(22642, 50085), Q(451, 720), Q(-12231, 42400), Q(649, 6300), Q(1, 60)],
)

RK4 = tableau(
    c=[Q(1, 2), Q(1, 2), 1],
    a=[[Q(1, 2)], [0, Q(1, 2)], [0, 0, 1]],
    b=[Q(1, 6), Q(1, 3), Q(1, 3), Q(1, 6)],
)


def at(t: float | Tensor, like: Tensor) -> Tensor:
    """Time as a 0-dim tensor of the state's dtype and device (a tensor keeps its graph)."""
    if torch.is_tensor(t):
        return t.to(dtype=like.dtype, device=like.device)
    return torch.full((), t, dtype=like.dtype, device=like.device)


def _combine(y: Tensor, h, weights: list, ks: list) -> Tensor:
    out = y
    for w, k in zip(weights, ks):
        if w != 0.0:
            out = out + (h * w) * k
    return out


def explicit_rk_step(tab: Tableau, f: Field, t, h, y: Tensor) -> Tensor:
    """One step of the explicit Runge-Kutta method ``tab`` (len(b) evaluations)."""
    ks = [f(at(t, y), y)]
    for c, row in zip(tab.c, tab.a):
        ks.append(f(at(t + c * h, y), _combine(y, h, row, ks)))
    return _combine(y, h, tab.b, ks)


def dopri5_step(f: Field, t: float, h: float, y: Tensor, k1: Tensor, with_error: bool = True):
    """Dormand-Prince 5(4): returns ``(y_new, error, k7)``; k7 = f(t + h, y_new) is the next
    step's k1 (first same as last). ``with_error=False`` skips k7 and the error (5 + 0
    evaluations instead of 6), for recomputing an accepted step."""
    tab = DOPRI5
    ks = [k1]
    for c, row in zip(tab.c[:5], tab.a[:5]):
        ks.append(f(at(t + c * h, y), _combine(y, h, row, ks)))
    y_new = _combine(y, h, tab.b[:6], ks)
    if not with_error:
        return y_new, None, None
    k7 = f(at(t + h, y), y_new)
    ks.append(k7)
    error = _combine(torch.zeros_like(y), h, tab.e, ks)
    return y_new, error, k7


def rk4_step(f: Field, t, h, y: Tensor) -> Tensor:
    """Classical fourth-order Runge-Kutta (4 evaluations)."""
    return explicit_rk_step(RK4, f, t, h, y)


def euler_step(f: Field, t, h, y: Tensor) -> Tensor:
    """Explicit Euler (1 evaluation)."""
    return y + h * f(at(t, y), y)


def alf_step(f: Field, t: float, h: float, y: Tensor, v: Tensor, with_error: bool = True):
    """Asynchronous leapfrog (MALI, Zhuang et al. 2021), one evaluation:

        y_half = y + h/2 v,  u = f(t + h/2, y_half),  v' = 2u - v,  y' = y_half + h/2 v'.

    Returns ``(y', v', error)`` with the local error estimate h/2 (u - v)."""
    y_half = y + (0.5 * h) * v
    u = f(at(t + 0.5 * h, y), y_half)
    v_new = 2 * u - v
    y_new = y_half + (0.5 * h) * v_new
    return y_new, v_new, ((0.5 * h) * (u - v) if with_error else None)


def alf_inverse(f: Field, t: float, h: float, y_new: Tensor, v_new: Tensor):
    """The exact algebraic inverse of :func:`alf_step` from t + h back to t (one evaluation)."""
    y_half = y_new - (0.5 * h) * v_new
    u = f(at(t + 0.5 * h, y_new), y_half)
    v = 2 * u - v_new
    return y_half - (0.5 * h) * v, v
