"""Guides for SVI: the point guide (MAP), mean-field Normal (BBB) and the dropout guide (MCD).

Every guide here offers ``sample_params(draws)``: weight draws with a leading
draw dimension, from which the INR renders all images in one batched pass.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import Predictive
from pyro.infer.autoguide import AutoDelta, AutoNormal, init_to_value
from torch.distributions import constraints

from ..errors import InputError
from ..model import CTModel


class DropoutGuide:
    """Monte Carlo dropout as a variational family (Gal and Ghahramani).

    Every weight is ``M diag(z)``: learned means ``M`` times a Bernoulli(1 - p) mask
    ``z`` over the layer's inputs, for every layer whose input is a hidden layer.
    One mask per draw serves every pixel, so a draw is one function. Masks are not
    rescaled by 1 / (1 - p); instead the means start at init / (1 - p). Biases (and
    sigma, when inferred) are point estimates. The guide's density is taken as
    constant, so the ELBO is the expected log-likelihood plus the expected log prior
    of the masked weights: the L2 penalty on kept weights comes from the prior.
    """

    def __init__(self, model: CTModel, p: float, init: dict[str, torch.Tensor]):
        if not 0 <= p < 1:
            raise InputError(f"dropout probability must be in [0, 1), got {p}")
        self.model = model
        self.p = float(p)
        self.shapes = model.inr.param_shapes()
        self.masked = {name for name in self.shapes
                       if name.endswith(".weight") and not name.startswith("layer0.")}
        self.init = {name: value / (1 - self.p) if name in self.masked else value
                     for name, value in init.items()}

    def means(self) -> dict[str, torch.Tensor]:
        params = {name: pyro.param(f"dropout.{name}", self.init[name]) for name in self.shapes}
        if self.model.infer_sigma:
            start = torch.tensor(self.model.sigma, device=self.model.operator.device)
            params["sigma"] = pyro.param("dropout.sigma", start, constraint=constraints.positive)
        return params

    def sample_params(self, draws: int | None = None) -> dict[str, torch.Tensor]:
        """Masked weights; with ``draws`` a leading dimension of that many masks."""
        lead = () if draws is None else (draws,)
        out = {}
        for name, mean in self.means().items():
            if name in self.masked:
                keep = torch.full((*lead, mean.shape[-1]), 1 - self.p, device=mean.device)
                out[name] = mean * torch.bernoulli(keep).unsqueeze(-2)
            else:
                out[name] = mean.expand(*lead, *mean.shape)
        return out

    def __call__(self):
        for name, value in self.sample_params().items():
            pyro.sample(name, dist.Delta(value, event_dim=value.dim()))


def make_guide(method: str, model: CTModel, init: dict[str, torch.Tensor], *,
               dropout: float = 0.1, init_scale: float = 1e-3):
    """The guide of ``method`` ("map", "bbb" or "mcd") starting from weights ``init``."""
    if method == "mcd":
        return DropoutGuide(model, dropout, init)
    init_loc = init_to_value(values=init)
    if method == "map":
        return AutoDelta(model, init_loc_fn=init_loc)
    return AutoNormal(model, init_loc_fn=init_loc, init_scale=init_scale)


@torch.no_grad()
def sample_params(guide, draws: int) -> dict[str, torch.Tensor]:
    """``draws`` weight draws from a trained guide (a point guide gives one draw)."""
    if isinstance(guide, DropoutGuide):
        return guide.sample_params(draws)
    if isinstance(guide, AutoDelta):
        return {name: value.unsqueeze(0) for name, value in guide.median().items()}
    samples = Predictive(guide, num_samples=draws, parallel=True)()
    return {name: value for name, value in samples.items() if name != "image"}
