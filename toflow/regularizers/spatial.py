"""Spatial regularisers of the flow's trajectories (RNODE, OT-Flow; paper eq. 5-6).

Each is an integral over the trajectory, int_{t0}^{T} g(z(t), t) dt, carried by the
solver as one more column of the augmented state (inside the error norm unless
``solver.control: state``), averaged over the batch and added to the loss with its coefficient.
Normalisation (RNODE's): per
dimension of z, so a coefficient means the same at any data dimension D.

The protocol: a regulariser is a :class:`Regularizer` with a ``name`` (its config key,
``regularizers.<name>: coefficient``) and ``integrand(ev) -> g`` (one value per sample),
where ``ev`` is the :class:`FieldEvaluation` of the dynamics at (t, z): t, z (carrying a
graph wherever gradients are being taken), f(z, t), and the Jacobian quantities the trace
estimator computes alongside the divergence, each computed only when some regulariser
lists it in ``needs``:

- ``frobenius_sq``: ||df/dz||_F^2 (exact with the exact trace; unbiased with Hutchinson's),
- ``jacobian``: the rows of df/dz, (B, D, D) (exact trace only),
- ``jvp``: J e, by forward tangents, or ``vjp``: e^T J, by vector-Jacobian products, for
  the Hutchinson probe e, which is ``ev.probe`` (Hutchinson only).

A new regulariser is one class and one ``REGULARIZERS.register`` line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Optional

from torch import Tensor

from ..registry import Registry


@dataclass
class FieldEvaluation:
    """What one evaluation of the flow's dynamics offers a regulariser."""

    t: Tensor  # time, 0-dim
    z: Tensor  # the state, (B, *event_shape)
    f: Tensor  # f(z, t), the same shape
    jacobian: dict = field(default_factory=dict)  # the quantities asked for (see the module's list)
    probe: Optional[Tensor] = None  # the Hutchinson probe of this solve, if any


@dataclass(frozen=True)
class Regularizer:
    """A coefficient ``coef`` (>= 0) times the batch mean of int g dt."""

    coef: float = 0.01
    name = "regularizer"
    needs: ClassVar[tuple] = ()  # Jacobian quantities the integrand reads from ``ev.jacobian``

    def __post_init__(self):
        if self.coef < 0:
            raise ValueError(f"regularizers.{self.name}: must be non-negative, got {self.coef}")

    def integrand(self, ev: FieldEvaluation) -> Tensor:
        raise NotImplementedError


REGULARIZERS = Registry("regularizers", keyed=True)  # name (the config key regularizers.<name>) -> Regularizer class


@REGULARIZERS.register
@dataclass(frozen=True)
class KineticEnergy(Regularizer):
    """Kinetic energy / optimal-transport cost (eq. 5): g = 0.5 * ||f(z, t)||^2 / D.

    Zero gradient-cost: it uses only the field's output.
    """

    name = "kinetic"

    def integrand(self, ev: FieldEvaluation) -> Tensor:
        return 0.5 * ev.f.flatten(1).pow(2).mean(1)


@REGULARIZERS.register
@dataclass(frozen=True)
class JacobianFrobenius(Regularizer):
    """Jacobian Frobenius norm: g = ||df/dz||_F^2 / D.

    With the Hutchinson trace, ||e^T J||^2 from the same probe and vector-Jacobian
    product as the divergence (no extra pass; unbiased, E[e e^T] = I); with the exact
    trace, the sum of the squared Jacobian rows it already computed (exact).
    """

    name = "jacobian_frobenius"
    needs = ("frobenius_sq",)

    def integrand(self, ev: FieldEvaluation) -> Tensor:
        return ev.jacobian["frobenius_sq"] / ev.f[0].numel()


def build_regularizers(**coefficients: float) -> list:
    """The registered regularisers with a positive coefficient.

    Args:
        **coefficients: ``name=coefficient`` for each, e.g. ``kinetic=0.01`` (the config's
            ``regularizers`` section); a zero coefficient is checked and left out.

    Returns:
        The regularisers, in the order given.
    """
    out = []
    for name, coef in coefficients.items():
        regularizer = REGULARIZERS[name](coef)  # refuses an unregistered name, checks the value
        if coef:
            out.append(regularizer)
    return out
