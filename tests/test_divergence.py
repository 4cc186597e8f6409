"""The divergence by forward tangents against vector-Jacobian products: traces, Frobenius
norms and their gradients for the weights, z and t agree to float64 precision."""

import pytest
import torch
from helpers import tiny_cnf

from toflow.models import ConcatConvNet, ConcatSquashMLP, ExactTrace, HutchinsonTrace, LinearField
from toflow.models.cnf import CNFDynamics
from toflow.models.fields import ACTIVATIONS


def both_ways(field, trace, z, t, probe=None):
    """(trace, ||J||_F^2 estimate, f) by tangents and by vector-Jacobian products, with their
    gradients for the weights, z and t."""
    out = {}
    for path in ("tangents", "vjp"):
        z_ = z.clone().requires_grad_(True)
        t_ = t.clone().requires_grad_(True)
        if path == "tangents":
            tangents = trace.tangents(z_, probe)
            f, jv = field.forward_with_tangents(t_, z_, tangents)
            div, q = trace.from_tangents(jv, tangents, ("frobenius_sq",))
            frob = q["frobenius_sq"]
        else:
            f = field(t_, z_)
            div, q = trace(f, z_, probe, True, ("frobenius_sq", "jacobian") if isinstance(trace, ExactTrace) else ())
            if isinstance(trace, ExactTrace):
                frob = q["frobenius_sq"]
            else:  # ||J e||^2, the tangents' estimate, from the full Jacobian of each sample
                J = torch.stack([torch.autograd.grad(f.flatten(1)[:, i].sum(), z_, create_graph=True)[0].flatten(1)
                                 for i in range(f[0].numel())], 1)  # (B, D, D): rows
                frob = (J @ probe.flatten(1)[:, :, None]).pow(2).sum((1, 2))
        scalar = (div * torch.linspace(0.5, 1.5, len(div), dtype=div.dtype)).sum() + 0.3 * frob.sum() + f.pow(2).sum()
        grads = torch.autograd.grad(scalar, [*field.parameters(), z_, t_])
        out[path] = (div.detach(), frob.detach(), f.detach(), grads)
    return out


def assert_agree(out, tol=1e-10):
    a, b = out["tangents"], out["vjp"]
    for x, y in zip(a[:3], b[:3]):
        assert (x - y).abs().max() <= tol * max(1.0, float(y.abs().max()))
    for x, y in zip(a[3], b[3]):
        assert (x - y).abs().max() <= tol * max(1.0, float(y.abs().max()))


@pytest.mark.parametrize("dim", [2, 5, 32])
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_mlp_traces_and_their_gradients_agree(dim, activation):
    torch.manual_seed(dim)
    field = ConcatSquashMLP(dim, (16, 16), activation).double()
    with torch.no_grad():
        for p in field.parameters():
            p.mul_(2.0)  # some units past softplus's threshold of 20 and relu's kink
    z = torch.randn(12, dim, dtype=torch.float64) * 3
    t = torch.tensor(0.37, dtype=torch.float64)
    assert_agree(both_ways(field, ExactTrace(), z, t))
    hutchinson = HutchinsonTrace("gaussian")
    assert_agree(both_ways(field, hutchinson, z, t, hutchinson.sample_probe(z)))


def test_conv_field_traces_and_their_gradients_agree():
    torch.manual_seed(0)
    field = ConcatConvNet(2, (4, 4), "softplus").double()
    z = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    t = torch.tensor(0.8, dtype=torch.float64)
    assert_agree(both_ways(field, ExactTrace(), z, t))
    hutchinson = HutchinsonTrace("rademacher")
    assert_agree(both_ways(field, hutchinson, z, t, hutchinson.sample_probe(z)))


def test_the_path_is_chosen_and_said():
    class Plain(torch.nn.Module):  # a user's field: no tangents
        dim = 2

        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(2, 2)

        def forward(self, t, z):
            return torch.tanh(self.net(z))

    assert tiny_cnf((4,)).dynamics.path.startswith("forward tangents")
    assert tiny_cnf(field=Plain()).dynamics.path.startswith("vector-Jacobian products")
    assert tiny_cnf(field=LinearField(torch.eye(2)), trace="hutchinson").dynamics.tangents
    with pytest.raises(ValueError, match="model.divergence: tangents need a field with forward_with_tangents"):
        CNFDynamics(Plain(), ExactTrace(), (2,), divergence="tangents")


