"""Every solver: accuracy at its order, gradients for weights, x and T, and its own guarantees."""

import math

import pytest
import torch
from helpers import tiny_cnf

from toflow.models import CNF, ConcatSquashMLP, EndTime, LinearField
from toflow.objectives import likelihood_loss as objective
from toflow.solvers import ACA, MALI, RK4, SOLVERS, Dopri5, Euler, SolverError, Tolerance
from toflow.solvers.integrators import AdaptiveDopri5, AdaptiveLeapfrog, FixedGrid

A = torch.tensor([[-0.3, 0.8], [-0.5, 0.2]], dtype=torch.float64)


def linear(t, y):
    return y @ A.T


def exact(y0, T):
    return y0 @ torch.matrix_exp(A * T).T


Y0 = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(4))


@pytest.mark.parametrize("integrator", [AdaptiveDopri5(), AdaptiveLeapfrog()])
def test_adaptive_integrators_reach_tight_tolerances(integrator):
    y1, _ = integrator.integrate(linear, Y0, 0.0, 1.3, Tolerance(1e-8, 1e-8), 10**6)
    bound = 1e-7 if isinstance(integrator, AdaptiveDopri5) else 1e-5
    assert (y1 - exact(Y0, 1.3)).abs().max() < bound


@pytest.mark.parametrize("method,order", [("rk4", 4), ("euler", 1)])
def test_fixed_step_methods_converge_at_their_order(method, order):
    errors = []
    for h in (0.1, 0.05):
        y1, _ = FixedGrid(SOLVERS[method].step, h).integrate(linear, Y0, 0.0, 1.0, Tolerance(1, 1), 10**6)
        errors.append(float((y1 - exact(Y0, 1.0)).abs().max()))
    rate = math.log2(errors[0] / errors[1])
    assert abs(rate - order) < 0.25


def test_leapfrog_converges_at_second_order():
    from toflow.solvers.steps import alf_step

    errors = []
    for h in (0.02, 0.01):
        y, v, t = Y0, linear(None, Y0), 0.0
        for _ in range(round(1.0 / h)):
            y, v, _ = alf_step(linear, t, h, y, v)
            t += h
        errors.append(float((y - exact(Y0, 1.0)).abs().max()))
    assert abs(math.log2(errors[0] / errors[1]) - 2) < 0.25


def test_integrators_run_backward_in_time():
    y1, _ = AdaptiveDopri5().integrate(linear, Y0, 1.0, 0.2, Tolerance(1e-9, 1e-9), 10**5)
    assert (y1 - exact(Y0, -0.8)).abs().max() < 1e-7


def test_mali_inverts_back_to_the_initial_state():
    from toflow.solvers.steps import alf_inverse

    steps = []
    field = ConcatSquashMLP(2, (16, 16)).double()

    def f(t, y):
        return field(t, y)

    with torch.no_grad():
        v0 = f(torch.tensor(0.0, dtype=torch.float64), Y0)
        y, v = AdaptiveLeapfrog().integrate_pair(f, Y0, v0, 0.0, 1.0, Tolerance(1e-6, 1e-6), 10**5,
                                                  record=lambda t, h, y: steps.append((t, h)))
        assert len(steps) > 5 and (y - Y0).abs().max() > 1e-2
        for t, h in reversed(steps):
            y, v = alf_inverse(f, t, h, y, v)
    assert (y - Y0).abs().max() < 1e-6 and (v - v0).abs().max() < 1e-6


# ------------------------------------------------------------------ gradients on a small CNF
SOLVER_CASES = {
    "dopri5-adjoint": lambda: Dopri5(atol=1e-9, rtol=1e-9, sensitivity="adjoint"),
    "dopri5-autograd": lambda: Dopri5(atol=1e-9, rtol=1e-9, sensitivity="autograd"),
    "aca": lambda: ACA(atol=1e-9, rtol=1e-9),
    "mali": lambda: MALI(atol=1e-8, rtol=1e-8),
    "rk4-autograd": lambda: RK4(step_size=0.02, sensitivity="autograd"),
    "rk4-adjoint": lambda: RK4(step_size=0.02, sensitivity="adjoint"),
    "euler-autograd": lambda: Euler(step_size=0.01, sensitivity="autograd"),
}
X = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(5))


def small_cnf(solver):
    return tiny_cnf((8, 8), solver, seed=3)


def loss_fn(flow, x):
    return -flow.log_prob(x).mean()


def central_difference(fn, h=1e-5):
    return (fn(h) - fn(-h)) / (2 * h)


