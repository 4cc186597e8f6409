"""The training objectives, by ``objective.name``: ``likelihood`` and ``flow_matching``.

**likelihood** (paper eq. 6 with eq. 4 and 18): L = NLL + sum_j c_j mean_batch int g_j dt,
with the NLL in nats per sample for 2-D data and in bits per dimension for images
(FFJORD's and RNODE's convention, so the regularisers' coefficients mean what they meant
there). Each step solves the flow ODE.

**flow_matching** (Lipman et al. 2023; with ``coupling: ot``, OT-CFM, Tong et al. 2023)
trains the same CNF without solving it. The flow's one block maps y = the data as the block
sees it (x, or its logit for images) at t0 to noise at T; for each y of a batch,

    z ~ N(0, I)  (paired with the batch's y independently, or by the exact minibatch
                  optimal assignment on squared distances: ``coupling``),
    t ~ U[t0, T],  tau = (t - t0) / (T - t0),
    psi = (1 - tau) y + tau z  (+ sigma e, e ~ N(0, I), where ``sigma`` > 0),
    u = d psi / dt = (z - y) / (T - t0),

and L = mean over the batch and the dimensions of (f(psi, t) - u)^2: one evaluation of the
field a step, no ODE solve and so no training NFE. It needs one vector field that carries
the whole distribution to the noise on a fixed [t0, T]: a single-block flow (2-D data, or
the single-scale image flow, ``model.scales: 1``) with ``time.mode: fixed`` and no spatial
regulariser (they are integrals along solved trajectories). Test NLL and samples come from
the same ``flow.log_prob`` and ``flow.sample`` as for likelihood training.

A new objective is a class with a ``name``, ``solves`` (whether a step solves the ODE),
``check(flow)`` and ``__call__(flow, x, dim, levels) -> (loss, parts)``, and one
``OBJECTIVES.register`` line; a new coupling of flow matching's pairs is a :class:`Coupling`
subclass and one ``COUPLINGS.register`` line.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .data import bits_per_dim
from .models import Flow, standard_normal_logprob
from .registry import Registry

OBJECTIVES = Registry("objective.name", settings="objective")
COUPLINGS = Registry("objective.coupling")


def likelihood_loss(flow: Flow, x: Tensor, dim: int | None = None, levels: int | None = None) -> tuple[Tensor, dict]:
    r"""The likelihood loss of eq. 6: the NLL of eq. 4 plus each spatial regulariser's term.

    .. math:: L = -\frac{1}{B} \sum_b \log p(x_b) + \sum_j c_j \frac{1}{B} \sum_b \int_{t_0}^{T} g_j \, dt

    Args:
        flow: A :class:`~toflow.models.Flow`.
        x: A batch, shape ``(B, *event_shape)``.
        dim: The data's dimension, for bits/dim (images).
        levels: The data's grey levels; with them the NLL term is in bits/dim (eq. 18).

    Returns:
        ``(loss, parts)``: the scalar loss and its parts, ``nll`` (nats per sample), ``bpd``
        (with ``levels``) and each regulariser's batch-mean integral by its name.
    """
    out = flow.transform(x)
    nll = -(standard_normal_logprob(out.z) + out.log_det).mean()
    parts = {"nll": nll}
    loss = nll
    if levels is not None:
        parts["bpd"] = loss = bits_per_dim(nll, dim, levels)
    for regularizer in flow.regularizers:
        value = out.regularization[regularizer.name].mean()
        parts[regularizer.name] = value
        loss = loss + regularizer.coef * value
    return loss, parts


@OBJECTIVES.register
@dataclass(frozen=True)
class Likelihood:
    """Maximum likelihood through the ODE solve (:func:`likelihood_loss`)."""

    name = "likelihood"
    solves = True

    def check(self, flow) -> None:
        pass

    def __call__(self, flow: Flow, x: Tensor, dim: int | None = None,
                 levels: int | None = None) -> tuple[Tensor, dict]:
        """:func:`likelihood_loss` of the batch ``x`` (shape ``(B, *event_shape)``).

        Args:
            flow: The flow.
            x: The batch.
            dim: The data's dimension (images).
            levels: The data's grey levels (images: the loss is in bits/dim).

        Returns:
            ``(loss, parts)``.
        """
        return likelihood_loss(flow, x, dim, levels)


def ot_pairing(y: Tensor, z: Tensor) -> Tensor:
    """The permutation p minimising sum_i ||y_i - z_{p(i)}||^2 over the batch (exact, scipy's
    ``linear_sum_assignment``).

    Args:
        y: Data, shape ``(B, ...)``.
        z: Noise, the same shape.

    Returns:
        The indices p, shape ``(B,)``: ``z[p]`` is paired with ``y``.
    """
    from scipy.optimize import linear_sum_assignment  # scipy only where OT pairs are asked for

    cost = torch.cdist(y.flatten(1).double(), z.flatten(1).double()).pow(2)
    _, columns = linear_sum_assignment(cost.cpu().numpy())
    return torch.as_tensor(columns, device=z.device)


class Coupling:
    """How flow matching pairs a batch's data with its noise: ``pair(y, z)`` returns the noise
    reordered to match ``y`` (the plain matcher keeps the order drawn)."""

    name = "independent"

    def pair(self, y: Tensor, z: Tensor) -> Tensor:
        return z


class OTCoupling(Coupling):
    """The exact minibatch optimal-transport plan (OT-CFM, Tong et al. 2023): :func:`ot_pairing` first."""

    name = "ot"

    def pair(self, y: Tensor, z: Tensor) -> Tensor:
        return z[ot_pairing(y, z)]


COUPLINGS.register(Coupling)
COUPLINGS.register(OTCoupling)


def interpolation(y: Tensor, z: Tensor, t: Tensor, t0: float, T: float) -> tuple[Tensor, Tensor]:
    """psi(t) = (1 - tau) y + tau z with tau = (t - t0) / (T - t0), one t per sample, and its
    velocity u = (z - y) / (T - t0)."""
    tau = ((t - t0) / (T - t0)).reshape(-1, *[1] * (y.dim() - 1))
    return (1 - tau) * y + tau * z, (z - y) / (T - t0)


@OBJECTIVES.register
@dataclass(frozen=True)
class FlowMatching:
    """Regress the field on the straight path from y to z (see the module's docstring)."""

    sigma: float = 0.0
    coupling: str = "independent"

    name = "flow_matching"
    solves = False

    def __post_init__(self):
        if not self.sigma >= 0:
            raise ValueError(f"objective.sigma: must be non-negative, got {self.sigma}")
        COUPLINGS[self.coupling]  # refuses an unregistered one

    def check(self, flow: Flow, warm_start: bool = False) -> None:
        """Refuse a flow flow matching cannot train, in one line that says why.

        Args:
            flow: The flow.
            warm_start: Flow matching only warms the flow up for another objective, whose end-time
                mode and regularisers apply after it (T stays at T0 until then).
        """
        blocks = flow.blocks()
        key = "warm_start.steps" if warm_start else "objective.name"
        if len(blocks) != 1:
            raise ValueError(f"{key}: flow matching trains one vector field that carries the whole "
                             f"distribution, and this flow has {len(blocks)} CNF blocks; for images set "
                             "model.scales=1 (and model.num_blocks=1)")
        if warm_start:
            return
        if blocks[0].end_time.mode != "fixed":
            raise ValueError(f"time.mode: flow matching learns the field on a fixed [t0, T]; "
                             f"'{blocks[0].end_time.mode}' moves T, use time.mode=fixed")
        if flow.regularizers:
            raise ValueError("regularizers: flow matching solves no trajectory, so there is no integral to "
                             "regularise; leave the regularizers section empty")

    def __call__(self, flow: Flow, x: Tensor, dim: int | None = None,
                 levels: int | None = None) -> tuple[Tensor, dict]:
        r"""The flow-matching loss of the batch ``x``, one field evaluation for the whole batch.

        .. math:: L = \frac{1}{B D} \sum_b \| f(\psi_b, t_b) - u_b \|^2, \quad
                  \psi = (1 - \tau) y + \tau z, \quad u = \frac{z - y}{T - t_0}

        Args:
            flow: A single-block flow (:meth:`check`).
            x: The batch, shape ``(B, *event_shape)``.
            dim: Unused (the loss is per dimension already).
            levels: Unused.

        Returns:
            ``(loss, {"fm_mse": loss})``.
        """
        block = flow.blocks()[0]
        y = flow.prepare(x)
        z = COUPLINGS[self.coupling]().pair(y, torch.randn_like(y))
        end_time = block.end_time  # a drawing mode (STEER) warmed up by flow matching learns on [t0, T0]
        t0, T = float(end_time.t0), end_time.T0 if end_time.kind.draws else float(end_time.end().detach())
        t = t0 + (T - t0) * torch.rand(len(y), dtype=y.dtype, device=y.device)
        psi, u = interpolation(y, z, t, t0, T)
        if self.sigma > 0:
            psi = psi + self.sigma * torch.randn_like(psi)
        loss = (block.field(t, psi) - u).pow(2).mean()
        return loss, {"fm_mse": loss}
