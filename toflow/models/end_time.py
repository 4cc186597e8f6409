"""The end time T of a flow block, t_span = [t0, T], and how it is trained.

Modes:

- ``fixed``: T = T0 throughout (FFJORD with a fixed time).
- ``joint``: T is a parameter trained by the weights' optimizer (FFJORD's ``train_T``).
- ``steer``: at each training solve T ~ U[t0 + eps, 2 T0 - t0 - eps]; T0 at evaluation (STEER).
- ``toflow``: T is a parameter with its own optimizer, stepped after the weights
  (coordinate descent, paper sec. 3.1), with temporal regularisation alpha |T|
  (eq. 15-16) and, after every step, Clip(T) into [t0 + eps, 2 T0 - t0 - eps] (eq. 17).
  ``grad="alternating"`` takes dL/dT after the weights step, at z(T) with the updated
  weights (eq. 12-13), so the solve itself treats T as a constant; ``grad="joint"``
  takes it from the same backward pass as the weights.

t0 is a constant: the paper fixes it (sec. 3), and its gradient is never needed.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..regularizers import TemporalRegularization

MODES = ("fixed", "joint", "steer", "toflow")
GRADS = ("alternating", "joint")


class EndTime(nn.Module):
    def __init__(self, t0: float = 0.0, T0: float = 0.5, mode: str = "toflow", alpha: float = 0.1,
                 eps: float = 0.1, grad: str = "alternating", seed: int = 0):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"time.mode: '{mode}' is not one of {', '.join(MODES)}")
        if grad not in GRADS:
            raise ValueError(f"time.grad: '{grad}' is not one of {', '.join(GRADS)}")
        if T0 <= t0:
            raise ValueError(f"time.T0: must exceed t0 = {t0}, got {T0}")
        if eps < 0 or eps >= T0 - t0:
            raise ValueError(f"time.eps: must lie in [0, T0 - t0 = {T0 - t0:g}), got {eps}")
        self.mode, self.grad, self.T0, self.eps = mode, grad, float(T0), float(eps)
        self.tr = TemporalRegularization(float(alpha))
        self.register_buffer("t0", torch.tensor(float(t0)))
        self.T = nn.Parameter(torch.tensor(float(T0)), requires_grad=mode in ("joint", "toflow"))
        self._steer = torch.Generator().manual_seed(seed)

    @property
    def bounds(self) -> tuple[float, float]:
        """The clip interval [t0 + eps, 2 T0 - t0 - eps] of eq. 17, centred on T0."""
        t0 = float(self.t0)
        return t0 + self.eps, 2 * self.T0 - t0 - self.eps

    @property
    def trained_by_weights_optimizer(self) -> bool:
        return self.mode == "joint"

    @property
    def has_own_optimizer(self) -> bool:
        return self.mode == "toflow"

    @property
    def grad_from_solve(self) -> bool:
        """Whether the backward pass of the solve gives dL/dT (joint, or toflow with grad=joint)."""
        return self.mode == "joint" or (self.mode == "toflow" and self.grad == "joint")

    def end(self, differentiable: bool | None = None) -> Tensor:
        """T for the next solve: a sample in steer training, T0 in steer evaluation."""
        if self.mode == "steer":
            if self.training:
                lo, hi = self.bounds
                u = torch.rand((), generator=self._steer, dtype=torch.float64)
                return torch.tensor(lo + (hi - lo) * float(u), dtype=self.T.dtype, device=self.T.device)
            return torch.full((), self.T0, dtype=self.T.dtype, device=self.T.device)
        if differentiable is None:
            differentiable = self.grad_from_solve
        return self.T if differentiable and self.T.requires_grad else self.T.detach()

    def t_span(self, differentiable: bool | None = None) -> Tensor:
        """[t0, T]. T carries its gradient where the solve gives dL/dT (:attr:`grad_from_solve`)
        or where ``differentiable`` asks for it."""
        return torch.stack([self.t0.to(self.T.dtype), self.end(differentiable)])

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
        return {"steer_rng": self._steer.get_state()}

    def set_extra_state(self, state: dict) -> None:
        self._steer.set_state(state["steer_rng"])

    def extra_repr(self) -> str:
        lo, hi = self.bounds
        return (f"mode={self.mode}, grad={self.grad}, T={float(self.T.detach()):.4f}, T0={self.T0}, clip=[{lo:g}, {hi:g}], "
                f"alpha={self.alpha}")
