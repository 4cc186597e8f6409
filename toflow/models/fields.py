"""Time-dependent vector fields f(z, t; theta) for the flow ODE (paper eq. 2).

toflow's fields also carry tangents forward beside their activations:
``forward_with_tangents(t, z, V)`` returns f(z, t) and the Jacobian-vector products J v
for a stack of tangents V (K, B, *shape), J = df/dz, so that the divergence comes out of
the forward pass (:mod:`toflow.models.divergence`) and every gradient through it is first
order. f is computed by the same operations as ``forward``.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..registry import Registry

ACTIVATIONS = Registry("model.activation")  # name -> nn.Module class
for _name, _activation in (("tanh", nn.Tanh), ("softplus", nn.Softplus), ("elu", nn.ELU), ("relu", nn.ReLU),
                           ("swish", nn.SiLU)):
    ACTIVATIONS.register(_activation, name=_name)

# d act / dx from the input x and the output y, as autograd's backward formulas take it
DERIVATIVES = {
    nn.Tanh: lambda x, y: 1 - y * y,
    nn.Softplus: lambda x, y: torch.where(x > 20, torch.ones_like(x), torch.sigmoid(x)),  # linear above 20
    nn.ELU: lambda x, y: torch.where(x > 0, torch.ones_like(x), y + 1),
    nn.ReLU: lambda x, y: (x > 0).to(x.dtype),
    nn.SiLU: lambda x, y: torch.sigmoid(x) * (1 + x * (1 - torch.sigmoid(x))),
}


def make_activation(name: str) -> nn.Module:
    """A new module of the registered activation ``name``."""
    return ACTIVATIONS[name]()


def layer_widths(io: int, hidden: Sequence[int]) -> list:
    """[io, *hidden, io], refusing an empty or non-positive ``hidden``."""
    if not hidden or any(h <= 0 for h in hidden):
        raise ValueError(f"model.hidden: must be a non-empty list of positive widths, got {list(hidden)}")
    return [io, *hidden, io]


class ConcatSquashLinear(nn.Module):
    """FFJORD's ConcatSquash layer: y = (W x + b) * sigmoid(g t + c) + h t.

    Time gates each output unit multiplicatively and shifts it additively.
    """

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.layer = nn.Linear(dim_in, dim_out)
        self.hyper_gate = nn.Linear(1, dim_out)
        self.hyper_bias = nn.Linear(1, dim_out, bias=False)

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        t = t.reshape(-1, 1).to(x)
        return self.layer(x) * torch.sigmoid(self.hyper_gate(t)) + self.hyper_bias(t)

    def forward_with_tangents(self, t: Tensor, x: Tensor, dx: Tensor) -> tuple[Tensor, Tensor]:
        """(y, dy) with dy = (W dx) * sigmoid(g t + c) for each tangent in the stack dx."""
        t = t.reshape(-1, 1).to(x)
        gate = torch.sigmoid(self.hyper_gate(t))
        return self.layer(x) * gate + self.hyper_bias(t), F.linear(dx, self.layer.weight) * gate


class _TimeLayerStack(nn.Module):
    """f(z, t) = L_K(t, act(... act(L_1(t, z)) ...)) for time-aware layers L_k."""

    layers: nn.ModuleList
    acts: nn.ModuleList

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        for layer, act in zip(self.layers[:-1], self.acts):
            z = act(layer(t, z))
        return self.layers[-1](t, z)

    def forward_with_tangents(self, t: Tensor, z: Tensor, dz: Tensor) -> tuple[Tensor, Tensor]:
        """f(z, t) and J v for each tangent v in the stack ``dz`` (K, B, *shape)."""
        for layer, act in zip(self.layers[:-1], self.acts):
            x, dx = layer.forward_with_tangents(t, z, dz)
            z = act(x)
            dz = DERIVATIVES[type(act)](x, z) * dx
        return self.layers[-1].forward_with_tangents(t, z, dz)


class ConcatSquashMLP(_TimeLayerStack):
    """f(z, t) = L_K(... act(L_1(z, t)) ..., t) with ConcatSquash layers L_k.

    FFJORD's toy architecture: ``hidden=(64, 64, 64)``, ``activation="tanh"``.
    """

    def __init__(self, dim: int, hidden: Sequence[int] = (64, 64, 64), activation: str = "tanh"):
        super().__init__()
        widths = layer_widths(dim, hidden)
        self.dim = dim
        self.layers = nn.ModuleList(ConcatSquashLinear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.acts = nn.ModuleList(make_activation(activation) for _ in hidden)


class LinearField(nn.Module):
    """f(z, t) = A z. Its flow is z(T) = exp(A (T - t0)) z(t0): the analytic reference."""

    def __init__(self, A: Tensor):
        super().__init__()
        self.A = nn.Parameter(A.clone())
        self.dim = A.shape[0]

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        return z @ self.A.T

    def forward_with_tangents(self, t: Tensor, z: Tensor, dz: Tensor) -> tuple[Tensor, Tensor]:
        return z @ self.A.T, dz @ self.A.T


class ConcatConv2d(nn.Module):
    """3x3 convolution of [x, t] with the time concatenated as one more input channel (FFJORD's ``concat``)."""

    def __init__(self, dim_in: int, dim_out: int, kernel: int = 3, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(dim_in + 1, dim_out, kernel, stride=1, padding=padding)

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        tt = t.to(x).reshape(-1, 1, 1, 1).expand(x.shape[0], 1, *x.shape[2:])
        return self.conv(torch.cat([tt, x], 1))

    def forward_with_tangents(self, t: Tensor, x: Tensor, dx: Tensor) -> tuple[Tensor, Tensor]:
        """(y, dy): the tangents see the convolution of x's channels, without time and bias."""
        c = self.conv
        dy = F.conv2d(dx.flatten(0, 1), c.weight[:, 1:], None, c.stride, c.padding, c.dilation, c.groups)
        return self.forward(t, x), dy.unflatten(0, dx.shape[:2])


class ConcatConvNet(_TimeLayerStack):
    """f(z, t) for images: ConcatConv2d layers, widths ``hidden`` (FFJORD: 64-64-64), stride 1,
    softplus between them; the output has the input's channels."""

    def __init__(self, channels: int, hidden: Sequence[int] = (64, 64, 64), activation: str = "softplus"):
        super().__init__()
        widths = layer_widths(channels, hidden)
        self.layers = nn.ModuleList(ConcatConv2d(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.acts = nn.ModuleList(make_activation(activation) for _ in hidden)
