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

A process keeps its last few starts (:data:`STARTS_KEPT`), keyed by everything a start
depends on, so the fits of one image that share a network and a seed (Table 1's BBB and
MCD, a sweep's trials in one worker) compute it once.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

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

STARTS_KEPT = 16
"""Starts :func:`tv_start` keeps in memory (least recently used first out): enough for a
worker to keep every image of a few sweep trials; a network's start is its weights (about
0.3 MB for width 128, depth 3)."""

_starts: OrderedDict[str, dict[str, torch.Tensor]] = OrderedDict()


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


def _start_key(model: CTModel, iterations: int, seed: int,
               params: dict[str, torch.Tensor] | None) -> str:
    """A digest of everything :func:`tv_start` computes from: the data, the TV weight, and
    a pixel grid's link or a network's architecture, embedding, initial weights ``params``
    (from ``seed``) and fit settings."""
    digest = hashlib.sha256()
    arrays = [model.sinogram]
    if params is None:
        settings = ("grid", model.inr.shape, model.inr.link, model.inr.dtype)
    else:
        arrays += [model.inr.embedding, *(params[name] for name in sorted(params))]
        settings = (model.inr.arch, FIT_STEPS, FIT_BATCH, FIT_LR, seed)
    for array in arrays:
        digest.update(f"{array.dtype}{tuple(array.shape)}{array.device}".encode())
        digest.update(array.detach().cpu().contiguous().numpy().tobytes())
    digest.update(repr((model.operator.geometry, model.tv_weight * model.sigma ** 2,
                        iterations, *settings)).encode())
    return digest.hexdigest()


def tv_start(model: CTModel, iterations: int = TV_ITERATIONS, seed: int = 0
             ) -> dict[str, torch.Tensor]:
    """The weights that start ``model`` at its TV image (:func:`tv_image`, ``iterations``
    iterations): a pixel grid's values through its inverse link, or a network's weights
    from seed ``seed`` fitted to it (:func:`fit_to_image`).

    A start computed earlier in the process from the same inputs is returned again (a
    copy), without solving or fitting.
    """
    grid = isinstance(model.inr, PixelGrid)
    params = None if grid else model.init_params(seed)
    key = _start_key(model, iterations, seed, params)
    if key not in _starts:
        image = tv_image(model, iterations)
        _starts[key] = (model.inr.params_of(image) if grid
                        else fit_to_image(model.inr, params, image, seed=seed))
        while len(_starts) > STARTS_KEPT:
            _starts.popitem(last=False)
    _starts.move_to_end(key)
    return {name: value.clone() for name, value in _starts[key].items()}