@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
def test_a_flow_gives_the_same_loss_and_gradients_either_way(trace):
    from toflow.regularizers import JacobianFrobenius, KineticEnergy
    from toflow.solvers import Dopri5

    x = torch.randn(16, 2, dtype=torch.float64) * 1.5
    results = {}
    for path in ("tangents", "vjp"):
        flow = tiny_cnf((16, 16), Dopri5(atol=1e-9, rtol=1e-9), seed=4, trace=trace,
                        regularizers=[KineticEnergy(0.1)] + ([JacobianFrobenius(0.1)] if trace == "exact" else []))
        flow.dynamics.tangents = path == "tangents"
        torch.manual_seed(5)  # the same probe
        out = flow.transform(x)
        loss = -(out.log_det - 0.5 * out.z.pow(2).sum(1)).mean() + sum(v.mean() for v in out.regularization.values())
        loss.backward()
        results[path] = (float(loss), torch.cat([p.grad.flatten() for p in flow.parameters() if p.grad is not None]),
                         flow.nfe)
    assert results["tangents"][0] == pytest.approx(results["vjp"][0], rel=1e-9)
    assert torch.allclose(results["tangents"][1], results["vjp"][1], rtol=1e-7, atol=1e-9)
    assert results["tangents"][2] == results["vjp"][2]


def compile_unavailable() -> str | None:
    """Why torch.compile cannot run on this machine (a compiler missing, say), or None."""
    try:
        torch.compile(lambda v: v * 2 + 1)(torch.ones(3))
    except Exception as err:  # whatever inductor raises where it cannot build
        return f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
    return None


def test_a_compiled_flow_gives_the_same_loss_and_gradients():
    import torch._dynamo

    from toflow.solvers import Dopri5

    reason = compile_unavailable()
    if reason:
        pytest.skip(f"torch.compile cannot run here ({reason})")

    x = torch.randn(64, 2) * 1.5
    results = {}
    for compiled in (False, True):
        flow = tiny_cnf((16, 16), Dopri5(atol=1e-5, rtol=1e-5), seed=4, dtype=torch.float32)
        flow.dynamics.compile = compiled
        loss = -flow.log_prob(x).mean()
        loss.backward()
        assert flow.dynamics.compile == compiled  # it compiled: no fall back to eager
        results[compiled] = (float(loss), torch.cat([p.grad.flatten() for p in flow.field.parameters()]))
    assert results[True][0] == pytest.approx(results[False][0], abs=1e-5, rel=1e-5)
    assert torch.allclose(results[True][1], results[False][1], atol=1e-5, rtol=1e-4)
    state = torch.cat([x, torch.zeros(64, 1)], 1)
    explained = torch._dynamo.explain(flow.dynamics.evaluate)(torch.tensor(0.3), state, None)
    assert explained.graph_break_count == 0 and explained.graph_count == 1
    from toflow.models import CNF
    from toflow.regularizers import JacobianFrobenius, KineticEnergy

    image = CNF(ConcatConvNet(2, (4,)), regularizers=[KineticEnergy(0.1), JacobianFrobenius(0.1)], trace="hutchinson",
                event_shape=(2, 4, 4))
    z = torch.randn(3, 2, 4, 4)
    state = torch.cat([z.flatten(1), torch.zeros(3, 3)], 1)
    explained = torch._dynamo.explain(image.dynamics.evaluate)(torch.tensor(0.3), state, image.trace.sample_probe(z))
    assert explained.graph_break_count == 0 and explained.graph_count == 1


def test_compile_with_vector_jacobian_products_falls_back_to_eager_and_says_so(capsys):
    from toflow.models import CNF

    torch.manual_seed(0)
    flow = CNF(ConcatSquashMLP(2, (8,)), divergence="vjp", compile=True).double()
    eager = CNF(ConcatSquashMLP(2, (8,)), divergence="vjp").double()
    eager.load_state_dict(flow.state_dict())
    x = torch.randn(8, 2, dtype=torch.float64)
    assert torch.equal(flow.log_prob(x), eager.log_prob(x))
    assert not flow.dynamics.compile
    assert capsys.readouterr().err == ("model.compile: the divergence is by vector-Jacobian products, whose double "
                                       "backward torch.compile cannot differentiate; evaluating eagerly\n")


def test_a_compile_that_fails_falls_back_to_eager_and_says_why(capsys, monkeypatch):
    def no_compiler(self):  # what torch.compile does on a machine without a C compiler, say
        def fails(*args):
            raise RuntimeError("no C compiler found\nmore detail")
        return fails

    monkeypatch.setattr(CNFDynamics, "_compiled", no_compiler)
    flow = tiny_cnf((8,), seed=0)
    x = torch.randn(8, 2, dtype=torch.float64)
    expected = flow.log_prob(x)
    flow.dynamics.compile = True
    assert torch.equal(flow.log_prob(x), expected) and not flow.dynamics.compile
    assert capsys.readouterr().err == ("model.compile: torch.compile failed here (RuntimeError: no C compiler found); "
                                       "evaluating eagerly\n")
