"""Spatial regularisers: analytic values, the Hutchinson Frobenius estimate, gradients."""

import copy
import math
from dataclasses import dataclass

import pytest
import torch
from helpers import tiny_cnf
from torch import nn

from toflow.models import CNF, ConcatSquashMLP, EndTime, HutchinsonTrace, TemporalRegularization
from toflow.objectives import likelihood_loss as objective
from toflow.regularizers import JacobianFrobenius, KineticEnergy, Regularizer, build_regularizers
from toflow.solvers import MALI, RK4, Dopri5


class ConstantField(nn.Module):
    def __init__(self, v):
        super().__init__()
        self.v = nn.Parameter(v)
        self.dim = v.numel()

    def forward(self, t, z):
        return self.v + 0 * z  # f(z, t) = v


def test_kinetic_energy_of_a_constant_field():
    v = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    flow = CNF(ConstantField(v), EndTime(0.25, 1.0, "fixed"), Dopri5(atol=1e-10, rtol=1e-10),
               regularizers=[KineticEnergy(1.0)]).double()
    out = flow.transform(torch.randn(4, 3, dtype=torch.float64))
    # int_{t0}^{T} 0.5 ||v||^2 / D dt = (T - t0) * 0.5 * ||v||^2 / D
    expected = 0.75 * 0.5 * float(v.pow(2).sum()) / 3
    assert torch.allclose(out.regularization["kinetic"], torch.full((4,), expected, dtype=torch.float64), atol=1e-9)


def test_exact_jacobian_frobenius_of_a_linear_field():
    A = torch.tensor([[0.1, -0.4], [0.7, 0.2]], dtype=torch.float64)
    from toflow.models import LinearField

    flow = CNF(LinearField(A), EndTime(0.0, 0.5, "fixed"), Dopri5(atol=1e-10, rtol=1e-10),
               regularizers=[JacobianFrobenius(1.0)], trace="exact").double()
    out = flow.transform(torch.randn(4, 2, dtype=torch.float64))
    expected = 0.5 * float(A.pow(2).sum()) / 2  # T * ||A||_F^2 / D
    assert torch.allclose(out.regularization["jacobian_frobenius"], torch.full((4,), expected, dtype=torch.float64))


def test_a_regulariser_reading_the_jacobian_gets_its_rows_either_way():
    from toflow.models import LinearField

    @dataclass(frozen=True)
    class Entry01(Regularizer):  # g = (df/dz)[0, 1]: row 0, column 1
        name = "entry01"
        needs = ("jacobian",)

        def integrand(self, ev):
            return ev.jacobian["jacobian"][:, 0, 1]

    A = torch.tensor([[0.1, -0.4], [0.7, 0.2]], dtype=torch.float64)
    expected = torch.full((4,), 0.5 * -0.4, dtype=torch.float64)  # T * A[0, 1]
    for divergence in ("tangents", "vjp"):
        flow = CNF(LinearField(A), EndTime(0.0, 0.5), Dopri5(atol=1e-10, rtol=1e-10), regularizers=[Entry01(1.0)],
                   trace="exact", divergence=divergence).double()
        value = flow.transform(torch.randn(4, 2, dtype=torch.float64)).regularization["entry01"]
        assert torch.allclose(value, expected), divergence


@pytest.mark.parametrize("distribution", ["rademacher", "gaussian"])
def test_hutchinson_frobenius_matches_the_exact_norm(distribution):
    torch.manual_seed(0)
    field = ConcatSquashMLP(5, (32, 32)).double()
    z = torch.randn(1, 5, dtype=torch.float64).repeat(20000, 1).requires_grad_(True)
    t = torch.tensor(0.4, dtype=torch.float64)
    dz = field(t, z)
    trace = HutchinsonTrace(distribution)
    probe = trace.sample_probe(z)
    _, quantities = trace(dz, z, probe, create_graph=False, wants=("frobenius_sq",))
    estimate = quantities["frobenius_sq"]
    J = torch.autograd.functional.jacobian(lambda v: field(t, v[None])[0], z[0].detach())
    exact = float(J.pow(2).sum())
    assert abs(float(estimate.mean()) - exact) / exact < 0.02


def tiny_flow(regularizer, solver=None):
    return tiny_cnf((6,), solver or Dopri5(atol=1e-10, rtol=1e-10), seed=2, T=0.5, regularizers=[regularizer])