@pytest.mark.parametrize("case", SOLVER_CASES)
def test_gradients_match_finite_differences(case):
    flow = small_cnf(SOLVER_CASES[case]())
    x = X.clone().requires_grad_(True)
    loss = loss_fn(flow, x)
    loss.backward()
    weight = flow.field.layers[1].layer.weight
    T = flow.end_time.T
    got = {"weight": float(weight.grad[2, 3]), "x": float(x.grad[1, 0]), "T": float(T.grad)}

    def shifted(tensor, index):
        def at(h):
            with torch.no_grad():
                tensor[index] += h
                value = float(loss_fn(flow, X))
                tensor[index] -= h
            return value
        return at

    def shifted_x(h):
        moved = X.clone()
        moved[1, 0] += h
        with torch.no_grad():
            return float(loss_fn(flow, moved))

    fd = {"weight": central_difference(shifted(weight.data, (2, 3))), "x": central_difference(shifted_x),
          "T": central_difference(shifted(T.data, ()))}
    # dL/dT = a(T) . F(T) is the continuous derivative; the finite difference sees the discrete map,
    # which differs by the solver's error: O(h) for Euler with h = 0.01, below 1e-6 for the others.
    tolerances = {"weight": 1e-6, "x": 1e-6, "T": 3e-2 if case.startswith("euler") else 1e-6}
    for key in got:
        assert abs(got[key] - fd[key]) <= tolerances[key] * max(1.0, abs(fd[key])), (key, got[key], fd[key])


def test_aca_equals_autograd_through_the_same_steps():
    grads = {}
    for name, solver in (("aca", ACA(atol=1e-6, rtol=1e-6)), ("autograd", Dopri5(atol=1e-6, rtol=1e-6,
                                                                                   sensitivity="autograd"))):
        flow = small_cnf(solver)
        x = X.clone().requires_grad_(True)
        loss_fn(flow, x).backward()
        grads[name] = torch.cat([x.grad.flatten()] + [p.grad.flatten() for p in flow.field.parameters()]
                                + [flow.end_time.T.grad.reshape(1)])
        grads[name + "_nfe"] = flow.nfe
    rel = (grads["aca"] - grads["autograd"]).norm() / grads["autograd"].norm()
    assert rel < 1e-6
    assert grads["aca_nfe"]["forward"] == grads["autograd_nfe"]["forward"]  # each accepted step computed once


def test_every_solver_is_registered_and_trains_T():
    assert set(SOLVERS) == {"dopri5", "aca", "mali", "rk4", "euler"}
    x = torch.randn(64, 2) * 2
    for name in SOLVERS:
        solver = SOLVERS.build(name, atol=1e-4, rtol=1e-4, step_size=0.1 if name in ("rk4", "euler") else None)
        flow = CNF(ConcatSquashMLP(2, (16, 16)), EndTime(0.0, 0.5, "toflow", grad="same_pass"), solver)
        opt_w = torch.optim.Adam([p for n, p in flow.named_parameters() if not n.endswith("end_time.T")], 1e-2)
        opt_t = torch.optim.Adam([flow.end_time.T], 1e-2)
        losses = []
        for _ in range(6):
            loss = loss_fn(flow, x)
            assert torch.isfinite(loss)
            losses.append(float(loss))
            opt_w.zero_grad()
            opt_t.zero_grad()
            loss.backward()
            opt_w.step()
            opt_t.step()
        assert losses[-1] < losses[0], (name, losses)  # it trains: the loss of the same batch goes down
        assert float(flow.end_time.T.detach()) != 0.5, name
        assert flow.nfe["forward"] > 0 and flow.nfe["backward"] > 0, name


def test_float64_end_to_end():
    for solver in (Dopri5(atol=1e-12, rtol=1e-12), ACA(atol=1e-12, rtol=1e-12)):
        flow = CNF(LinearField(A), EndTime(0.0, 1.0, "fixed"), solver).double()
        with torch.no_grad():
            z, _ = flow(Y0)
        assert (z - exact(Y0, 1.0)).abs().max() < 1e-10


def test_step_underflow_and_max_steps_are_errors():
    def blowup(t, y):
        return y.pow(2) * 1e3  # y' = 1000 y^2 blows up at t = 1e-3 for y0 = 1

    with pytest.raises(SolverError, match="underflow|max_steps"):
        AdaptiveDopri5().integrate(blowup, torch.ones(1, 1, dtype=torch.float64), 0.0, 1.0, Tolerance(1e-8, 1e-8),
                                   10**6)
    with pytest.raises(SolverError, match="solver.max_steps"):
        AdaptiveLeapfrog().integrate(linear, Y0, 0.0, 1.0, Tolerance(1e-12, 1e-12), 5)
    with pytest.raises(SolverError, match="solver.max_steps"):
        FixedGrid(SOLVERS["rk4"].step, 0.01).integrate(linear, Y0, 0.0, 1.0, Tolerance(1, 1), 50)


