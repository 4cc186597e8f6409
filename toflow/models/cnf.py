"""The continuous normalizing flow block (paper eq. 2-4) and the contract every flow keeps.

The block integrates the augmented state s = [z, l, r_1 .. r_k] with

    d/dt [z, l, r_j] = [f(z, t), -Tr(df/dz), g_j(z, t)],   s(t0) = [x, 0, 0],

from t0 to its end time T, so that

    log p(x) = log N(z(T); 0, I) + int_{t0}^{T} Tr(df/dz) dt = log N(z(T); 0, I) - l(T),

and r_j(T) = int g_j dt are the spatial regularisers' integrals (eq. 5). The solver's
error norm sees z and, unless ``solver.control: state`` leaves them out in training, the
log-density and the integrals, each on its own; evaluation controls every sample's error.

Sampling integrates dz/dt = f from T back to t0, starting from z(T) ~ N(0, I).
"""

from __future__ import annotations

import math
import sys
import weakref
from typing import NamedTuple, Sequence

import torch
from torch import Tensor, nn

from ..regularizers.spatial import FieldEvaluation
from ..solvers import Dopri5, Solver, SolverError
from .divergence import make_trace
from .end_time import EndTime


def standard_normal_logprob(z: Tensor) -> Tensor:
    """log N(z; 0, I), summed over all but the batch dimension."""
    return -0.5 * (z.pow(2) + math.log(2 * math.pi)).flatten(1).sum(1)


class FlowOutput(NamedTuple):
    z: Tensor  # z(T)
    log_det: Tensor  # int Tr(df/dz) dt, one per sample
    regularization: dict  # name -> int g dt, one per sample


def add_regularization(total: dict, part: dict) -> dict:
    """``total`` with each of ``part``'s integrals added to the one of the same name."""
    for name, value in part.items():
        total[name] = total.get(name, 0) + value
    return total


