"""The training objective (paper eq. 6 with eq. 4 and 18).

L = NLL + sum_j c_j mean_batch int g_j dt, with the NLL in nats per sample for 2-D data
and in bits per dimension for images (FFJORD's and RNODE's convention, so the
regularisers' coefficients mean what they meant there).
"""

from __future__ import annotations

from torch import Tensor

from ..data import bits_per_dim
from ..models import standard_normal_logprob


def objective(flow, x: Tensor, dim: int | None = None, levels: int | None = None) -> tuple[Tensor, dict]:
    """The loss and its parts: ``nll`` (nats per sample), ``bpd`` (with ``levels``) and each
    spatial regulariser's mean integral."""
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
