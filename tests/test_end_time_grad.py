"""dL/dT by the adjoint, by autograd and by eq. 12-13 against finite differences of L in T."""

import copy

import pytest
import torch

from toflow.models import CNF, ConcatSquashMLP, EndTime
from toflow.solvers import Dopri5

TOL = 1e-10


def make_flow(sensitivity, grad="joint", T=0.6):
    torch.manual_seed(1)
    field = ConcatSquashMLP(2, (16, 16))
    return CNF(field, EndTime(0.0, T, "toflow", grad=grad), Dopri5(atol=TOL, rtol=TOL, sensitivity=sensitivity),
               trace="exact").double()


def loss_at(flow, x, T):
    with torch.no_grad():
        flow.end_time.T.fill_(T)
    with torch.no_grad():
        return float(-flow.log_prob(x).mean())


def finite_difference(flow, x, T, h=1e-4):
    probe = copy.deepcopy(flow)
    return (loss_at(probe, x, T + h) - loss_at(probe, x, T - h)) / (2 * h)


X = torch.randn(32, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 1.5


@pytest.mark.parametrize("sensitivity", ["adjoint", "autograd"])
def test_solve_gradient_matches_finite_differences(sensitivity):
    flow = make_flow(sensitivity)
    loss = -flow.log_prob(X).mean()
    loss.backward()
    fd = finite_difference(flow, X, 0.6)
    assert abs(fd) > 1e-3
    assert abs(float(flow.end_time.T.grad) - fd) / abs(fd) < 1e-3


@pytest.mark.parametrize("sensitivity", ["adjoint", "autograd"])
def test_alternating_gradient_matches_finite_differences(sensitivity):
    flow = make_flow(sensitivity, grad="alternating")
    loss = -flow.log_prob(X).mean()
    loss.backward()
    assert flow.end_time.T.grad is None  # the solve treats T as a constant in this mode
    nfe_before = flow.nfe["forward"]
    alternating = float(flow.alternating_time_grad())
    assert flow.nfe["forward"] == nfe_before + 1  # one extra evaluation, counted
    fd = finite_difference(flow, X, 0.6)
    assert abs(alternating - fd) / abs(fd) < 1e-3


def test_alternating_gradient_uses_the_updated_weights():
    flow = make_flow("adjoint", grad="alternating")
    (-flow.log_prob(X).mean()).backward()
    before = float(flow.alternating_time_grad())
    with torch.no_grad():
        for p in flow.field.parameters():
            p.add_(0.05 * torch.randn_like(p))
    assert abs(float(flow.alternating_time_grad()) - before) > 1e-6
