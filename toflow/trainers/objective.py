"""The training objective (paper eq. 6 with eq. 4): L = -mean log p(x) + sum_j c_j mean int g_j dt."""

from __future__ import annotations

from torch import Tensor

from ..models import standard_normal_logprob


def objective(flow, x: Tensor) -> tuple[Tensor, dict]:
    """The loss and its parts: ``nll`` (nats per sample) and each spatial regulariser's mean integral."""
    out = flow.transform(x)
    nll = -(standard_normal_logprob(out.z) + out.log_det).mean()
    parts, loss = {"nll": nll}, nll
    for regularizer in flow.regularizers:
        value = out.regularization[regularizer.name].mean()
        parts[regularizer.name] = value
        loss = loss + regularizer.coef * value
    return loss, parts