def test_seminorm_leaves_the_integral_columns_out():
    # the second column grows wildly but only the first is controlled: few steps
    def f(t, y):
        return torch.cat([-y[:, :1], 1e4 * torch.cos(50 * t) * torch.ones_like(y[:, 1:])], 1)

    counts = {}
    for controlled in (1, None):
        steps = []
        AdaptiveDopri5().integrate(f, torch.ones(3, 2, dtype=torch.float64), 0.0, 1.0,
                                   Tolerance(1e-6, 1e-6, controlled), 10**5,
                                   record=lambda t, h, y, steps=steps: steps.append(h))
        counts[controlled] = len(steps)
    assert counts[1] * 5 < counts[None]



@pytest.mark.parametrize("integrator,per_step", [(AdaptiveDopri5(), 6), (AdaptiveLeapfrog(), 1)])
def test_adaptive_cost_is_invariant_to_rescaling_time(integrator, per_step):
    # y' = f(t, y) on [0, T] and y' = c f(c s, y) on [0, T / c] are one path: after the first
    # step (Hairer's starting guess is not scale-free) the solver takes the same steps, so a
    # shorter end time by itself saves no evaluations
    def field(t, y):
        return torch.tanh(y @ A.T) * (1 + 0.5 * torch.sin(3 * torch.as_tensor(t, dtype=y.dtype)))

    runs = {}
    for c in (1.0, 16.0, 1 / 16):
        calls = [0]

        def rescaled(s, y, c=c, calls=calls):
            calls[0] += 1
            return c * field(c * s, y)

        y1, _ = integrator.integrate(rescaled, Y0, 0.0, 0.8 / c, Tolerance(1e-6, 1e-6), 10**5)
        runs[c] = (y1, calls[0])
    y_ref, calls_ref = runs[1.0]
    assert calls_ref > 20
    for y1, calls in runs.values():
        assert abs(calls - calls_ref) <= per_step + 1  # at most one step apart
        assert (y1 - y_ref).abs().max() < 1e-5


@pytest.mark.parametrize("name", ["dopri5", "rk4", "euler"])
def test_the_reduced_adjoint_state_gives_the_full_states_gradients(name):
    from toflow.regularizers import JacobianFrobenius, KineticEnergy

    settings = {"dopri5": {"atol": 1e-10, "rtol": 1e-10}, "rk4": {"step_size": 0.02}, "euler": {"step_size": 0.01}}
    base = SOLVERS[name]
    full = type("Full", (base,), {"reduced_adjoint": False})
    x = X.clone()
    got = {}
    for kind, cls in (("reduced", base), ("full", full)):
        flow = tiny_cnf((8, 8), cls(sensitivity="adjoint", **settings[name]), seed=3,
                        regularizers=[KineticEnergy(0.7), JacobianFrobenius(0.3)])
        x_ = x.clone().requires_grad_(True)
        loss = objective(flow, x_)[0]
        loss.backward()
        got[kind] = (torch.cat([p.grad.flatten() for p in flow.field.parameters()]), x_.grad.clone(),
                     float(flow.end_time.T.grad), flow.nfe["backward"], flow)
    for a, b in zip(got["reduced"][:3], got["full"][:3]):
        assert torch.allclose(torch.as_tensor(a), torch.as_tensor(b), rtol=1e-7, atol=1e-10)
    flow = got["reduced"][4]
    weight = flow.field.layers[1].layer.weight

    def at(h):
        with torch.no_grad():
            weight[2, 3] += h
            value = float(objective(flow, x)[0])
            weight[2, 3] -= h
        return value

    fd = central_difference(at)
    assert abs(float(weight.grad[2, 3]) - fd) <= (1e-6 if name == "dopri5" else 1e-3) * max(1.0, abs(fd))
    if name == "dopri5":
        assert got["reduced"][3] <= got["full"][3]  # the log-density's reconstruction no longer sets the steps


