"""Estimators of the divergence Tr(df/dz) that drives the log-density (paper eq. 2).

Two ways to the same trace:

- **forward tangents** (first order; toflow's own fields): the estimator gives the
  tangents V (:meth:`tangents`), the field returns J v for each beside f
  (``forward_with_tangents``), and :meth:`from_tangents` reads the trace off them. Every
  gradient through the divergence is then a first-order one.
- **vector-Jacobian products** (any field): ``__call__`` takes the field's output ``dz``
  (computed from ``z`` with the graph kept) and differentiates it; ``create_graph`` must
  be true whenever the results will be differentiated (autograd through the solver, or
  the adjoint's vector-Jacobian products), which makes those gradients double backward.

Either way the estimator returns one trace per sample and a dict of the Jacobian
quantities asked for in ``wants`` (those it ``provides`` on that way), computed from the
same products: the spatial regularisers read them (:mod:`toflow.regularizers.spatial`).

The registries :data:`TRACES` and :data:`PROBES` hold the names a config may give
(``model.trace``, ``model.probe``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..registry import Registry

TRACES = Registry("model.trace")  # name -> trace estimator class
PROBES = Registry("model.probe")  # name -> probe(like, generator) -> a draw of like's shape


@TRACES.register
class ExactTrace:
    """Tr(J) = sum_i (e_i^T J)_i: one vector-Jacobian product (or tangent) per dimension
    (FFJORD's brute force).

    Exact; costs D products, so it is the default only at low dimension. They give
    ||J||_F^2 = sum_i ||e_i^T J||^2 exactly, and J itself.
    """

    name, needs_probe = "exact", False
    provides = tangent_provides = ("frobenius_sq", "jacobian")

    @staticmethod
    def tangents(z: Tensor, probe: Tensor | None) -> Tensor:
        """The unit vectors e_1 .. e_D, (D, B, *shape)."""
        dim = z[0].numel()
        eye = torch.eye(dim, dtype=z.dtype, device=z.device).reshape(dim, 1, *z.shape[1:])
        return eye.expand(dim, *z.shape)

    @staticmethod
    def from_tangents(jv: Tensor, tangents: Tensor, wants=()) -> tuple[Tensor, dict]:
        """Tr(J) = sum_i (J e_i)_i; ||J||_F^2 = sum_i ||J e_i||^2; J's rows."""
        columns = jv.flatten(2)  # (D, B, D): column i of J for each sample
        trace = torch.diagonal(columns.transpose(0, 1), dim1=1, dim2=2).sum(1)
        quantities = {}
        if "frobenius_sq" in wants:
            quantities["frobenius_sq"] = columns.pow(2).sum((0, 2))
        if "jacobian" in wants:
            quantities["jacobian"] = columns.permute(1, 2, 0)
        return trace, quantities

    def __call__(self, dz: Tensor, z: Tensor, probe: Tensor | None, create_graph: bool,
                 wants: tuple = ()) -> tuple[Tensor, dict]:
        r"""The trace by vector-Jacobian products, :math:`\mathrm{Tr}\,J = \sum_i (e_i^T J)_i`.

        Args:
            dz: f(z, t), computed from ``z`` with its graph kept, shape ``(B, *shape)``.
            z: The state, shape ``(B, *shape)``.
            probe: Unused by the exact trace (None).
            create_graph: Keep the products' graph, for gradients through them.
            wants: The Jacobian quantities to return beside the trace.

        Returns:
            The trace, shape ``(B,)``, and the quantities asked for by name.
        """
        dz_flat = dz.flatten(1)
        trace = torch.zeros(dz.shape[0], dtype=dz.dtype, device=dz.device)
        frobenius_sq = torch.zeros_like(trace) if "frobenius_sq" in wants else None
        rows = []
        for i in range(dz_flat.shape[1]):
            row = torch.autograd.grad(dz_flat[:, i].sum(), z, create_graph=create_graph, retain_graph=True)[0]
            row = row.flatten(1)
            trace = trace + row[:, i]
            if frobenius_sq is not None:
                frobenius_sq = frobenius_sq + row.pow(2).sum(1)
            if "jacobian" in wants:
                rows.append(row)
        quantities = {"frobenius_sq": frobenius_sq, "jacobian": torch.stack(rows, 1) if rows else None}
        return trace, {key: value for key, value in quantities.items() if key in wants}


@PROBES.register(name="rademacher")
def rademacher(like: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Entries +-1 with equal probability (the lower-variance default)."""
    bits = torch.randint(0, 2, like.shape, device=like.device, generator=generator)
    return bits.to(like.dtype) * 2 - 1


@PROBES.register(name="gaussian")
def gaussian(like: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Standard normal entries."""
    return torch.randn(like.shape, dtype=like.dtype, device=like.device, generator=generator)


@TRACES.register
class HutchinsonTrace:
    """Tr(J) ~ e^T J e with E[e e^T] = I (Hutchinson): one vector-Jacobian product.

    ``distribution`` names a registered probe (:data:`PROBES`): ``"rademacher"`` (entries +-1,
    the lower-variance default) or ``"gaussian"``. The probe ``e`` is drawn once per solve
    (:meth:`sample_probe`) and held
    fixed while the solver integrates, so the estimate is a smooth function of time.
    The same product gives ||J||_F^2 ~ ||e^T J||^2 (unbiased: E[J^T e e^T J] = J^T J); by
    forward tangents, J e gives e . J e and ||J e||^2, as unbiased.
    """

    name, needs_probe = "hutchinson", True
    provides, tangent_provides = ("frobenius_sq", "vjp"), ("frobenius_sq", "jvp")

    @staticmethod
    def tangents(z: Tensor, probe: Tensor | None) -> Tensor:
        """The probe e, (1, B, *shape)."""
        return _drawn(probe)[None]

    @staticmethod
    def from_tangents(jv: Tensor, tangents: Tensor, wants=()) -> tuple[Tensor, dict]:
        """Tr(J) ~ e . J e; ||J||_F^2 ~ ||J e||^2 (unbiased: E[e^T J^T J e] = Tr(J^T J))."""
        return _with_probe(jv[0], tangents[0], "jvp", wants)

    def __init__(self, distribution: str = "rademacher"):
        self.draw = PROBES[distribution]  # refuses an unregistered probe
        self.distribution = distribution

    def sample_probe(self, like: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One probe of ``like``'s shape, dtype and device, for one solve."""
        return self.draw(like, generator)

    def __call__(self, dz: Tensor, z: Tensor, probe: Tensor | None, create_graph: bool,
                 wants: tuple = ()) -> tuple[Tensor, dict]:
        r"""Hutchinson's estimate :math:`\mathrm{Tr}\,J \approx e^T J e` by one vector-Jacobian product.

        Args:
            dz: f(z, t), computed from ``z`` with its graph kept, shape ``(B, *shape)``.
            z: The state, shape ``(B, *shape)``.
            probe: This solve's probe e, shape ``(B, *shape)``.
            create_graph: Keep the product's graph, for gradients through it.
            wants: The Jacobian quantities to return beside the trace.

        Returns:
            The estimate, shape ``(B,)``, and the quantities asked for by name.
        """
        e_J = torch.autograd.grad(dz, z, _drawn(probe), create_graph=create_graph, retain_graph=True)[0]
        return _with_probe(e_J, probe, "vjp", wants)


def _drawn(probe: Tensor | None) -> Tensor:
    if probe is None:
        raise RuntimeError("Hutchinson trace: no probe was drawn for this solve")
    return probe


def _with_probe(product: Tensor, probe: Tensor, name: str, wants) -> tuple[Tensor, dict]:
    """e . p and, as asked, p itself (``name``) and ||p||^2, for p = e^T J or J e."""
    quantities = {name: product} if name in wants else {}
    if "frobenius_sq" in wants:
        quantities["frobenius_sq"] = product.flatten(1).pow(2).sum(1)
    return (product * probe).flatten(1).sum(1), quantities


AUTO_EXACT_UP_TO = 8  # ``auto``: the exact trace up to this dimension, Hutchinson's above


def make_trace(kind: str, dim: int, probe: str | None = None):
    """A trace estimator by name.

    Args:
        kind: A name in :data:`TRACES`, or ``auto`` (exact up to dimension 8, where the divergence
            is cheap, Hutchinson's above).
        dim: The data's dimension.
        probe: Hutchinson's probe distribution (default rademacher); refused by the exact trace.

    Returns:
        The estimator.
    """
    if kind == "auto":
        kind = "exact" if dim <= AUTO_EXACT_UP_TO else "hutchinson"
    if kind not in TRACES:
        raise ValueError(TRACES.unknown(kind, also=("auto",)))
    trace = TRACES[kind]
    if not trace.needs_probe:
        if probe is not None:
            raise ValueError(f"model.probe: not used by the {kind} trace (dimension {dim})")
        return trace()
    return trace(probe or "rademacher")
