"""Evaluation in one place: the flow in evaluation mode, with its evaluation tolerances
(``solver.test_atol``/``test_rtol``) and its Hutchinson probes drawn from a fixed seed, so
that a test score is a deterministic function of the weights and training's random
stream is left as it was. Validation, ``test_scores``, the plots and ``evaluate`` all
evaluate through :func:`evaluating`.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

EVAL_SEED = 0  # evaluations draw their Hutchinson probes from this seed


@contextmanager
def evaluating(flow, seed: int = EVAL_SEED):
    """Within: ``flow`` in eval mode (evaluation tolerances; STEER at T0), no gradients, and the
    random streams forked and seeded with ``seed``; on exit all is put back as it was."""
    was_training = flow.training
    devices = sorted({p.device.index or 0 for p in flow.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        flow.eval()
        try:
            yield flow
        finally:
            flow.train(was_training)


def mean_nll(flow, data: torch.Tensor, batch_size: int = 1000) -> float:
    """-mean log p(x) over ``data`` in nats, evaluated as :func:`evaluating` sets it up."""
    total = 0.0
    with evaluating(flow):
        for chunk in data.split(batch_size):
            total += float(-flow.log_prob(chunk).sum())
    return total / data.shape[0]
