"""The Pyro model shared by every inference method.

    w     ~ prior                        (one sample site per weight and bias)
    sigma  = fixed, or ~ LogNormal(log sigma0, 1)
    f      = INR_w on the pixel grid     (deterministic site ``image``)
    p     ~ Normal(A f, sigma)           (observed sinogram, one event)
    + optional anisotropic total variation, factor -lambda * TV(f)

The latent sites (weights and sigma) sit under ``poutine.scale(latent_scale)``:
Bayes-by-backprop sets it to its KL factor xi, so that prior and guide terms are
scaled together and the likelihood never is.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine

from .errors import InputError
from .inr import INR
from .priors import Prior, as_prior, site_distribution
from .radon import RadonOperator


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Anisotropic TV, sum of |horizontal| and |vertical| differences, per leading draw."""
    dy = (image[..., 1:, :] - image[..., :-1, :]).abs().sum(dim=(-2, -1))
    dx = (image[..., :, 1:] - image[..., :, :-1]).abs().sum(dim=(-2, -1))
    return dx + dy


class CTModel:
    """Bayesian INR for a measured sinogram.

    Parameters
    ----------
    inr : INR or PixelGrid
        The image representation on the reconstruction grid: the network, or the pixels
        themselves (:mod:`bayes_inr.gop`).
    operator : RadonOperator
        The forward projector ``A`` of the same geometry.
    sinogram : torch.Tensor
        Measured sinogram (V, D).
    prior : Prior or callable or str
        Prior over weights (see :mod:`bayes_inr.priors`).
    sigma : float
        Noise standard deviation; with ``infer_sigma`` the median of its LogNormal prior.
    infer_sigma : bool
        Treat sigma as a latent site.
    tv_weight : float
        Weight lambda of the total-variation factor (0: none).
    """

    def __init__(self, inr: INR, operator: RadonOperator, sinogram: torch.Tensor, prior,
                 sigma: float, infer_sigma: bool = False, tv_weight: float = 0.0):
        operator.geometry.check_sinogram(sinogram)
        if not sigma > 0:
            raise InputError(f"sigma must be positive, got {sigma}")
        self.inr = inr
        self.operator = operator
        self.sinogram = torch.as_tensor(sinogram, dtype=operator.dtype, device=operator.device)
        self.prior: Prior = as_prior(prior)
        self.sigma = float(sigma)
        self.infer_sigma = infer_sigma
        self.tv_weight = float(tv_weight)
        self.latent_scale = 1.0

    def weight_distributions(self) -> dict:
        """Site name -> prior distribution (an event of the site's shape)."""
        with torch.device(self.operator.device):
            return {name: site_distribution(self.prior, name, shape, fan_in)
                    for name, (shape, fan_in) in self.inr.param_shapes().items()}

    def __call__(self) -> torch.Tensor:
        with poutine.scale(scale=self.latent_scale):
            params = {name: pyro.sample(name, d) for name, d in self.weight_distributions().items()}
            sigma = self.sigma
            if self.infer_sigma:
                loc = torch.tensor(math.log(self.sigma), device=self.operator.device)
                sigma = pyro.sample("sigma", dist.LogNormal(loc, 1.0))
                sigma = sigma.unsqueeze(-1).unsqueeze(-1)
        image = pyro.deterministic("image", self.inr.render(params))
        if self.tv_weight:
            pyro.factor("tv", -self.tv_weight * total_variation(image))
        pyro.sample("sinogram", dist.Normal(self.operator(image), sigma).to_event(2),
                    obs=self.sinogram)
        return image
