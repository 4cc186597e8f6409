"""Evaluation in one place: the flow in evaluation mode, with its evaluation tolerances
(``solver.test_atol``/``test_rtol``) and its Hutchinson probes drawn from a fixed seed, so
that a test score is a deterministic function of the weights and training's random
stream is left as it was. Validation, ``test_scores``, the plots and ``evaluate`` all
evaluate through :func:`evaluating`.

An evaluation solve controls the log-density (and every integral) as well as z, and every
sample's error on its own (:class:`~toflow.solvers.control.Tolerance`). A reported score is
checked: it is computed again with tolerances ``CHECK_FACTOR`` times tighter
(:func:`tightened`), and :func:`checked_scores` says how far it moved; where it moved more
than ``CONVERGED`` (nats for 2-D data, bits/dim for images), the tighter figure is the one
reported.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

EVAL_SEED = 0  # evaluations draw their Hutchinson probes from this seed
CHECK_FACTOR = 10  # the convergence check evaluates again at tolerances this many times tighter
CONVERGED = 1e-3  # a score that moves less than this under the check is reported as it is


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


@contextmanager
def tightened(flow, factor: float = CHECK_FACTOR):
    """Within: every block of ``flow`` evaluates at tolerances ``factor`` times tighter."""
    blocks = flow.blocks()
    solvers = [block.solver for block in blocks]
    try:
        for block, solver in zip(blocks, solvers):
            block.use_solver(solver.tightened(factor))
        yield flow
    finally:
        for block, solver in zip(blocks, solvers):
            block.use_solver(solver)


def checked_scores(scores: dict, tighter: dict, tolerances: tuple[float, float], metric: str) -> dict:
    """The scores to report from ``scores`` (at ``tolerances``, the evaluation's ``(atol, rtol)``)
    and ``tighter`` (the same at tolerances ``CHECK_FACTOR`` times tighter).

    The result holds the reported scores, ``eval_tolerance`` and ``tolerance_check`` (the tighter
    tolerances and how far each score moved there). Where ``metric`` (``test_nll`` or
    ``test_bpd``) moved more than ``CONVERGED``, the tighter scores are reported and
    ``unconverged`` keeps the ones at the evaluation tolerances.
    """
    atol, rtol = tolerances
    change = {key: tighter[key] - scores[key] for key in scores}
    converged = abs(change[metric]) <= CONVERGED
    out = {**(scores if converged else tighter), "eval_tolerance": {"atol": atol, "rtol": rtol},
           "tolerance_check": {"atol": atol / CHECK_FACTOR, "rtol": rtol / CHECK_FACTOR, **change}}
    if not converged:
        out["unconverged"] = dict(scores)
    return out


def _tolerance_text(atol: float, rtol: float) -> str:
    return f"atol=rtol={atol:.0e}" if atol == rtol else f"atol={atol:.0e}, rtol={rtol:.0e}"


def describe(scores: dict) -> str:
    """The reported score in one phrase, with its tolerance and what the check found, e.g.
    ``test NLL 3.6962 nats at atol=rtol=1e-05 (10x tighter: +2.1e-05)``."""
    metric, unit, name = (("test_bpd", "bits/dim", "test") if "test_bpd" in scores else
                          ("test_nll", "nats", "test NLL"))
    text = f"{name} {scores[metric]:.4f} {unit}"
    if "tolerance_check" not in scores:
        return text
    loose, check = scores["eval_tolerance"], scores["tolerance_check"]
    if "unconverged" in scores:
        return (f"{text} at {_tolerance_text(check['atol'], check['rtol'])}, {CHECK_FACTOR}x tighter than the "
                f"evaluation's {_tolerance_text(loose['atol'], loose['rtol'])}, where it read "
                f"{scores['unconverged'][metric]:.4f} ({check[metric]:+.1e}: not converged)")
    return f"{text} at {_tolerance_text(loose['atol'], loose['rtol'])} ({CHECK_FACTOR}x tighter: {check[metric]:+.1e})"
