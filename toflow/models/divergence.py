"""Estimators of the divergence Tr(df/dz) that drives the log-density (paper eq. 2).

Both take the field's output ``dz`` (computed from ``z`` with the graph kept) and return
one trace per sample and, when ``frobenius`` is asked for, the squared Frobenius norm
||df/dz||_F^2 from the same vector-Jacobian products (else None). ``create_graph`` must
be true whenever the results will be differentiated (autograd through the solver, or
the adjoint's vector-Jacobian products).
"""

from __future__ import annotations

import torch
from torch import Tensor


class ExactTrace:
    """Tr(J) = sum_i (e_i^T J)_i: one vector-Jacobian product per dimension (FFJORD's brute force).

    Exact; costs D backward passes, so it is the default only at low dimension. The rows
    it computes give ||J||_F^2 = sum_i ||e_i^T J||^2 exactly.
    """

    name = "exact"
    needs_probe = False

    def __call__(self, dz: Tensor, z: Tensor, probe: Tensor | None, create_graph: bool,
                 frobenius: bool = False) -> tuple[Tensor, Tensor | None]:
        dz_flat = dz.flatten(1)
        trace = torch.zeros(dz.shape[0], dtype=dz.dtype, device=dz.device)
        frobenius_sq = torch.zeros_like(trace) if frobenius else None
        for i in range(dz_flat.shape[1]):
            row = torch.autograd.grad(dz_flat[:, i].sum(), z, create_graph=create_graph, retain_graph=True)[0]
            row = row.flatten(1)
            trace = trace + row[:, i]
            if frobenius:
                frobenius_sq = frobenius_sq + row.pow(2).sum(1)
        return trace, frobenius_sq


class HutchinsonTrace:
    """Tr(J) ~ e^T J e with E[e e^T] = I (Hutchinson): one vector-Jacobian product.

    ``distribution`` is ``"rademacher"`` (entries +-1, the lower-variance default) or
    ``"gaussian"``. The probe ``e`` is drawn once per solve (:meth:`sample_probe`) and held
    fixed while the solver integrates, so the estimate is a smooth function of time.
    The same product gives ||J||_F^2 ~ ||e^T J||^2 (unbiased: E[J^T e e^T J] = J^T J).
    """

    name = "hutchinson"
    needs_probe = True

    def __init__(self, distribution: str = "rademacher"):
        if distribution not in ("rademacher", "gaussian"):
            raise ValueError(f"probe: '{distribution}' is not one of rademacher, gaussian")
        self.distribution = distribution

    def sample_probe(self, like: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.distribution == "gaussian":
            return torch.randn(like.shape, dtype=like.dtype, device=like.device, generator=generator)
        bits = torch.randint(0, 2, like.shape, device=like.device, generator=generator)
        return bits.to(like.dtype) * 2 - 1

    def __call__(self, dz: Tensor, z: Tensor, probe: Tensor | None, create_graph: bool,
                 frobenius: bool = False) -> tuple[Tensor, Tensor | None]:
        if probe is None:
            raise RuntimeError("Hutchinson trace: no probe was drawn for this solve")
        e_J = torch.autograd.grad(dz, z, probe, create_graph=create_graph, retain_graph=True)[0]
        trace = (e_J * probe).flatten(1).sum(1)
        return trace, (e_J.flatten(1).pow(2).sum(1) if frobenius else None)


def make_trace(kind: str, dim: int, probe: str = "rademacher"):
    """``exact``, ``hutchinson`` or ``auto`` (exact for dim <= 8, as the divergence is cheap there)."""
    if kind == "auto":
        kind = "exact" if dim <= 8 else "hutchinson"
    if kind == "exact":
        return ExactTrace()
    if kind == "hutchinson":
        return HutchinsonTrace(probe)
    raise ValueError(f"trace: '{kind}' is not one of auto, exact, hutchinson")
