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

from ..core.errors import InputError
from ..model.ctmodel import CTModel, apply_dropout


class DropoutGuide:
    """Monte Carlo dropout as a variational family (Gal and Ghahramani).

    Learned means M and Bernoulli(1 - p) unit masks z over the inputs of every layer fed
    by a hidden layer (depth 0: over the Fourier features), with inverted dropout (the
    layer's weight is M / (1 - p) on the kept inputs, so M is the network's weight without
    dropout). Biases, and sigma when
    inferred, are point estimates.

    - ``image`` scope (one draw = one function): the weight site's value is
      M diag(z) / (1 - p) and the guide's density is taken as constant, so the ELBO is
      the expected log-likelihood plus the expected log prior of the masked weights:
      Gal and Ghahramani's L2 on the kept weights comes from the prior.
    - ``pixel`` scope: every pixel has its own masks, which cannot be folded into one
      weight draw; they are sample sites of the model
      (:meth:`~bayes_inr.model.ctmodel.CTModel.mask_sites`) drawn here from that same
      distribution (zero KL), and the prior acts on M.
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

    def _draw(self, lead: tuple[int, ...], sample, sites: dict) -> dict[str, torch.Tensor]:
        """Means with leading dimensions ``lead``, with dropout by ``sample(name, dist)``
        masks, except the masks in ``sites``: those are drawn but left to the model."""
        out = {name: mean.expand(torch.Size(lead) + mean.shape)  # a scalar sigma too
               for name, mean in self.means().items()}
        for name, d in self.model.unit_masks().items():
            mask = sample(name, d)
            if name not in sites:
                apply_dropout(out, name, mask, d.keep, self.model.dropout_scope)
        return out

    def sample_params(self, draws: int) -> dict[str, torch.Tensor]:
        """``draws`` parameter draws for rendering: a leading dimension of that many masks."""
        return self._draw((draws,), lambda name, d: d.sample((draws,)), sites={})

    def __call__(self):
        # per-pixel masks are model sites (the model applies them to the means); per-image
        # masks are folded into the weight sites' values
        sites = self.model.mask_sites()
        params = self._draw((), lambda name, d: pyro.sample(name, d) if name in sites
                            else d.sample(), sites)
        for name, value in params.items():
            pyro.sample(name, dist.Delta(value, event_dim=value.dim()))


def point_guide(model: CTModel, init: dict[str, torch.Tensor]) -> AutoDelta:
    """The point guide of MAP (Pyro's ``AutoDelta``), starting from weights ``init``."""
    return AutoDelta(model, init_loc_fn=init_to_value(values=init))


def mean_field_guide(model: CTModel, init: dict[str, torch.Tensor],
                     init_scale: float = 1e-3) -> AutoNormal:
    """The mean-field Normal guide of BBB (Pyro's ``AutoNormal``): means from ``init``,
    initial standard deviations ``init_scale``."""
    return AutoNormal(model, init_loc_fn=init_to_value(values=init), init_scale=init_scale)


@torch.no_grad()
def sample_params(guide, draws: int) -> dict[str, torch.Tensor]:
    """``draws`` weight draws from a trained guide, with a leading draw dimension.

    A guide with its own ``sample_params(draws)`` (:class:`DropoutGuide`) gives those; a
    point guide gives one draw (its median); any other Pyro guide is sampled with
    :class:`~pyro.infer.Predictive`.
    """
    if hasattr(guide, "sample_params"):
        return guide.sample_params(draws)
    if isinstance(guide, AutoDelta):
        return {name: value.unsqueeze(0) for name, value in guide.median().items()}
    samples = Predictive(guide, num_samples=draws, parallel=True)()
    return {name: value for name, value in samples.items() if name != "image"}
