"""Spatial regularisers of the flow's trajectories (RNODE, OT-Flow; paper eq. 5-6).

Each is an integral over the trajectory, int_{t0}^{T} g(z(t), t) dt, carried by the
solver as one more column of the augmented state (outside the error norm), averaged over
the batch and added to the loss with its coefficient. Normalisation (RNODE's): per
dimension of z, so a coefficient means the same at any data dimension D.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class _Spatial:
    """A coefficient ``coef`` (>= 0) times the batch mean of int g dt."""

    coef: float = 0.01
    name = "spatial"
    needs_frobenius = False

    def __post_init__(self):
        if self.coef < 0:
            raise ValueError(f"regularizers.{self.name}: must be non-negative, got {self.coef}")


@dataclass(frozen=True)
class KineticEnergy(_Spatial):
    """Kinetic energy / optimal-transport cost (eq. 5): g = 0.5 * ||f(z, t)||^2 / D.

    Zero gradient-cost: it uses only the field's output.
    """

    name = "kinetic"

    def integrand(self, dz: Tensor, frobenius_sq: Tensor | None) -> Tensor:
        flat = dz.flatten(1)
        return 0.5 * flat.pow(2).mean(1)


@dataclass(frozen=True)
class JacobianFrobenius(_Spatial):
    """Jacobian Frobenius norm: g = ||df/dz||_F^2 / D.

    With the Hutchinson trace, ||e^T J||^2 from the same probe and vector-Jacobian
    product as the divergence (no extra pass; unbiased, E[e e^T] = I); with the exact
    trace, the sum of the squared Jacobian rows it already computed (exact).
    """

    name = "jacobian_frobenius"
    needs_frobenius = True

    def integrand(self, dz: Tensor, frobenius_sq: Tensor | None) -> Tensor:
        if frobenius_sq is None:
            raise RuntimeError("JacobianFrobenius: the trace estimator gave no Frobenius norm")
        return frobenius_sq / dz[0].numel()
