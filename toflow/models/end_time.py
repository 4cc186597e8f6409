"""The end time T of a flow block, t_span = [t0, T], and everything about how it is trained.

Modes (``mode``):

- ``fixed``: T = T0 throughout (FFJORD with a fixed time).
- ``joint``: T is a parameter trained by the weights' optimizer (FFJORD's ``train_T``).
- ``steer``: at each training solve T ~ U[t0 + eps, 2 T0 - t0 - eps]; T0 at evaluation (STEER).
- ``toflow``: T is a parameter with its own optimizer (Adam, learning rate ``lr``), stepped
  after the weights (coordinate descent, paper sec. 3.1), with temporal regularisation
  TR(T) = alpha |T| (eq. 15-16) and, after every step, Clip(T) into
  [t0 + eps, 2 T0 - t0 - eps] (eq. 17).

Where TO-FLOW's dL/dT comes from (``grad``):

- ``after_step`` (default): after the weights step, at z(T) with the updated weights
  (eq. 12-13), dL/dT = a(T) . v(T). The training solve treats T as a constant and fills
  :attr:`EndTime.record` (T, then a(T) on the backward pass); the T step reads it.
- ``same_pass``: from the backward pass that gives the weights' gradient.

(``alternating`` and ``joint`` are the former spellings of these two.)

t0 is a constant: the paper fixes it (sec. 3), and its gradient is never needed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..solvers import EndTimeRecord

GRADS = ("after_step", "same_pass")
FORMER_GRADS = {"alternating": "after_step", "joint": "same_pass"}


@dataclass(frozen=True)
class TemporalRegularization:
    """TR(T) = alpha |T| (eq. 15); its gradient alpha sign(T) is added to dL/dT in the T step."""

    alpha: float = 0.1

    def __post_init__(self):
        if self.alpha < 0:
            raise ValueError(f"time.alpha: must be non-negative, got {self.alpha}")

    def __call__(self, T: Tensor) -> Tensor:
        return self.alpha * T.abs()

    def grad(self, T: Tensor) -> Tensor:
        return self.alpha * torch.sign(T.detach())


class TimeMode:
    """What a mode does with T: who trains it (``trained_by``: None, the weights' optimizer
    ``"weights"``, or its own optimizer in the T step ``"own"``), and, for a mode that draws
    T for each training solve (``draws``), :meth:`draw`. A new mode is a subclass and one
    :func:`register_time_mode` line."""

    name = "fixed"
    trained_by: str | None = None
    draws = False

    def draw(self, end_time: "EndTime") -> float:
        """T for one training solve of a drawing mode (evaluation runs at T0)."""
        raise NotImplementedError


class Joint(TimeMode):
    name, trained_by = "joint", "weights"


class Steer(TimeMode):
    """T ~ U[t0 + eps, 2 T0 - t0 - eps] for each training solve, from the end time's own generator."""

    name, draws = "steer", True

    def draw(self, end_time: "EndTime") -> float:
        lo, hi = end_time.bounds
        return lo + (hi - lo) * float(torch.rand((), generator=end_time.generator, dtype=torch.float64))


class ToFlow(TimeMode):
    name, trained_by = "toflow", "own"


TIME_MODES: dict[str, TimeMode] = {}


def register_time_mode(mode: TimeMode) -> TimeMode:
    """Make ``mode`` available as ``time.mode: <mode.name>``."""
    TIME_MODES[mode.name] = mode
    return mode


for _mode in (TimeMode(), Joint(), Steer(), ToFlow()):
    register_time_mode(_mode)


def grad_name(grad: str) -> str:
    """``grad`` in its current spelling; a former one is accepted with a deprecation notice."""
    if grad in FORMER_GRADS:
        warnings.warn(f"time.grad: '{grad}' is now spelt '{FORMER_GRADS[grad]}'; the old name goes in the next "
                      "release", FutureWarning, stacklevel=4)
        return FORMER_GRADS[grad]
    if grad not in GRADS:
        raise ValueError(f"time.grad: '{grad}' is not one of {', '.join(GRADS)}")
    return grad


