"""The single-fit inference methods: MAP, BBB, MCD (SVI) and HMC, NUTS, Bayesian TV (MCMC).

Each class is one registered method (:mod:`bayes_inr.inference.method`): its name, a
one-line summary, its family's machinery (:class:`~bayes_inr.inference.single.SVIFit`,
:class:`~bayes_inr.inference.single.MCMCFit`), and only what is its own: the guide, the
KL factor, the kernel, the checks of its settings. The mixture of fits (DE-N) is
:class:`bayes_inr.inference.ensemble.Ensemble`. The contributor how-to
``docs/howto/add_inference.md`` adds a method here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..core.errors import InputError
from ..model.ctmodel import CTModel
from .config import FitConfig
from .guides import DropoutGuide, mean_field_guide, point_guide
from .single import MCMCFit, SVIFit


class MAP(SVIFit):
    """Maximum a posteriori: one point estimate of the weights."""

    name = "map"
    summary = "maximum a posteriori, one point estimate by Pyro's AutoDelta"

    def guide(self, model: CTModel, init: dict[str, torch.Tensor], config: FitConfig):
        return point_guide(model, init)


class BBB(SVIFit):
    """Bayes-by-backprop: a mean-field Normal guide; the ELBO's prior and guide terms are
    scaled by the KL factor ``config.kl_factor``, the likelihood never."""

    name = "bbb"
    summary = "Bayes-by-backprop, a mean-field Normal guide with a KL factor"

    def guide(self, model: CTModel, init: dict[str, torch.Tensor], config: FitConfig):
        return mean_field_guide(model, init, config.init_scale)

    def kl_factor(self, config: FitConfig) -> float:
        return config.kl_factor


class MCD(SVIFit):
    """Monte Carlo dropout: learned means and Bernoulli unit masks
    (:class:`~bayes_inr.inference.guides.DropoutGuide`), one mask per draw or per pixel."""

    name = "mcd"
    summary = "Monte Carlo dropout, one mask per draw or per pixel"
    dropout = True

    def check(self, config: FitConfig) -> None:
        if config.model != "inr":
            raise InputError("mcd drops hidden units of the network: it needs --model inr")

    def guide(self, model: CTModel, init: dict[str, torch.Tensor], config: FitConfig):
        return DropoutGuide(model, init)

    def shipped_names(self, overrides: Mapping[str, Any]) -> tuple[str, ...]:
        # one mask per draw has its own validated rates (models/mcd_image_V.toml)
        if overrides.get("dropout_scope") == "image":
            return ("mcd_image", self.name)
        return (self.name,)


class HMC(MCMCFit):
    """Hamiltonian Monte Carlo with a fixed number of leapfrog steps (or a fixed
    trajectory length) per transition."""

    name = "hmc"
    summary = "Hamiltonian Monte Carlo, Pyro's HMC kernel on the flat potential"
    kernel = "hmc"

    def check(self, config: FitConfig) -> None:
        if not (config.num_steps or config.trajectory_length):
            raise InputError("hmc needs num_steps > 0 or trajectory_length > 0")


class NUTS(MCMCFit):
    """The No-U-Turn sampler: HMC whose trajectories stop where they turn back."""

    name = "nuts"
    summary = "the No-U-Turn sampler, Pyro's NUTS kernel on the flat potential"
    kernel = "nuts"

    def shipped_names(self, overrides: Mapping[str, Any]) -> tuple[str, ...]:
        return ("nuts", "hmc")  # the validated HMC recipe, run with NUTS


class BTV(MCMCFit):
    """Bayesian TV: NUTS on the pixel grid under the TV baseline's own objective.

    The posterior is ``exp(-(||A x - p||^2 / 2 + w TV(x)) / sigma^2)`` on images ``x``
    (``--model gop``; ``--head sigmoid`` keeps them in the box [0, 1], with the weak
    ``--prior`` on the logits), with ``w = config.tv_weight`` in the units of the TV
    baseline (:mod:`~bayes_inr.inference.baselines.tv`) and its isotropic TV: the model's
    TV factor is ``w / sigma^2``, so that the posterior's mode is the TV reconstruction of
    weight ``w`` and ``sigma`` sets only the posterior's width (a temperature on noiseless
    data, the noise level on noisy data). ``--init tv`` starts the chains at that mode.
    """

    name = "btv"
    summary = "Bayesian TV, NUTS on the pixel grid under the TV objective (w, sigma)"
    kernel = "nuts"

    def check(self, config: FitConfig) -> None:
        if config.model != "gop" or not config.tv_weight > 0 or config.infer_sigma:
            raise InputError("btv samples the pixel grid under a TV prior: it needs --model "
                             "gop, --tv-weight > 0 and a fixed sigma (no --infer-sigma)")

    def tv_factor(self, config: FitConfig, sigma: float) -> tuple[float, str]:
        return config.tv_weight / sigma**2, "isotropic"
