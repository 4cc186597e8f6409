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

t0 is a constant: the paper fixes it (sec. 3), and its gradient is never needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..registry import Registry
from ..solvers import EndTimeRecord

TIME_MODES = Registry("time.mode")  # name -> TimeMode subclass
GRAD_SOURCES = ("after_step", "same_pass")  # where TO-FLOW's dL/dT comes from (``time.grad``)


@dataclass(frozen=True)
class TemporalRegularization:
    """TR(T) = alpha |T| (eq. 15); its gradient alpha sign(T) is added to dL/dT in the T step."""

    alpha: float = 0.1

    def __post_init__(self):
        if self.alpha < 0:
            raise ValueError(f"time.alpha: must be non-negative, got {self.alpha}")

    def __call__(self, T: Tensor) -> Tensor:
        return self.alpha * T.abs()

    def derivative(self, T: Tensor) -> Tensor:
        return self.alpha * torch.sign(T.detach())


class TimeMode:
    """What a mode does with T: who trains it (``trained_by``: None, the weights' optimizer
    ``"weights"``, or its own optimizer in the T step ``"own"``), and, for a mode that draws
    T for each training solve (``draws``), :meth:`draw`. A new mode is a subclass and one
    ``TIME_MODES.register`` line."""

    name = "fixed"
    trained_by: str | None = None
    draws = False

    def draw(self, end_time: "EndTime") -> float:
        """T for one training solve of a drawing mode (evaluation runs at T0)."""
        raise NotImplementedError


@TIME_MODES.register
class Fixed(TimeMode):
    """T = T0 throughout (FFJORD with a fixed time)."""


@TIME_MODES.register
class Joint(TimeMode):
    """T trained by the weights' optimizer (FFJORD's ``train_T``)."""

    name, trained_by = "joint", "weights"


@TIME_MODES.register
class Steer(TimeMode):
    """T ~ U[t0 + eps, 2 T0 - t0 - eps] for each training solve, from the end time's own generator."""

    name, draws = "steer", True

    def draw(self, end_time: "EndTime") -> float:
        lo, hi = end_time.bounds
        return lo + (hi - lo) * float(torch.rand((), generator=end_time.generator, dtype=torch.float64))


@TIME_MODES.register
class ToFlow(TimeMode):
    """T with its own optimizer, stepped after the weights (TO-FLOW)."""

    name, trained_by = "toflow", "own"


class EndTime(nn.Module):
    r"""The end time T of one block, its interval [t0, T], and how T is trained (see the module).

    TO-FLOW's T step uses dL/dT + alpha sign(T) (eq. 12-16), then clips T into

    .. math:: [t_0 + \epsilon,\; 2 T_0 - t_0 - \epsilon] \quad \text{(eq. 17)}

    Built by hand it is fixed; a config's ``time`` section builds it with its own fields.

    Args:
        t0: The start time (a constant, as in the paper).
        T0: The initial end time, and the centre of the clip interval.
        mode: A name in :data:`TIME_MODES`: ``fixed``, ``joint``, ``steer``, ``toflow``.
        lr: The learning rate of T's own Adam (``toflow``).
        alpha: The temporal regularisation alpha |T| (eq. 15).
        eps: The clip margin; it must leave [t0 + eps, 2 T0 - t0 - eps] non-empty.
        grad: Where dL/dT comes from: ``after_step`` or ``same_pass``.
        seed: Seeds a drawing mode's generator (``steer``).
    """

    def __init__(self, t0: float = 0.0, T0: float = 0.5, mode: str = "fixed", lr: float = 1e-2, alpha: float = 0.1,
                 eps: float = 0.1, grad: str = "after_step", seed: int = 0):
        super().__init__()
        self.kind = TIME_MODES[mode]()  # refuses an unregistered mode
        if grad not in GRAD_SOURCES:
            raise ValueError(f"time.grad: '{grad}' is not one of {', '.join(GRAD_SOURCES)}")
        if T0 <= t0:
            raise ValueError(f"time.T0: must exceed time.t0 = {t0}, got {T0}")
        if eps < 0 or eps >= T0 - t0:
            raise ValueError(f"time.eps: must lie in [0, T0 - t0 = {T0 - t0:g}) so the clip interval "
                             f"[t0+eps, 2*T0-t0-eps] is not empty, got {eps}")
        if not lr > 0:
            raise ValueError(f"time.lr: must be positive, got {lr}")
        self.mode, self.T0, self.eps, self.lr = mode, float(T0), float(eps), float(lr)
        self.grad_source = grad
        self.tr = TemporalRegularization(float(alpha))
        self.register_buffer("t0", torch.tensor(float(t0)))
        self.T = nn.Parameter(torch.tensor(float(T0)), requires_grad=self.kind.trained_by is not None)
        self.generator = torch.Generator().manual_seed(seed)  # a drawing mode's
        self.record: EndTimeRecord | None = None  # the last training solve's, for the T step after it

    @property
    def bounds(self) -> tuple[float, float]:
        """The clip interval [t0 + eps, 2 T0 - t0 - eps] of eq. 17, centred on T0."""
        t0 = float(self.t0)
        return t0 + self.eps, 2 * self.T0 - t0 - self.eps

    @property
    def trained_by_weights_optimizer(self) -> bool:
        return self.kind.trained_by == "weights"

    @property
    def has_own_optimizer(self) -> bool:
        return self.kind.trained_by == "own"

    @property
    def grad_from_solve(self) -> bool:
        """Whether the backward pass of the solve gives dL/dT (joint, or toflow with same_pass)."""
        return self.trained_by_weights_optimizer or (self.has_own_optimizer and self.grad_source == "same_pass")

    @property
    def stepped_after_solve(self) -> bool:
        """Whether the T step takes dL/dT after the weights step (toflow with after_step)."""
        return self.has_own_optimizer and self.grad_source == "after_step"

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
        """[t0, T] for the next solve.

        Args:
            differentiable: Whether T carries its gradient (default: where the solve gives
                dL/dT, :attr:`grad_from_solve`).

        Returns:
            The two times, shape ``(2,)``.
        """
        return torch.stack([self.t0.to(self.T.dtype), self.end(differentiable)])

    def new_record(self) -> EndTimeRecord | None:
        """A fresh record for a training solve, held as :attr:`record`, where the T step needs one."""
        self.record = EndTimeRecord() if self.training and self.stepped_after_solve else None
        return self.record

    # ---------------------------------------------------------------- the T step's pieces
    def dloss_dT(self) -> Tensor:
        """dL/dT of the last training solve, as the mode takes it: a(T) . v(T) with the current
        weights (after_step) or the gradient the backward pass left on T (same_pass)."""
        if self.stepped_after_solve:
            if self.record is None:
                raise RuntimeError("time.grad=after_step: no training solve of this block has been recorded")
            return self.record.dloss_dT()
        return self.T.grad if self.T.grad is not None else torch.zeros_like(self.T)

    @property
    def alpha(self) -> float:
        return self.tr.alpha

    def regularization(self) -> Tensor:
        """TR(T) = alpha |T| (eq. 15)."""
        return self.tr(self.T)

    def dregularization_dT(self) -> Tensor:
        """d TR / dT = alpha sign(T)."""
        return self.tr.derivative(self.T)

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
        return (f"mode={self.mode}, grad={self.grad_source}, T={float(self.T.detach()):.4f}, T0={self.T0}, "
                f"clip=[{lo:g}, {hi:g}], alpha={self.alpha}")
