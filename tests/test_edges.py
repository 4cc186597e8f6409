"""Promises at their edges: t0 != 0 and T0 != 0.5, flow matching on an interval of another length,
batches that do not divide the data, and one-sample batches in evaluation."""

import pytest
import torch
from helpers import tiny_cnf

from toflow.data.dequantization import ImageBatches
from toflow.models import CNF, ConcatSquashMLP, EndTime
from toflow.objectives import FlowMatching
from toflow.solvers import Dopri5
from toflow.trainers import evaluating, mean_nll, temporal_step


@pytest.mark.parametrize("t0,T0,eps", [(0.2, 0.9, 0.1), (-1.0, 0.5, 0.25)])
def test_the_clip_interval_and_the_T_step_with_t0_and_T0_of_their_own(t0, T0, eps):
    end_time = EndTime(t0, T0, "toflow", eps=eps, alpha=0.0, grad="same_pass")
    lo, hi = end_time.bounds
    assert (lo, hi) == pytest.approx((t0 + eps, 2 * T0 - t0 - eps))  # eq. 17, centred on T0
    flow = CNF(ConcatSquashMLP(2, (8,)), end_time)
    opt = torch.optim.SGD([flow.end_time.T], lr=1.0)
    flow.end_time.T.grad = torch.tensor(-0.05)  # a step that stays inside
    temporal_step(flow, opt)
    assert float(flow.end_time.T) == pytest.approx(T0 + 0.05)
    for push, bound in ((-100.0, hi), (100.0, lo)):  # and ones that would leave it
        flow.end_time.T.grad = torch.tensor(push)
        temporal_step(flow, opt)
        assert float(flow.end_time.T) == pytest.approx(bound)
    assert float(flow.end_time.t_span()[0]) == pytest.approx(t0)


def test_flow_matching_regresses_on_the_velocity_of_an_interval_of_another_length():
    # a field equal to the straight path's velocity on [0.25, 1.75] has zero loss only if the target is
    # divided by T - t0 = 1.5 and the path's time runs from t0 = 0.25
    t0, T = 0.25, 1.75

    class Exact(torch.nn.Module):
        dim = 2

        def __init__(self):
            super().__init__()
            self.y, self.z = None, None

        def forward(self, t, psi):  # the path's velocity on [t0, T], plus how far psi is off the path
            tau = ((t - t0) / (T - t0))[:, None]
            return (self.z - self.y) / (T - t0) + (psi - ((1 - tau) * self.y + tau * self.z))

    field = Exact()
    flow = CNF(field, EndTime(t0, T, "fixed"))
    y = torch.randn(256, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(9))  # not the noise
    torch.manual_seed(0)
    field.y, field.z = y, torch.randn_like(y)  # the noise the objective draws next, drawn first here
    torch.manual_seed(0)
    loss, _ = FlowMatching()(flow.double(), y)
    assert float(loss) < 1e-20
    torch.manual_seed(0)
    wrong = FlowMatching()(CNF(field, EndTime(t0, T + 0.5, "fixed")).double(), y)[0]
    assert float(wrong) > 1e-3  # another interval, another target


def test_batches_that_do_not_divide_the_data_are_whole_and_cover_it_once_an_epoch():
    images = torch.arange(10, dtype=torch.uint8).reshape(10, 1, 1, 1) * 20  # image i has grey level 20 i
    batches = ImageBatches(images, 3, 256, seed=1)
    assert batches.per_epoch == 3  # the last image of each shuffle is left for the next epoch
    seen = [torch.floor(batches.batch(k)[:, 0, 0, 0] * 256 / 20).long() for k in range(3)]
    assert all(len(b) == 3 for b in seen)
    flat = torch.cat(seen)
    assert len(flat.unique()) == 9  # nine different images in one epoch: none twice


def test_one_sample_batches_give_the_test_nll_of_one_batch():
    flow = tiny_cnf((16, 16), Dopri5(atol=1e-5, rtol=1e-5), seed=0, mode="fixed")
    with torch.no_grad():
        for p in flow.field.parameters():
            p.mul_(3.0)  # lively enough that batching would matter to a batch-averaged norm
    x = torch.randn(40, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 2
    together, alone = mean_nll(flow, x, batch_size=40), mean_nll(flow, x, batch_size=1)
    assert together == pytest.approx(alone, abs=1e-4)  # every sample held to the tolerance either way
    with evaluating(flow):
        each = torch.cat([flow.log_prob(x[i:i + 1]) for i in range(len(x))])
        batch = flow.log_prob(x)
    # each sample within a few tolerances either way (tests/test_accuracy.py holds the bound at 20)
    assert ((each - batch).abs() <= 20 * (1e-5 + 1e-5 * batch.abs())).all()


def test_iterating_the_batches_gives_batch_start_then_each_next_and_each_process_its_share():
    images = torch.randint(0, 256, (12, 1, 2, 2), dtype=torch.uint8)
    whole = ImageBatches(images, 4, 256, seed=2, start=5)
    stream = iter(whole)
    for k in (5, 6, 7, 8):
        assert torch.equal(next(stream), whole.batch(k))
    shares = [next(iter(ImageBatches(images, 4, 256, seed=2, start=5, rank=r, world=2))) for r in (0, 1)]
    assert [len(s) for s in shares] == [2, 2] and torch.equal(torch.cat(shares), whole.batch(5))
