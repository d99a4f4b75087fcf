"""Guides for SVI: the point guide (MAP), mean-field Normal (BBB) and the dropout guide (MCD).

:func:`sample_params` gives weight (and dropout-mask) draws with a leading draw
dimension, from which the INR renders all images in one batched pass.
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

    The weights are point estimates (learned means); the model's Bernoulli(1 - p)
    unit masks (:meth:`~bayes_inr.model.CTModel.mask_distributions`, inverted dropout)
    are drawn from their own prior, so their KL term is zero and the ELBO is the
    expected log-likelihood plus the log prior of the means (the L2 penalty of the
    dropout objective). Biases, and sigma when inferred, are point estimates too.
    """

    def __init__(self, model: CTModel, init: dict[str, torch.Tensor]):
        if not model.dropout:
            raise InputError("the dropout guide needs a model with dropout p > 0")
        self.model = model
        self.init = init

    def means(self) -> dict[str, torch.Tensor]:
        params = {name: pyro.param(f"dropout.{name}", value) for name, value in self.init.items()}
        if self.model.infer_sigma:
            start = torch.tensor(self.model.sigma, device=self.model.operator.device)
            params["sigma"] = pyro.param("dropout.sigma", start, constraint=constraints.positive)
        return params

    def sample_params(self, draws: int) -> dict[str, torch.Tensor]:
        """The means with a leading dimension of ``draws``, and as many scaled masks."""
        out = {name: mean.expand(draws, *mean.shape) for name, mean in self.means().items()}
        for name, d in self.model.mask_distributions().items():
            out[name] = d.sample((draws,)) / d.keep
        return out

    def __call__(self):
        for name, value in self.means().items():
            pyro.sample(name, dist.Delta(value, event_dim=value.dim()))
        for name, d in self.model.mask_distributions().items():
            pyro.sample(name, d)


def make_guide(method: str, model: CTModel, init: dict[str, torch.Tensor], *,
               init_scale: float = 1e-3):
    """The guide of ``method`` ("map", "bbb" or "mcd") starting from weights ``init``."""
    if method == "mcd":
        return DropoutGuide(model, init)
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
