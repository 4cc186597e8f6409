"""dL/dT by the adjoint, by autograd and by eq. 12-13 against finite differences of L in T."""

import copy

import pytest
import torch
from helpers import tiny_cnf

from toflow.solvers import Dopri5, SolverError

TOL = 1e-10


def make_flow(sensitivity, grad="same_pass", T=0.6):
    return tiny_cnf((16, 16), Dopri5(atol=TOL, rtol=TOL, sensitivity=sensitivity), seed=1, T=T, grad=grad)


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
    flow = make_flow(sensitivity, grad="after_step")
    loss = -flow.log_prob(X).mean()
    loss.backward()
    assert flow.end_time.T.grad is None  # the solve treats T as a constant in this mode
    nfe_before = flow.nfe["forward"]
    alternating = float(flow.dloss_dT())
    assert flow.nfe["forward"] == nfe_before + 1  # one extra evaluation, counted
    fd = finite_difference(flow, X, 0.6)
    assert abs(alternating - fd) / abs(fd) < 1e-3


def test_alternating_gradient_uses_the_updated_weights():
    flow = make_flow("adjoint", grad="after_step")
    (-flow.log_prob(X).mean()).backward()
    before = float(flow.dloss_dT())
    with torch.no_grad():
        for p in flow.field.parameters():
            p.add_(0.05 * torch.randn_like(p))
    assert abs(float(flow.dloss_dT()) - before) > 1e-6


# ------------------------------------------------------------------ fixed grids: the discrete solution's derivative
def fixed_flow(solver, grad="same_pass", T=0.6):
    flow = tiny_cnf((16, 16), solver, seed=1, T=T, grad=grad)
    with torch.no_grad():
        for p in flow.field.parameters():
            p.mul_(3.0)  # a lively field, so Euler's error is large at its usual steps
    return flow


@pytest.mark.parametrize("sensitivity", ["adjoint", "autograd"])
@pytest.mark.parametrize("name", ["euler", "rk4"])
def test_fixed_grid_T_gradient_is_the_derivative_of_its_discrete_loss(name, sensitivity):
    from toflow.solvers import SOLVERS

    # step 0.25 on [0, 0.6]: n = 3 steps of 0.2; a small change of T stretches the same 3 steps
    flow = fixed_flow(SOLVERS.build(name, step_size=0.25, sensitivity=sensitivity))
    (-flow.log_prob(X).mean()).backward()
    fd = finite_difference(flow, X, 0.6, h=1e-6)
    assert abs(float(flow.end_time.T.grad) - fd) <= 1e-6 * max(1.0, abs(fd))

    after = fixed_flow(SOLVERS.build(name, step_size=0.25, sensitivity=sensitivity), grad="after_step")
    (-after.log_prob(X).mean()).backward()
    assert abs(float(after.dloss_dT()) - fd) <= 1e-6 * max(1.0, abs(fd))


def test_euler_field_at_the_end_is_not_its_velocity():
    # a(T) . F(y_n, T), the continuous derivative at the discrete end state, misses by Euler's error
    from toflow.solvers import Euler, Solver

    flow = fixed_flow(Euler(step_size=0.25), grad="after_step")
    (-flow.log_prob(X).mean()).backward()
    with torch.no_grad():
        end = flow.ode.end_state(torch.cat([X, X.new_zeros(len(X), 1)], 1), flow.end_time.t_span())
    continuous = float(Solver.end_time_derivative(flow.solver, flow.ode.vf, X, 0.0, 0.6, end)(
        flow.end_time.record.adjoint))
    fd = finite_difference(flow, X, 0.6, h=1e-6)
    assert abs(float(flow.dloss_dT()) - fd) <= 1e-6 * max(1.0, abs(fd))
    assert abs(continuous - fd) > 0.2 * abs(fd)


def test_fixed_grid_jumps_at_multiples_of_its_step():
    from toflow.solvers import Euler

    flow = fixed_flow(Euler(step_size=0.25), T=0.5)
    below, above = (loss_at(flow, X, 0.5 + s) for s in (-1e-9, 1e-9))  # 2 steps, then 3
    inside = (loss_at(flow, X, 0.45 - 1e-9), loss_at(flow, X, 0.45 + 1e-9))  # 2 steps both sides
    assert abs(above - below) > 1e-3 and abs(inside[1] - inside[0]) < 1e-6


def test_the_T_step_says_when_no_backward_pass_has_run():
    flow = make_flow("adjoint", grad="after_step")
    with pytest.raises(RuntimeError, match="no training solve"):
        flow.dloss_dT()
    flow.log_prob(X)
    with pytest.raises(RuntimeError, match="no backward pass"):
        flow.dloss_dT()
    (-flow.log_prob(X).mean()).backward()
    assert torch.isfinite(flow.dloss_dT())


def test_a_training_solve_that_failed_leaves_no_T_gradient():
    flow = tiny_cnf((16, 16), Dopri5(max_steps=1), seed=1, grad="after_step")
    with pytest.raises(SolverError, match="solver.max_steps"):
        flow.log_prob(X)
    with pytest.raises(RuntimeError, match="^end-time gradient: no training solve has run since the record was made$"):
        flow.dloss_dT()
