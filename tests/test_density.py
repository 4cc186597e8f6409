"""The CNF block against the analytic flow of a linear field f(z, t) = A z."""

import math

import pytest
import torch
from helpers import tiny_cnf

from toflow.models import CNF, ConcatSquashMLP, EndTime, LinearField, standard_normal_logprob
from toflow.solvers import Dopri5

A = torch.tensor([[-0.3, 0.8], [-0.5, 0.2]], dtype=torch.float64)


def linear_flow(trace="exact", T=0.7, sensitivity="adjoint", tol=1e-9):
    return tiny_cnf(solver=Dopri5(atol=tol, rtol=tol, sensitivity=sensitivity), field=LinearField(A), T=T, mode="fixed",
                    trace=trace)


def analytic_logprob(x, T):
    # z(T) = exp(A T) x,  log p(x) = log N(exp(AT) x) + T tr(A)
    z = x @ torch.matrix_exp(A * T).T
    return standard_normal_logprob(z) + T * torch.trace(A)


@pytest.mark.parametrize("sensitivity", ["adjoint", "autograd"])
def test_exact_trace_matches_analytic_log_density(sensitivity):
    x = torch.randn(64, 2, dtype=torch.float64) * 2
    flow = linear_flow(sensitivity=sensitivity)
    z, log_det = flow(x)
    assert torch.allclose(z, x @ torch.matrix_exp(A * 0.7).T, atol=1e-6)
    assert torch.allclose(log_det, torch.full_like(log_det, 0.7 * float(torch.trace(A))), atol=1e-6)
    assert (flow.log_prob(x) - analytic_logprob(x, 0.7)).abs().max() < 1e-4


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased_within_its_variance(probe):
    # A field whose Jacobian has off-diagonal terms, so each probe gives a different estimate.
    flow = CNF(LinearField(A), EndTime(0.0, 0.7, "fixed"), Dopri5(atol=1e-9, rtol=1e-9), trace="hutchinson",
               probe=probe).double()
    n = 4000
    x = torch.randn(1, 2, dtype=torch.float64).repeat(n, 1)  # one point, n independent probes
    with torch.no_grad():
        estimates = flow.log_prob(x)
    exact = analytic_logprob(x[:1], 0.7)
    spread = estimates.std() / math.sqrt(n)
    assert estimates.std() > 0  # the probes really differ
    assert (estimates.mean() - exact).abs() < 4 * spread + 1e-8


def test_exact_trace_equals_jacobian_trace_of_a_network():
    field = ConcatSquashMLP(3, (16, 16)).double()
    flow = CNF(field, trace="exact").double()
    z = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    t = torch.tensor(0.3, dtype=torch.float64)
    dz = field(t, z)
    got, _ = flow.trace(dz, z, None, create_graph=False)
    want = torch.stack([torch.trace(torch.autograd.functional.jacobian(lambda v: field(t, v[None])[0], z[i]))
                        for i in range(5)])
    assert torch.allclose(got, want, atol=1e-10)


def test_sampling_inverts_the_density_map():
    flow = CNF(ConcatSquashMLP(2, (32, 32)), EndTime(0.0, 0.5, "toflow"), Dopri5(atol=1e-7, rtol=1e-7)).double()
    flow.eval()
    x = torch.randn(128, 2, dtype=torch.float64)
    with torch.no_grad():
        z, _ = flow(x)
        back = flow.inverse(z)
    assert (z - x).abs().max() > 1e-2  # the map is not the identity
    assert (back - x).abs().max() < 1e-4


def test_samples_have_the_event_shape_and_count_nfe():
    flow = CNF(ConcatSquashMLP(2, (16,)))
    flow.eval()
    with torch.no_grad():
        xs = flow.sample(50)
    assert xs.shape == (50, 2) and torch.isfinite(xs).all()
    assert flow.nfe["forward"] > 0


def test_sampling_in_batches_gives_the_samples_drawn_at_once():
    flow = tiny_cnf((8,), Dopri5(atol=1e-10, rtol=1e-10), seed=0)
    whole = flow.sample(10, generator=torch.Generator().manual_seed(3))
    batched = flow.sample(10, generator=torch.Generator().manual_seed(3), batch_size=4)  # 4 + 4 + 2
    assert batched.shape == (10, 2) and torch.allclose(batched, whole, atol=1e-8)