class Flow(nn.Module):
    """What a flow is to the trainer, the plots and the user.

    A flow defines ``transform(x) -> FlowOutput``, ``inverse(z)``, ``blocks()`` (its CNF
    blocks, in order) and ``latent_shape`` (the shape of one z), and ``prepare(x)`` where a
    fixed map comes before the first block; ``forward``, ``log_prob``, ``sample``,
    ``end_times``, ``nfe``, ``reset_nfe`` and ``regularizers`` follow from them.
    """

    latent_shape: tuple

    def transform(self, x: Tensor) -> FlowOutput:
        r"""Data to noise, with the log-determinant and the regularisers' integrals (eq. 2-4).

        .. math:: z = z(T), \quad \log\det = \int_{t_0}^{T} \mathrm{Tr}\,\frac{\partial f}{\partial z}\,dt

        Args:
            x: A batch, shape ``(B, *event_shape)``.

        Returns:
            :class:`FlowOutput`: ``z``, shape ``(B, *latent_shape)``; ``log_det``, shape ``(B,)``;
            ``regularization``, each regulariser's integral by name, shape ``(B,)``.
        """
        raise NotImplementedError

    def inverse(self, z: Tensor, fraction: float = 1.0) -> Tensor:
        """Noise to data: each block integrates dz/dt = f from T back to t0.

        Args:
            z: Latents, shape ``(B, *latent_shape)``.
            fraction: The share of each block's way back, from T to T - fraction (T - t0) (the
                flow part-way, for pictures of it moving); 1 goes all the way.

        Returns:
            The data, shape ``(B, *event_shape)``.
        """
        raise NotImplementedError

    def blocks(self) -> list["CNF"]:
        raise NotImplementedError

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(z, log_det)`` of :meth:`transform`, without the regularisers' integrals.

        Args:
            x: A batch, shape ``(B, *event_shape)``.

        Returns:
            z, shape ``(B, *latent_shape)``, and the log-determinant, shape ``(B,)``.
        """
        z, log_det, _ = self.transform(x)
        return z, log_det

    def prepare(self, x: Tensor) -> Tensor:
        """x as the first CNF block sees it (x itself; its logit for an image flow)."""
        return x

    def log_prob(self, x: Tensor) -> Tensor:
        r"""The log-density of each sample, in nats (eq. 4).

        .. math:: \log p(x) = \log \mathcal{N}(z(T); 0, I) + \int_{t_0}^{T} \mathrm{Tr}\,\partial_z f\,dt

        In evaluation mode (``flow.eval()``) the solve holds every sample's z and log-density to
        the evaluation tolerances.

        Args:
            x: A batch, shape ``(B, *event_shape)``.

        Returns:
            log p(x), shape ``(B,)``.
        """
        z, log_det = self(x)
        return standard_normal_logprob(z) + log_det

    def sample(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None,
               fraction: float = 1.0, batch_size: int | None = None) -> Tensor:
        """Samples: z ~ N(0, temperature^2 I) mapped back to data space by :meth:`inverse`.

        Args:
            n: How many.
            temperature: The noise's standard deviation (1: the model itself).
            generator: Where z is drawn from (default: torch's global stream).
            fraction: Part of the way back only (see :meth:`inverse`).
            batch_size: Map z back this many at a time (default: all at once), to bound the memory
                the solves hold; z is drawn at once either way.

        Returns:
            The samples, shape ``(n, *event_shape)``.
        """
        ref = self.end_times()[0].T
        z = temperature * torch.randn((n, *self.latent_shape), dtype=ref.dtype, device=ref.device, generator=generator)
        kwargs = {} if fraction == 1.0 else {"fraction": fraction}
        if batch_size is None or n <= batch_size:
            return self.inverse(z, **kwargs)
        return torch.cat([self.inverse(chunk, **kwargs) for chunk in z.split(batch_size)])

    def end_times(self) -> list[EndTime]:
        """The :class:`EndTime` of each block; ``.T`` is its parameter."""
        return [block.end_time for block in self.blocks()]

    @property
    def regularizers(self) -> tuple:
        """The spatial regularisers (every block has the same)."""
        return self.blocks()[0].dynamics.regularizers

    @property
    def nfe(self) -> dict:
        """Field evaluations since the last :meth:`reset_nfe`, forward and backward, over all blocks."""
        totals = {"forward": 0, "backward": 0}
        for block in self.blocks():
            for key, value in block.dynamics.nfe.items():
                totals[key] += value
        return totals

    def reset_nfe(self) -> None:
        for block in self.blocks():
            block.dynamics.nfe.update(forward=0, backward=0)


DIVERGENCE_PATHS = ("auto", "tangents", "vjp")
_COMPILED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # dynamics -> its compiled ``evaluate``


class CNFDynamics(nn.Module):
    """F(t, s) for s = [z, l, r..]: returns [f(z, t), -Tr(df/dz), g_j(z, t)..], flattened per sample.

    The divergence comes from forward tangents where the field carries them
    (``forward_with_tangents``) and the regularisers' Jacobian quantities are among those
    the trace gives that way (``divergence="auto"``, or ``"tangents"`` to insist), else from
    vector-Jacobian products (``"vjp"``); :attr:`path` says which. The trace estimator
    computes the quantities the regularisers ask for (``needs``) beside the divergence.
    ``compile``: evaluate through ``torch.compile`` (tangents only: the vector-Jacobian way
    needs a double backward, which compiled graphs do not support); where compilation
    fails, evaluation falls back to eager with one line on stderr.
    Counts its evaluations (``nfe``) by phase: forward, or backward once the gradient of the
    solve's output has arrived.
    """

    def __init__(self, field: nn.Module, trace, event_shape: Sequence[int], regularizers: Sequence = (),
                 divergence: str = "auto", compile: bool = False):
        super().__init__()
        self.field, self.trace = field, trace
        self.regularizers = tuple(regularizers)
        self.wants = tuple(sorted({need for r in self.regularizers for need in r.needs}))
        self.tangents = self._choose_path(divergence)
        self.compile = compile
        self.event_shape = tuple(event_shape)
        self.numel = math.prod(self.event_shape)
        self.probe: Tensor | None = None
        self.nfe = {"forward": 0, "backward": 0}
        self.phase = "forward"

    def _choose_path(self, divergence: str) -> bool:
        if divergence not in DIVERGENCE_PATHS:
            raise ValueError(f"model.divergence: '{divergence}' is not one of {', '.join(DIVERGENCE_PATHS)}")
        fits = {"tangents": hasattr(self.field, "forward_with_tangents")
                and all(need in self.trace.tangent_provides for need in self.wants),
                "vjp": all(need in self.trace.provides for need in self.wants)}
        if divergence == "auto":
            divergence = "tangents" if fits["tangents"] else "vjp"
        if not fits[divergence]:
            provides = self.trace.tangent_provides if divergence == "tangents" else self.trace.provides
            for r in self.regularizers:
                missing = [need for need in r.needs if need not in provides]
                if missing:
                    how = "forward tangents" if divergence == "tangents" else "vector-Jacobian products"
                    raise ValueError(f"regularizers.{r.name}: needs {', '.join(missing)}, which the {self.trace.name} "
                                     f"trace does not give by {how}")
            raise ValueError(f"model.divergence: tangents need a field with forward_with_tangents, not "
                             f"{type(self.field).__name__}")
        return divergence == "tangents"

    @property
    def path(self) -> str:
        path = "forward tangents (first order)" if self.tangents else "vector-Jacobian products (double backward)"
        return path + (", compiled" if self.compile and self.tangents else "")

    def begin(self, phase: str) -> None:
        """Count the following evaluations as ``phase`` (``forward`` or ``backward``)."""
        self.phase = phase

    def forward(self, t: Tensor, state: Tensor, args=None) -> Tensor:  # torchdyn's DEFunc passes ``args``
        self.nfe[self.phase] += 1
        if self.compile:
            if not self.tangents:
                self._eager("the divergence is by vector-Jacobian products, whose double backward torch.compile "
                            "cannot differentiate")
            else:
                try:
                    return self._compiled()(t, state, self.probe)
                except Exception as err:  # torch.compile raises many kinds where it cannot run
                    reason = (str(err).strip().splitlines() or [""])[0][:200]
                    self._eager(f"torch.compile failed here ({type(err).__name__}: {reason})")
        return self.evaluate(t, state, self.probe)

    def _eager(self, why: str) -> None:
        self.compile = False
        print(f"model.compile: {why}; evaluating eagerly", file=sys.stderr)

    def _compiled(self):
        if self not in _COMPILED:
            # the blocks share one code object, whose variants (shape, grad mode) count against one
            # limit: 8 per compiled block instead of 8 in all
            config = torch._dynamo.config
            config.recompile_limit = max(config.recompile_limit, 8 * (len(_COMPILED) + 1))
            _COMPILED[self] = torch.compile(self.evaluate)
        return _COMPILED[self]

    def evaluate(self, t: Tensor, state: Tensor, probe: Tensor | None) -> Tensor:
        """F(t, s) with the Hutchinson ``probe`` of this solve (None for the exact trace)."""
        z = state[:, : self.numel].reshape(-1, *self.event_shape)
        if self.tangents:
            tangents = self.trace.tangents(z, probe)
            dz, jv = self.field.forward_with_tangents(t, z, tangents)
            divergence, jacobian = self.trace.from_tangents(jv, tangents, self.wants)
            return torch.cat(self._columns(t, z, dz, divergence, jacobian, probe), 1)
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            if not (create_graph and z.requires_grad):
                z = z.detach().requires_grad_(True)
            dz = self.field(t, z)
            divergence, jacobian = self.trace(dz, z, probe, create_graph, self.wants)
            out = torch.cat(self._columns(t, z, dz, divergence, jacobian, probe), 1)
        return out if create_graph else out.detach()

    def _columns(self, t: Tensor, z: Tensor, dz: Tensor, divergence: Tensor, jacobian: dict, probe) -> list:
        columns = [dz.flatten(1), -divergence[:, None]]
        if self.regularizers:
            ev = FieldEvaluation(t, z, dz, jacobian, probe)
            columns += [r.integrand(ev)[:, None] for r in self.regularizers]
        return columns


class CNF(Flow):
    """One CNF block: a vector field integrated from t0 to its end time T (eq. 2-4).

    ``forward(x)`` returns ``(z, log_det)`` with ``log_det = int Tr(df/dz) dt`` (so
    ``log p(x) = log N(z) + log_det``); ``log_prob``, ``sample`` and ``inverse`` follow.

    Args:
        field: The vector field f(t, z), a module; ``field.dim`` gives the event shape of a 1-D one.
        end_time: Its :class:`EndTime` (default: fixed, t0 = 0, T = 0.5).
        solver: A :class:`~toflow.solvers.Solver` (default: dopri5 at 1e-5).
        regularizers: Spatial regularisers, whose integrals ride in the state.
        trace: ``exact`` (one tangent or vector-Jacobian product per dimension), ``hutchinson``
            (one, with a ``probe`` fixed within a solve), ``auto`` (exact up to dimension 8), or
            an estimator.
        probe: Hutchinson's probe distribution, a name in :data:`~toflow.models.PROBES`.
        event_shape: The shape of one sample (default ``(field.dim,)``).
        name: How errors name the block.
        divergence: How the trace is taken (see :class:`CNFDynamics`).
        compile: Evaluate the dynamics through ``torch.compile`` (see :class:`CNFDynamics`).

    Example:
        >>> flow = CNF(ConcatSquashMLP(2, (64, 64)), EndTime(0.0, 0.5, "toflow"))
        >>> flow.log_prob(torch.randn(8, 2)).shape
        torch.Size([8])
    """

    def __init__(self, field: nn.Module, end_time: EndTime | None = None, solver: Solver | None = None,
                 regularizers: Sequence = (), trace: str = "auto", probe: str | None = None,
                 event_shape: Sequence[int] | None = None, name: str = "CNF block", divergence: str = "auto",
                 compile: bool = False):
        super().__init__()
        self.name = name
        event_shape = tuple(event_shape) if event_shape is not None else (field.dim,)
        self.end_time = end_time if end_time is not None else EndTime(mode="fixed")
        self.solver = solver if solver is not None else Dopri5()
        self.trace = make_trace(trace, math.prod(event_shape), probe) if isinstance(trace, str) else trace
        self.dynamics = CNFDynamics(field, self.trace, event_shape, regularizers, divergence, compile)
        self.event_shape = self.latent_shape = event_shape

    @property
    def ode(self):
        """The block's torchdyn ``NeuralODE`` shell, running its solver
        (:class:`~toflow.solvers.FlowODE`), made at its first use and kept out of the module tree
        (it holds :attr:`dynamics`, whose parameters are the block's): torchdyn's model layer
        imports Lightning, which building a flow to check a config need not load."""
        shell = self.__dict__.get("_ode")
        if shell is None:
            shell = self.__dict__["_ode"] = self.solver.build(self.dynamics)
        if shell.training != self.training:  # outside the tree, it follows the block's mode here
            shell.train(self.training)
        return shell

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for key in [key for key in state_dict if key.startswith(prefix + "ode.")]:
            del state_dict[key]  # the shell's copy of ``dynamics``, in checkpoints that kept it in the tree
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def field(self) -> nn.Module:
        return self.dynamics.field

    def use_solver(self, solver: Solver) -> None:
        """Integrate with ``solver`` from now on (e.g. tighter tolerances for a check)."""
        self.solver = solver
        if "_ode" in self.__dict__:
            self.ode.solver = solver

    def blocks(self) -> list["CNF"]:
        return [self]

    # ---------------------------------------------------------------- density
    def transform(self, x: Tensor) -> FlowOutput:
        """x -> z(T), int_{t0}^{T} Tr(df/dz) dt and the regularisers' integrals."""
        batch = x.shape[0]
        state = torch.cat([x.reshape(batch, -1), x.new_zeros(batch, 1 + len(self.regularizers))], 1)
        if self.trace.needs_probe:
            self.dynamics.probe = self.trace.sample_probe(x)
        t_span = self.end_time.t_span().to(x.dtype)
        self.dynamics.begin("forward")
        try:
            end = self.ode.end_state(state, t_span, self.end_time.new_record())
        except SolverError as err:
            raise type(err)(f"{self.name} (T={float(t_span[-1]):.4g}): {err}") from None
        if end.requires_grad:
            end.register_hook(self._count_backward)
        n = self.dynamics.numel
        z = end[:, :n].reshape(batch, *self.event_shape)
        regularization = {r.name: end[:, n + 1 + j] for j, r in enumerate(self.regularizers)}
        return FlowOutput(z, -end[:, n], regularization)

    def _count_backward(self, grad: Tensor) -> None:
        self.dynamics.begin("backward")

    # ---------------------------------------------------------------- sampling
    def inverse(self, z: Tensor, fraction: float = 1.0) -> Tensor:
        """z(T) -> x = z(t0), integrating dz/dt = f backward in time (to T - fraction (T - t0))."""
        t_span = self.end_time.t_span(differentiable=False).to(z.dtype).flip(0)
        if fraction != 1.0:
            t_span = torch.stack([t_span[0], t_span[0] + fraction * (t_span[1] - t_span[0])])
        shape = z.shape

        def field(t: Tensor, flat: Tensor) -> Tensor:
            self.dynamics.nfe["forward"] += 1
            return self.field(t, flat.reshape(shape)).reshape(shape[0], -1)

        return self.ode.integrate(field, z.reshape(shape[0], -1), t_span).reshape(shape)

    # ---------------------------------------------------------------- end time
    def dloss_dT(self) -> Tensor:
        """dL/dT of the last training solve, as the end time takes it (``EndTime.dloss_dT``).

        With ``grad="after_step"``: at z(T) with the current weights (eq. 12-13),
        a(T) . v(T) from the block's :attr:`EndTime.record`.

        For the log-likelihood a(T) = [-grad log N(z(T)), 1] / B, and with v(T) = F(s(T), T)
        the sum reproduces -E[grad log N(z(T)) . f(z(T), T)] - E[Tr J(T)]. One field
        evaluation for an adaptive solver (a fixed grid's takes one solve), counted as forward NFE.
        """
        self.dynamics.begin("forward")
        return self.end_time.dloss_dT()
