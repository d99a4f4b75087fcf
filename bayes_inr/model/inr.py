"""The implicit neural representation: random Fourier features and an MLP.

The network is written functionally: its weights are a dict of tensors, each with
any number of leading *draw* dimensions, so that one call renders the image of
every posterior draw at once (one batched matmul per layer, no Python loop over
draws). :class:`INR` holds the architecture and the fixed Fourier matrix; the
Pyro model (:mod:`bayes_inr.model.ctmodel`) samples the weights.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..core.errors import InputError, check_choice

ACTIVATIONS = ("relu", "silu", "sine", "softplus", "tanh")
HEADS = ("linear", "sigmoid", "clipped_sigmoid")
CLIP_MARGIN = 0.01
"""The clipped sigmoid head stretches the sigmoid to (-margin, 1 + margin), then clips."""


@dataclass(frozen=True)
class Architecture:
    """INR hyperparameters.

    Parameters
    ----------
    depth : int
        Number of hidden layers; 0 is a linear read-out of the Fourier features (the
        model is then Bayesian linear regression, with a closed-form posterior).
    width : int
        Units per hidden layer.
    omega0 : float
        Standard deviation of the Gaussian Fourier matrix (the paper's "RFF frequency").
    n_features : int
        Fourier frequencies m; the embedding has 2m inputs. 0 means ``width // 2``.
    activation : str
        One of ``relu``, ``silu``, ``sine`` (SIREN, ``sin(sine_w0 z)``), ``softplus``, ``tanh``.
    head : str
        ``linear``, ``sigmoid`` or ``clipped_sigmoid`` output; the last is
        ``clip((1 + 2 m) sigmoid(z) - m, 0, 1)`` with m = :data:`CLIP_MARGIN`, so an
        image can be exactly 0 (air) or 1, which a sigmoid never reaches.
    sine_w0 : float
        SIREN frequency factor, used by ``sine`` only. The Fourier features already
        carry the frequencies, so the default is 1 rather than SIREN's 30.
    """

    depth: int = 3
    width: int = 128
    omega0: float = 5.0
    n_features: int = 0
    activation: str = "relu"
    head: str = "linear"
    sine_w0: float = 1.0

    def __post_init__(self):
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("head", self.head, HEADS)
        if self.depth < 0 or self.width < 1 or self.n_features < 0:
            raise InputError(f"depth must be >= 0 and width >= 1 (got {self.depth}, {self.width})")
        if not self.omega0 > 0:
            raise InputError(f"omega0 must be positive, got {self.omega0}")

    @property
    def features(self) -> int:
        return self.n_features or max(self.width // 2, 1)

    def layer_sizes(self) -> list[tuple[int, int]]:
        """(fan_in, fan_out) of every linear layer, input to output."""
        dims = [2 * self.features] + [self.width] * self.depth + [1]
        return list(zip(dims[:-1], dims[1:], strict=True))


def head_inverse(head: str, value: float) -> float:
    """The pre-activation that ``head`` maps to ``value`` (clamped into the open range of
    a sigmoid head)."""
    if head == "linear":
        return float(value)
    if head == "clipped_sigmoid":
        value = (value + CLIP_MARGIN) / (1 + 2 * CLIP_MARGIN)
    value = min(max(value, 1e-3), 1 - 1e-3)
    return math.log(value / (1 - value))


class _MaskedReLU(torch.autograd.Function):
    """``relu(z) * mask`` for a 0/1 ``mask``, in one buffer: the backward needs only the
    output (it is positive exactly where the gradient passes), so neither the mask nor
    the pre-activation is kept, and one pass replaces autograd's two."""

    @staticmethod
    def forward(ctx, z, mask):
        out = z.clamp_min(0)
        out = out.mul_(mask) if torch.broadcast_shapes(out.shape, mask.shape) == out.shape \
            else out * mask
        ctx.save_for_backward(out)
        ctx.z_shape = z.shape
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return torch.ops.aten.threshold_backward(grad, out, 0).sum_to_size(ctx.z_shape), None


class INR:
    """An INR on the pixel grid of a geometry.

    Parameters
    ----------
    arch : Architecture
    coords : torch.Tensor
        Pixel-centre coordinates (N, N, 2) in [-1, 1].
    seed : int
        Seed of the Fourier matrix (fixed: neither learned nor given a prior).
    """

    def __init__(self, arch: Architecture, coords: torch.Tensor, seed: int = 0):
        self.arch = arch
        self.shape = tuple(coords.shape[:2])
        gen = torch.Generator().manual_seed(seed)
        self.fourier = arch.omega0 * torch.randn(2, arch.features, generator=gen,
                                                 dtype=torch.float64)
        proj = 2 * math.pi * coords.reshape(-1, 2).double() @ self.fourier
        self.embedding = torch.cat([proj.cos(), proj.sin()], dim=-1).to(coords.dtype)

    def to(self, device=None, dtype=None) -> INR:
        self.embedding = self.embedding.to(device=device, dtype=dtype)
        return self

    def at_pixels(self, index: torch.Tensor) -> INR:
        """This network on the pixels ``index`` (flat, row-major) only: it renders a
        vector of their values, and shares everything else with ``self``."""
        part = copy.copy(self)
        part.embedding = self.embedding[index]
        part.shape = (part.embedding.shape[0],)
        return part

    def param_shapes(self) -> dict[str, tuple[tuple[int, ...], int]]:
        """Site name -> (shape, fan_in), input layer first."""
        shapes = {}
        for i, (fan_in, fan_out) in enumerate(self.arch.layer_sizes()):
            shapes[f"layer{i}.weight"] = ((fan_out, fan_in), fan_in)
            shapes[f"layer{i}.bias"] = ((fan_out,), fan_in)
        return shapes

    def init_params(self, seed: int = 0, image_mean: float | None = None
                    ) -> dict[str, torch.Tensor]:
        """Standard initial weights: PyTorch's Linear default, or SIREN's for ``sine``.

        ``image_mean`` sets the output bias so that a zero pre-activation renders that
        value through the head. A sigmoid started at 0.5 against a mostly dark image takes
        huge first steps that can saturate it at 0 for good (all gradients vanish).
        """
        gen = torch.Generator().manual_seed(seed)
        params = {}
        for name, (shape, fan_in) in self.param_shapes().items():
            bound = 1 / math.sqrt(fan_in)
            if self.arch.activation == "sine" and name.endswith("weight"):
                first = name.startswith("layer0.")
                bound = 1 / fan_in if first else math.sqrt(6 / fan_in) / self.arch.sine_w0
            u = torch.rand(shape, generator=gen, dtype=self.embedding.dtype)
            params[name] = ((2 * u - 1) * bound).to(self.embedding.device)
        if image_mean is not None:
            params[f"layer{self.arch.depth}.bias"].fill_(head_inverse(self.arch.head, image_mean))
        return params

    def _activate(self, h: torch.Tensor) -> torch.Tensor:
        act = self.arch.activation
        if act == "sine":
            return torch.sin(self.arch.sine_w0 * h)
        return {"relu": torch.relu, "silu": torch.nn.functional.silu,
                "softplus": torch.nn.functional.softplus, "tanh": torch.tanh}[act](h)

    def _activate_vjp_(self, grad: torch.Tensor, z: torch.Tensor, h: torch.Tensor
                       ) -> torch.Tensor:
        """``grad`` on an activation's output ``h = act(z)`` taken back to ``z``, in place."""
        act = self.arch.activation
        if act == "relu":
            return torch.ops.aten.threshold_backward.grad_input(grad, h, 0, grad_input=grad)
        if act == "tanh":
            return grad.mul_(1 - h * h)
        if act == "sine":
            w0 = self.arch.sine_w0
            return grad.mul_(w0 * torch.cos(w0 * z))
        s = torch.sigmoid(z)
        if act == "softplus":
            return grad.mul_(s)
        return grad.mul_(s * (1 + z * (1 - s)))  # silu

    def render_vjp(self, params: dict[str, torch.Tensor],
                   workspace: dict[str, torch.Tensor] | None = None
                   ) -> tuple[torch.Tensor, Callable[[torch.Tensor, dict], None]]:
        """The image (N, N) of one weight set and its vector-Jacobian product.

        Backpropagation written by hand (no autograd graph): the returned function
        ``vjp(grad_image, out)`` writes the gradients on every weight into the tensors of
        ``out`` (one per weight, for example views of one flat vector). HMC spends all its
        time here. One weight set only: no draw dimensions, no dropout masks.

        ``workspace``, a dict owned by the caller, keeps the (pixels, width) activation
        and gradient matrices from one call to the next, so that a sampler calling this
        thousands of times allocates no large buffer. Without it the allocator can hand
        such buffers back to the operating system and fault fresh pages in at the next
        call: up to 800 page faults per evaluation in a bare leapfrog loop, and NUTS
        about 9 % slower (``analysis/bench_hmc.py`` posterior). Each call overwrites
        the previous call's buffers: its ``vjp`` must run before the next call.
        """
        workspace = {} if workspace is None else workspace
        rows, width = self.embedding.shape[0], self.arch.width

        def buffer(key: str) -> torch.Tensor:
            buf = workspace.get(key)
            if buf is None or buf.shape != (rows, width) or buf.dtype != self.embedding.dtype \
                    or buf.device != self.embedding.device:
                buf = workspace[key] = self.embedding.new_empty(rows, width)
            return buf

        relu = self.arch.activation == "relu"
        n_layers = self.arch.depth + 1
        inputs, pre = [self.embedding], []
        for i in range(n_layers - 1):
            z = torch.addmm(params[f"layer{i}.bias"], inputs[-1],
                            params[f"layer{i}.weight"].t(), out=buffer(f"z{i}"))
            pre.append(z)
            inputs.append(z.clamp_min_(0) if relu else self._activate(z))
        last = f"layer{n_layers - 1}"
        w_out = params[f"{last}.weight"][0]
        logits = torch.addmv(params[f"{last}.bias"], inputs[-1], w_out)
        image, head_grad = self._head(logits, with_slope=True)

        def vjp(grad_image: torch.Tensor, out: dict[str, torch.Tensor]) -> None:
            g = grad_image.reshape(-1)
            if head_grad is not None:
                g = g * head_grad
            torch.mv(inputs[-1].t(), g, out=out[f"{last}.weight"][0])
            torch.sum(g, 0, keepdim=True, out=out[f"{last}.bias"])
            if n_layers > 1:
                grad_h = torch.outer(g, w_out, out=buffer(f"grad{(n_layers - 2) % 2}"))
            for i in range(n_layers - 2, -1, -1):
                grad_z = self._activate_vjp_(grad_h, pre[i], inputs[i + 1])
                torch.mm(grad_z.t(), inputs[i], out=out[f"layer{i}.weight"])
                torch.sum(grad_z, 0, out=out[f"layer{i}.bias"])
                if i:  # layer i - 1's buffer: a product may not write into its input
                    grad_h = torch.mm(grad_z, params[f"layer{i}.weight"],
                                      out=buffer(f"grad{(i - 1) % 2}"))

        return image.reshape(self.shape), vjp

    def _head(self, out: torch.Tensor, with_slope: bool = False
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The head applied to the output units, and with ``with_slope`` its derivative
        (None for the identity)."""
        if self.arch.head == "linear":
            return out, None
        s = torch.sigmoid(out)
        slope = s * (1 - s) if with_slope else None
        if self.arch.head == "sigmoid":
            return s, slope
        stretched = (1 + 2 * CLIP_MARGIN) * s - CLIP_MARGIN
        if with_slope:
            slope = (1 + 2 * CLIP_MARGIN) * slope * ((stretched >= 0) & (stretched <= 1))
        return stretched.clamp(0, 1), slope

    def mask_shapes(self, scope: str) -> dict[str, tuple[int, int]]:
        """Dropout-mask name -> shape: one mask over the input units of every layer fed
        by a hidden layer; without a hidden layer (depth 0), over the Fourier features, the
        inputs of the one weight layer (Gal and Ghahramani's dropout before every weight
        layer, here before the only one). ``scope`` "image" shares it across pixels,
        "pixel" does not."""
        rows = 1 if scope == "image" else self.embedding.shape[0]
        if self.arch.depth == 0:
            return {"layer0.mask": (rows, self.embedding.shape[1])}
        return {f"layer{i}.mask": (rows, self.arch.width) for i in range(1, self.arch.depth + 1)}

    def render(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Images (*draws, N, N) for weights with leading draw dimensions.

        An entry ``layerI.mask`` in ``params`` (shape (*draws, 1 or pixels, width))
        multiplies the input units of layer I: dropout.
        """
        n_layers = self.arch.depth + 1
        h = self.embedding
        if "layer0.mask" in params:  # depth 0: dropped Fourier features
            h = h * params["layer0.mask"]
        for i in range(n_layers):
            weight, bias = params[f"layer{i}.weight"], params[f"layer{i}.bias"]
            if weight.dim() == 2 and h.dim() == 2:
                h = torch.addmm(bias, h, weight.t())
            else:
                h = torch.matmul(h, weight.transpose(-1, -2)) + bias.unsqueeze(-2)
            if i < n_layers - 1:
                mask = params.get(f"layer{i + 1}.mask")
                if self.arch.activation == "relu" and mask is not None:
                    h = _MaskedReLU.apply(h, mask)
                else:
                    h = self._activate(h) if mask is None else self._activate(h) * mask
        out, _ = self._head(h.squeeze(-1))
        return out.reshape(*out.shape[:-1], *self.shape)