@pytest.mark.parametrize("regularizer", [KineticEnergy(1.0), JacobianFrobenius(1.0)])
def test_regulariser_gradient_matches_finite_differences(regularizer):
    flow = tiny_flow(regularizer)
    x = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def reg_value():
        return flow.transform(x).regularization[regularizer.name].mean()

    value = reg_value()
    weight = flow.field.layers[0].layer.weight
    T = flow.end_time.T
    grad_w, grad_T = torch.autograd.grad(value, (weight, T))
    h = 1e-5
    with torch.no_grad():
        weight[1, 0] += h
        up = float(reg_value())
        weight[1, 0] -= 2 * h
        down = float(reg_value())
        weight[1, 0] += h
        fd_w = (up - down) / (2 * h)
        T += h
        up = float(reg_value())
        T -= 2 * h
        down = float(reg_value())
        T += h
        fd_T = (up - down) / (2 * h)
    assert abs(float(grad_w[1, 0]) - fd_w) < 1e-6 * max(1, abs(fd_w))
    assert abs(float(grad_T) - fd_T) < 1e-6 * max(1, abs(fd_T))


@pytest.mark.parametrize("solver", [MALI(atol=1e-5, rtol=1e-5), RK4(step_size=0.1)])
def test_regularisers_work_with_every_solver(solver):
    flow = tiny_flow(KineticEnergy(0.5), solver)
    x = torch.randn(16, 2, dtype=torch.float64)
    loss, parts = objective(flow, x)
    reference = copy.deepcopy(flow)  # the same flow solved apart, by dopri5 at a far tighter tolerance
    reference.use_solver(Dopri5(atol=1e-10, rtol=1e-10))
    with torch.no_grad():
        _, exact = objective(reference, x)
    bound = 1e-4 if isinstance(solver, MALI) else 1e-3  # the solver's own error at its settings
    assert abs(float(parts["kinetic"]) - float(exact["kinetic"])) < bound
    assert abs(float(parts["nll"]) - float(exact["nll"])) < bound
    assert torch.isclose(loss, parts["nll"] + 0.5 * parts["kinetic"])
    loss.backward()
    assert flow.end_time.T.grad is not None and torch.isfinite(flow.end_time.T.grad)


@dataclass(frozen=True)
class Oscillating(Regularizer):
    """g = cos(200 t): an integral that takes many steps to resolve, whatever z does."""

    name = "oscillating"

    def integrand(self, ev):
        return torch.cos(200 * ev.t) * ev.z.new_ones(ev.z.shape[0])


def test_integrals_shrink_the_steps_only_where_controlled():
    x = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def solve(regularizers, control):
        torch.manual_seed(2)
        flow = CNF(ConcatSquashMLP(2, (16,)), EndTime(0.0, 0.5, "fixed"), Dopri5(atol=1e-6, rtol=1e-6, control=control),
                   regularizers=regularizers, trace="exact").double()
        with torch.no_grad():
            out = flow.transform(x)
        return flow.nfe["forward"], out

    plain, _ = solve([], "state")
    assert solve([Oscillating(1.0)], "state")[0] == plain  # z alone decides the steps
    nfe, out = solve([Oscillating(1.0)], "all")
    assert nfe > 2 * plain  # the integral's error is bounded too ...
    exact = math.sin(200 * 0.5) / 200
    assert torch.allclose(out.regularization["oscillating"], torch.full((64,), exact, dtype=torch.float64),
                          atol=1e-5, rtol=0)  # ... and so it is right


def test_alternating_time_gradient_includes_the_regulariser():
    flow = tiny_flow(KineticEnergy(2.0))
    flow.end_time.grad_source = "after_step"
    x = torch.randn(8, 2, dtype=torch.float64)
    loss, _ = objective(flow, x)
    loss.backward()
    alternating = float(flow.dloss_dT())
    h = 1e-5
    with torch.no_grad():
        flow.end_time.T += h
        up = float(objective(flow, x)[0])
        flow.end_time.T -= 2 * h
        down = float(objective(flow, x)[0])
        flow.end_time.T += h
    assert abs(alternating - (up - down) / (2 * h)) < 1e-5


def test_builders_and_temporal():
    regs = build_regularizers(kinetic=0.01, jacobian_frobenius=0.0)
    assert [r.name for r in regs] == ["kinetic"]
    with pytest.raises(ValueError, match="regularizers.sobolev"):
        build_regularizers(sobolev=1.0)
    tr = TemporalRegularization(0.3)
    assert float(tr(torch.tensor(-2.0))) == pytest.approx(0.6)
    assert float(tr.derivative(torch.tensor(-2.0))) == pytest.approx(-0.3)
