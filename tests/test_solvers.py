"""The dopri5 solver on torchdyn, with its guards."""

import copy

import pytest
import torch
from helpers import tiny_cnf

from toflow.models import CNF, ConcatSquashMLP, EndTime, LinearField
from toflow.solvers import SOLVERS, Dopri5, SolverError

A = torch.tensor([[-0.3, 0.8], [-0.5, 0.2]], dtype=torch.float64)


def linear_flow(solver):
    return tiny_cnf(solver=solver, field=LinearField(A), T=1.0, mode="fixed")


def end_error(flow, x):
    with torch.no_grad():
        z, _ = flow(x)
    return float((z - x @ torch.matrix_exp(A).T).abs().max())


def test_float64_keeps_full_accuracy_even_after_a_float32_solve():
    flow = linear_flow(Dopri5(atol=1e-12, rtol=1e-12))
    x = torch.randn(8, 2, dtype=torch.float64)
    assert end_error(flow, x) < 1e-10
    flow.float()
    with torch.no_grad():
        flow(torch.zeros(2, 2))  # a float32 solve on the same solver (the zero solution takes few steps)
    flow.double()
    with torch.no_grad():
        flow.field.A.copy_(A)  # undo the float32 rounding of the weights themselves
    assert end_error(flow, x) < 1e-10


def test_tolerance_controls_the_error():
    x = torch.randn(8, 2, dtype=torch.float64)
    loose = end_error(linear_flow(Dopri5(atol=1e-4, rtol=1e-4)), x)
    tight = end_error(linear_flow(Dopri5(atol=1e-9, rtol=1e-9)), x)
    assert tight < 1e-7 and tight < loose / 100


def test_evaluation_uses_its_own_tolerances():
    flow = CNF(LinearField(A), EndTime(0.0, 1.0, "fixed"), Dopri5(atol=1e-3, rtol=1e-3, test_atol=1e-9,
                                                                  test_rtol=1e-9)).double()
    x = torch.randn(8, 2, dtype=torch.float64)
    flow.train()
    assert end_error(flow, x) > 1e-7
    train_nfe = flow.nfe["forward"]
    flow.reset_nfe()
    flow.eval()
    assert end_error(flow, x) < 1e-7
    assert flow.nfe["forward"] > train_nfe


def test_a_flow_can_be_deep_copied_after_training_steps():
    flow = CNF(ConcatSquashMLP(2, (8,)), EndTime(0.0, 0.5, "toflow", grad="same_pass"), Dopri5(atol=1e-4, rtol=1e-4))
    x = torch.randn(16, 2)
    (-flow.log_prob(x).mean()).backward()
    twin = copy.deepcopy(flow)
    with torch.no_grad():
        assert torch.allclose(twin.log_prob(x), flow.log_prob(x))


def test_nfe_are_counted_forward_and_backward():
    flow = CNF(ConcatSquashMLP(2, (8,)), EndTime(0.0, 0.5, "toflow", grad="same_pass"), Dopri5(atol=1e-5, rtol=1e-5))
    calls = []  # every evaluation of the dynamics, counted apart from flow.nfe
    flow.dynamics.register_forward_hook(lambda module, args, out: calls.append(1))
    x = torch.randn(16, 2)
    loss = -flow.log_prob(x).mean()
    forward = flow.nfe["forward"]
    assert forward == len(calls) and forward >= 8 and (forward - 2) % 6 == 0  # init + 6 per dopri5 step
    assert flow.nfe["backward"] == 0
    loss.backward()  # the adjoint solved backward (and dL/dT's one evaluation at T, same_pass)
    assert flow.nfe == {"forward": forward, "backward": len(calls) - forward} and flow.nfe["backward"] > 0
    flow.reset_nfe()
    assert flow.nfe == {"forward": 0, "backward": 0}


def test_max_steps_stops_a_solve_with_the_block_and_its_T():
    flow = linear_flow(Dopri5(atol=1e-12, rtol=1e-12, max_steps=2))
    with pytest.raises(SolverError, match=r"T=1.*solver.max_steps"):
        flow(torch.randn(4, 2, dtype=torch.float64))


def test_registry_refuses_unknown_names_and_settings():
    assert isinstance(SOLVERS.build("dopri5", atol=1e-3), Dopri5)
    with pytest.raises(ValueError, match="solver.name"):
        SOLVERS.build("rk45")
    with pytest.raises(ValueError, match="solver.atol"):
        Dopri5(atol=-1.0)
    with pytest.raises(ValueError, match="solver.sensitivity"):
        Dopri5(sensitivity="interpolated_adjoint")