class EndTime(nn.Module):
    """T of one block. ``mode`` (a name in :data:`TIME_MODES`), ``lr``, ``alpha``, ``eps`` and
    ``grad`` as above; ``seed`` seeds a drawing mode's generator. Built by hand it is fixed;
    a config's ``time`` section builds it with its own fields."""

    def __init__(self, t0: float = 0.0, T0: float = 0.5, mode: str = "fixed", lr: float = 1e-2, alpha: float = 0.1,
                 eps: float = 0.1, grad: str = "after_step", seed: int = 0):
        super().__init__()
        if mode not in TIME_MODES:
            raise ValueError(f"time.mode: '{mode}' is not one of {', '.join(TIME_MODES)}")
        if T0 <= t0:
            raise ValueError(f"time.T0: must exceed time.t0 = {t0}, got {T0}")
        if eps < 0 or eps >= T0 - t0:
            raise ValueError(f"time.eps: must lie in [0, T0 - t0 = {T0 - t0:g}) so the clip interval "
                             f"[t0+eps, 2*T0-t0-eps] is not empty, got {eps}")
        if not lr > 0:
            raise ValueError(f"time.lr: must be positive, got {lr}")
        self.mode, self.T0, self.eps, self.lr = mode, float(T0), float(eps), float(lr)
        self.grad = grad
        self.tr = TemporalRegularization(float(alpha))
        self.register_buffer("t0", torch.tensor(float(t0)))
        self.T = nn.Parameter(torch.tensor(float(T0)), requires_grad=self.kind.trained_by is not None)
        self.generator = torch.Generator().manual_seed(seed)  # a drawing mode's
        self.record: EndTimeRecord | None = None  # the last training solve's, for the T step after it

    @property
    def grad(self) -> str:
        return self._grad

    @grad.setter
    def grad(self, value: str) -> None:
        self._grad = grad_name(value)

    @property
    def bounds(self) -> tuple[float, float]:
        """The clip interval [t0 + eps, 2 T0 - t0 - eps] of eq. 17, centred on T0."""
        t0 = float(self.t0)
        return t0 + self.eps, 2 * self.T0 - t0 - self.eps

    @property
    def kind(self) -> TimeMode:
        """The registered :class:`TimeMode` named by :attr:`mode`."""
        return TIME_MODES[self.mode]

    @property
    def trained_by_weights_optimizer(self) -> bool:
        return self.kind.trained_by == "weights"

    @property
    def has_own_optimizer(self) -> bool:
        return self.kind.trained_by == "own"

    @property
    def grad_from_solve(self) -> bool:
        """Whether the backward pass of the solve gives dL/dT (joint, or toflow with same_pass)."""
        return self.trained_by_weights_optimizer or (self.has_own_optimizer and self.grad == "same_pass")

    @property
    def stepped_after_solve(self) -> bool:
        """Whether the T step takes dL/dT after the weights step (toflow with after_step)."""
        return self.has_own_optimizer and self.grad == "after_step"

    # ---------------------------------------------------------------- the solve's interval
    def end(self, differentiable: bool | None = None) -> Tensor:
        """T for the next solve: for a drawing mode (steer) a draw in training, T0 in evaluation."""
        if self.kind.draws:
            value = self.kind.draw(self) if self.training else self.T0
            return torch.tensor(value, dtype=self.T.dtype, device=self.T.device)
        if differentiable is None:
            differentiable = self.grad_from_solve
        return self.T if differentiable and self.T.requires_grad else self.T.detach()

    def t_span(self, differentiable: bool | None = None) -> Tensor:
        """[t0, T]. T carries its gradient where the solve gives dL/dT (:attr:`grad_from_solve`)
        or where ``differentiable`` asks for it."""
        return torch.stack([self.t0.to(self.T.dtype), self.end(differentiable)])

    def new_record(self) -> EndTimeRecord | None:
        """A fresh record for a training solve, held as :attr:`record`, where the T step needs one."""
        self.record = EndTimeRecord() if self.training and self.stepped_after_solve else None
        return self.record

    # ---------------------------------------------------------------- the T step's pieces
    def solve_grad(self) -> Tensor:
        """dL/dT of the last training solve, as the mode takes it: a(T) . v(T) with the current
        weights (after_step) or the gradient the backward pass left on T (same_pass)."""
        if self.stepped_after_solve:
            if self.record is None:
                raise RuntimeError("time.grad=after_step: no training solve of this block has been recorded")
            return self.record.grad()
        return self.T.grad if self.T.grad is not None else torch.zeros_like(self.T)

    @property
    def alpha(self) -> float:
        return self.tr.alpha

    def regularization(self) -> Tensor:
        """TR(T) = alpha |T| (eq. 15)."""
        return self.tr(self.T)

    def regularization_grad(self) -> Tensor:
        """d TR / dT = alpha sign(T)."""
        return self.tr.grad(self.T)

    @torch.no_grad()
    def clip_(self) -> None:
        """Clip(T) of eq. 17, in place."""
        lo, hi = self.bounds
        self.T.clamp_(lo, hi)

    def get_extra_state(self) -> dict:
        return {"steer_rng": self.generator.get_state()}

    def set_extra_state(self, state: dict) -> None:
        self.generator.set_state(state["steer_rng"])

    def extra_repr(self) -> str:
        lo, hi = self.bounds
        return (f"mode={self.mode}, grad={self.grad}, T={float(self.T.detach()):.4f}, T0={self.T0}, "
                f"clip=[{lo:g}, {hi:g}], alpha={self.alpha}")
