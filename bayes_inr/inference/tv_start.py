"""Start a fit at the TV reconstruction of its sinogram (``init = "tv"``).

The TV image is the solution of ``||A x - p||^2 / 2 + w TV(x)`` over the box [0, 1]
(:func:`~bayes_inr.inference.baselines.tv.tv_solve`) with ``w = lambda sigma^2``, where
``lambda`` is the model's TV factor and ``sigma`` its likelihood's noise level: the weight
at which the model's own data and TV terms balance, so the start is the mode of the model's
posterior without its weight prior (exactly so for a pixel grid with isotropic TV, the
Bayesian TV of :class:`~bayes_inr.inference.methods.BTV`).

A pixel grid starts at those pixel values. A network is first fitted to the TV image by
least squares on random batches of pixels (:func:`fit_to_image`, Adam), so that its
training on the sinogram starts from TV's image instead of from the network's initial
weights: a converged TV image beats what 1500 steps of training from scratch reach on real
CT (``docs/results.md``).
"""

from __future__ import annotations

import numpy as np
import torch

from ..core.errors import InputError
from ..model.ctmodel import CTModel
from ..model.gop import PixelGrid
from ..model.inr import INR
from .baselines.classical import reconstruct

TV_ITERATIONS = 2000
"""Iterations of the TV solve that starts a network (a pixel grid's MCMC start takes its
config's ``steps``)."""

FIT_STEPS = 500
"""Adam steps of :func:`fit_to_image` for a network's start."""

FIT_BATCH = 4096
"""Pixels drawn at random for each step of :func:`fit_to_image` (a quarter of a 128 x 128
image): ``analysis/bench_tv_start.py`` measures it against every pixel per step."""

FIT_LR = (1e-2, 1e-3)
"""Learning rate of :func:`fit_to_image`: the first and the last step's (exponential decay)."""


def tv_image(model: CTModel, iterations: int) -> np.ndarray:
    """The TV reconstruction (N, N) of ``model``'s sinogram at the weight
    ``w = lambda sigma^2`` of the model's TV factor ``lambda`` and noise level ``sigma``."""
    if not model.tv_weight:
        raise InputError("init tv starts at the TV solution of the model's TV factor: it "
                         "needs --tv-weight > 0")
    return reconstruct("tv", model.sinogram.cpu().numpy(), model.operator.geometry,
                       iterations=iterations, weight=model.tv_weight * model.sigma ** 2)


def fit_to_image(inr: INR, params: dict[str, torch.Tensor], image, steps: int = FIT_STEPS,
                 batch: int = FIT_BATCH, seed: int = 0) -> dict[str, torch.Tensor]:
    """Weights of ``inr`` fitted from ``params`` to render ``image`` (N, N).

    ``steps`` Adam steps on the mean squared error over ``batch`` pixels drawn with
    replacement (generator seeded by ``seed``; every pixel when ``batch`` is at least
    N * N), learning rate :data:`FIT_LR`. Gradients come from the network's hand-written
    backward pass (:meth:`~bayes_inr.model.inr.INR.render_vjp`), not autograd.
    """
    if batch < 1:
        raise InputError(f"fit_to_image needs a batch of at least 1 pixel, got {batch}")
    target = torch.as_tensor(np.asarray(image), dtype=inr.embedding.dtype,
                             device=inr.embedding.device).reshape(-1)
    if target.numel() != inr.embedding.shape[0]:
        raise InputError(f"fit_to_image: an image of {target.numel()} pixels for a network "
                         f"on {inr.embedding.shape[0]}")
    weights = {name: value.detach().clone() for name, value in params.items()}
    for value in weights.values():
        value.grad = torch.zeros_like(value)
    first, last = FIT_LR
    optim = torch.optim.Adam(weights.values(), lr=first)
    decay = torch.optim.lr_scheduler.ExponentialLR(optim, (last / first) ** (1 / max(steps, 1)))
    grads = {name: value.grad for name, value in weights.items()}
    gen = torch.Generator(device=target.device).manual_seed(seed)
    workspace: dict[str, torch.Tensor] = {}
    subsample = batch < target.numel()
    for _ in range(steps):
        if subsample:
            index = torch.randint(target.numel(), (batch,), generator=gen, device=target.device)
            rendered, vjp = inr.at_pixels(index).render_vjp(weights, workspace)
            residual = rendered - target[index]
        else:
            rendered, vjp = inr.render_vjp(weights, workspace)
            residual = rendered.reshape(-1) - target
        vjp(residual * (2 / residual.numel()), grads)
        optim.step()
        decay.step()
    return {name: value.detach() for name, value in weights.items()}


def tv_start(model: CTModel, iterations: int = TV_ITERATIONS, seed: int = 0
             ) -> dict[str, torch.Tensor]:
    """The weights that start ``model`` at its TV image (:func:`tv_image`, ``iterations``
    iterations): a pixel grid's values through its inverse link, or a network's weights
    from seed ``seed`` fitted to it (:func:`fit_to_image`)."""
    image = tv_image(model, iterations)
    if isinstance(model.inr, PixelGrid):
        return model.inr.params_of(image)
    return fit_to_image(model.inr, model.init_params(seed), image, seed=seed)
