"""Single steps of the integrators, y(t) -> y(t + h), on torchdyn's Butcher tableaus.

The tableaus come from torchdyn built in float64 and are held as Python floats, so a
step multiplies in the state's own precision with no float32 constant anywhere. Time
``t`` and step ``h`` are Python floats; the field is called as ``f(t_tensor, y)``.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import Tensor
from torchdyn.numerics.solvers._constants import construct_dopri5, construct_rk4

Field = Callable[[Tensor, Tensor], Tensor]


def _floats(values) -> list:
    return [float(v) for v in values]


class Tableau(NamedTuple):
    c: list  # nodes of stages 2..s
    a: list  # rows of the Runge-Kutta matrix for stages 2..s
    b: list  # weights of the solution
    e: list  # weights of the error estimate (b - b_hat), empty if none


def _tableau(construct) -> Tableau:
    c, a, b, e = construct(torch.float64)
    return Tableau(_floats(c), [_floats(row) for row in a], _floats(b), _floats(e) if e.numel() > 1 else [])


DOPRI5 = _tableau(construct_dopri5)
RK4 = _tableau(construct_rk4)


def at(t: float, like: Tensor) -> Tensor:
    """Time as a 0-dim tensor of the state's dtype and device."""
    return torch.full((), t, dtype=like.dtype, device=like.device)


def _combine(y: Tensor, h: float, weights: list, ks: list) -> Tensor:
    out = y
    for w, k in zip(weights, ks):
        if w != 0.0:
            out = out + (h * w) * k
    return out


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


def rk4_step(f: Field, t: float, h: float, y: Tensor, k1: Tensor | None = None) -> Tensor:
    """Classical fourth-order Runge-Kutta (4 evaluations)."""
    tab = RK4
    ks = [f(at(t, y), y) if k1 is None else k1]
    for c, row in zip(tab.c[1:], tab.a):
        ks.append(f(at(t + c * h, y), _combine(y, h, row, ks)))
    return _combine(y, h, tab.b, ks)


def euler_step(f: Field, t: float, h: float, y: Tensor, k1: Tensor | None = None) -> Tensor:
    """Explicit Euler (1 evaluation)."""
    return y + h * (f(at(t, y), y) if k1 is None else k1)


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