def test_auto_sensitivity_picks_by_its_rule():
    from toflow.solvers.auto import Footprint, choose

    mib = 2**20
    footprint = Footprint(evaluations=100, bytes_per_evaluation={(8, 3): 1 * mib}, state_bytes=mib // 10)
    # autograd holds 100 evaluations' graphs (100 MiB); ACA 100 states and one step's graph (10 + 6 MiB)
    assert choose(footprint, (8, 3), 200) == "autograd"
    assert choose(footprint, (8, 3), 50) == "aca"
    assert choose(footprint, (8, 3), 10) == "adjoint"
    assert choose(footprint, (8, 3), 50, ("autograd", "adjoint")) == "adjoint"  # a fixed grid has no ACA
    assert choose(Footprint(), (8, 3), 10**6) == "adjoint"  # a block's first solve: E not known yet
    assert choose(footprint, (16, 3), 10**6) == "adjoint"  # b not measured for this shape


@pytest.mark.parametrize("budget,expected", [(1e-3, "adjoint"), (1e4, "autograd"), (0.15, "aca")])
def test_auto_sensitivity_gives_the_exact_gradient_of_its_choice(budget, expected):
    from toflow.solvers.auto import footprint_of

    x = X.clone()
    grads = {}
    for sensitivity, settings in (("auto", {"memory_budget_mb": budget}), (expected, {})):
        solver = (ACA(atol=1e-8, rtol=1e-8) if sensitivity == "aca"  # ACA is a solver of its own
                  else Dopri5(atol=1e-8, rtol=1e-8, sensitivity=sensitivity, **settings))
        flow = tiny_cnf((8, 8), solver, seed=3)
        for _ in range(2):  # the first solve measures, the second chooses
            flow.zero_grad()
            loss_fn(flow, x).backward()
        grads[sensitivity] = torch.cat([p.grad.flatten() for p in flow.field.parameters()])
        if sensitivity == "auto":
            footprint = footprint_of(flow.ode.vf)
            assert footprint.sensitivity == expected and footprint.evaluations > 0
            assert 0 < footprint.bytes_per_evaluation[(len(x), 3)] < 2**20
    assert torch.allclose(grads["auto"], grads[expected], rtol=1e-12, atol=1e-14)


def test_auto_sensitivity_learns_from_training_solves_only():
    from toflow.solvers.auto import footprint_of

    flow = tiny_cnf((8, 8), Dopri5(atol=1e-5, rtol=1e-5, test_atol=1e-9, test_rtol=1e-9, sensitivity="auto"), seed=3)
    loss_fn(flow, X.clone()).backward()
    footprint = footprint_of(flow.ode.vf)
    trained = (footprint.evaluations, footprint.state_bytes, footprint.sensitivity)
    flow.eval()
    with torch.no_grad():
        flow.log_prob(torch.randn(100, 2, dtype=torch.float64))  # a bigger batch at far tighter tolerances
    x = torch.randn(100, 2, dtype=torch.float64, requires_grad=True)
    flow.log_prob(x).sum().backward()  # an evaluation that asks for a gradient (a score)
    assert (footprint.evaluations, footprint.state_bytes, footprint.sensitivity) == trained
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_mixed_norm_gives_each_integral_and_each_sample_the_whole_tolerance():
    y = torch.zeros(4, 3, dtype=torch.float64)
    error = torch.zeros_like(y)
    error[:, 2] = 1e-6  # the log-density column, as far off as the tolerance allows
    assert Tolerance(1e-6, 0, controlled=2, integrals=True).ratio(error, y, y) == pytest.approx(1.0)
    assert Tolerance(1e-6, 0, controlled=2).ratio(error, y, y) == 0.0  # the seminorm leaves it out
    assert Tolerance(1e-6, 0).ratio(error, y, y) == pytest.approx(3 ** -0.5)  # one RMS dilutes it
    error = torch.zeros_like(y)
    error[0, :2] = 1e-6  # one sample's z, the others exact
    assert Tolerance(1e-6, 0, controlled=2).ratio(error, y, y) == pytest.approx(0.5)  # averaged away
    assert Tolerance(1e-6, 0, controlled=2, per_sample=True).ratio(error, y, y) == pytest.approx(1.0)


def test_a_step_within_5_percent_of_the_end_reaches_it():
    # without the stretch, a step landing just short of t1 leaves a sliver that costs a whole step more
    def last_two_steps(t1, stretch):
        steps = []
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("toflow.solvers.integrators.STRETCH", stretch)
            AdaptiveDopri5().integrate(linear, Y0, 0.0, t1, Tolerance(1e-6, 1e-6), 10**5,
                                       record=lambda t, h, y, steps=steps: steps.append(h))
        return steps[-2:], len(steps)

    ends = torch.linspace(0.5, 1.5, 101, dtype=torch.float64).tolist()
    stretched = [last_two_steps(t1, 1.05) for t1 in ends]
    assert all(last >= 0.05 * before for (before, last), _ in stretched)
    exact_landing = [last_two_steps(t1, 1.0) for t1 in ends]
    assert any(last < 0.05 * before for (before, last), _ in exact_landing)  # the slivers it avoids
    assert sum(n for _, n in stretched) < sum(n for _, n in exact_landing)


@pytest.mark.parametrize("solver", [RK4(step_size=0.1), MALI(), Dopri5()], ids=["rk4", "mali", "dopri5"])
def test_no_way_back_at_all_is_the_identity(solver):  # animate's last frame: fraction 0
    flow = tiny_cnf((8,), solver, seed=0)
    z = torch.randn(5, 2, dtype=torch.float64)
    assert torch.equal(flow.inverse(z, fraction=0.0), z)
    assert flow.nfe["forward"] == 0
