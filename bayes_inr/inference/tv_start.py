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

That fit is not equally quick from every initial weights: from some seeds 500 steps leave
the network a few dB short of the TV image, still improving, and the training on the
sinogram from such a start ends in a poorer optimum (on Table 1's validation images, the
members more than 1 dB below their seeds' median started so; ``analysis/start_check.py``).
It shows in the data: the start's image explains the sinogram several times worse than the
TV image it was fitted to, the same check an ensemble makes between its members
(:mod:`bayes_inr.evaluation.misfit`). So a start records :attr:`Start.misfit_ratio`, its
data misfit over the TV image's, and with ``tries`` above 1 the network is fitted that many
times (try t of seed s draws its initial weights and pixel batches from seed
``s + t * START_SEED_STRIDE``) and the start of lowest misfit kept. No fixed bound on the
ratio tells a poor start alone: a good start scores 1.4-3.4 at 20 and 60 views but 3.9-12.7
at 5, where TV fits the few rays very closely.

A process keeps its last few starts (:data:`STARTS_KEPT`), keyed by everything a start
depends on, so the fits of one image that share a network and a seed (Table 1's BBB and
MCD, a sweep's trials in one worker) compute it once; and its last few TV images, so the
tries of a start, and other seeds on the same data, solve TV once.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..core.errors import InputError
from ..evaluation.misfit import data_misfit
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
"""Starts, and TV images, :func:`tv_start` keeps in memory (least recently used first out):
enough for a worker to keep every image of a few sweep trials; a network's start is its
weights (about 0.3 MB for width 128, depth 3)."""

START_SEED_STRIDE = 1_000_003
"""Try t of a start from seed s draws its initial weights and pixel batches from seed
``s + t * START_SEED_STRIDE``: far from the seeds ``s + k`` of an ensemble's other members."""

START_KEYS = ("start_misfit_ratio", "start_chosen")
"""The keys of a start in a run's configuration record (:meth:`Start.record`)."""


def recorded_start(stored: dict) -> dict:
    """The start a run recorded in its configuration ``stored`` (the keys of
    :data:`START_KEYS` it has): what a resumed run keeps of the start it does not redo."""
    return {key: stored[key] for key in START_KEYS if key in stored}


@dataclass(frozen=True)
class Start:
    """A fit's start at the TV image.

    Attributes
    ----------
    params : dict of str to Tensor
        The start's weights (a pixel grid's values).
    misfit_ratio : float
        The mean squared sinogram residual of the start's image over that of the TV image.
    chosen : int
        Which fit of the network to the TV image it is (0 for the first; a pixel grid: 0).
    """

    params: dict[str, torch.Tensor]
    misfit_ratio: float
    chosen: int

    def record(self) -> dict:
        """What a run records of its start (the keys :data:`START_KEYS`)."""
        return dict(zip(START_KEYS, (self.misfit_ratio, self.chosen), strict=True))


_starts: OrderedDict[str, Start] = OrderedDict()
_images: OrderedDict[str, np.ndarray] = OrderedDict()


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


def _digest(*parts) -> str:
    """A digest of tensors (dtype, shape, device and values) and other values (their repr)."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            digest.update(f"{part.dtype}{tuple(part.shape)}{part.device}".encode())
            digest.update(part.detach().cpu().contiguous().numpy().tobytes())
        else:
            digest.update(repr(part).encode())
    return digest.hexdigest()


def _image_key(model: CTModel, iterations: int) -> str:
    """A digest of everything :func:`tv_image` computes from: the data and the TV weight."""
    return _digest(model.sinogram, (model.operator.geometry, model.tv_weight * model.sigma ** 2,
                                    iterations))


def _start_key(model: CTModel, iterations: int, seed: int,
               params: dict[str, torch.Tensor] | None) -> str:
    """A digest of everything :func:`tv_start` computes from: the TV image's inputs, and a
    pixel grid's link or a network's architecture, embedding, initial weights ``params``
    (from ``seed``) and fit settings."""
    image = _image_key(model, iterations)
    if params is None:
        return _digest(image, ("grid", model.inr.shape, model.inr.link, model.inr.dtype))
    return _digest(image, model.inr.embedding, *(params[name] for name in sorted(params)),
                   (model.inr.arch, FIT_STEPS, FIT_BATCH, FIT_LR, seed))


def _kept(cache: OrderedDict, key: str, make):
    """``cache[key]``, made by ``make()`` when absent; the least recently used entries
    beyond :data:`STARTS_KEPT` go."""
    if key not in cache:
        cache[key] = make()
        while len(cache) > STARTS_KEPT:
            cache.popitem(last=False)
    cache.move_to_end(key)
    return cache[key]


def _scored(model: CTModel, params: dict[str, torch.Tensor], image: np.ndarray) -> Start:
    """``params`` as the first try's :class:`Start`: the misfit of its image over that of the
    TV image ``image`` (:func:`~bayes_inr.evaluation.misfit.data_misfit`, both projected in
    one batch)."""
    with torch.no_grad():
        rendered = model.inr.render(params).reshape(image.shape).cpu().numpy()
    start, tv = data_misfit(np.stack([rendered, image]), model.sinogram.cpu().numpy(),
                            model.operator)
    return Start(params, float(start / max(tv, np.finfo(np.float64).tiny)), 0)


def tv_start(model: CTModel, iterations: int = TV_ITERATIONS, seed: int = 0, tries: int = 1
             ) -> Start:
    """The start of ``model`` at its TV image (:func:`tv_image`, ``iterations``
    iterations): a pixel grid's values through its inverse link, or a network's weights
    from seed ``seed`` fitted to it (:func:`fit_to_image`); with ``tries`` above 1, the
    start of lowest misfit among those from seeds ``seed + t * START_SEED_STRIDE``,
    t < ``tries``.

    A start computed earlier in the process from the same inputs is returned again (its
    weights copied), without solving or fitting.
    """
    if tries < 1:
        raise InputError(f"a start needs at least 1 try, got {tries}")
    grid = isinstance(model.inr, PixelGrid)
    if tries > 1 and not grid:
        starts = [tv_start(model, iterations, seed + t * START_SEED_STRIDE)
                  for t in range(tries)]
        chosen = int(np.argmin([start.misfit_ratio for start in starts]))
        return replace(starts[chosen], chosen=chosen)
    params = None if grid else model.init_params(seed)

    def make() -> Start:
        image = _kept(_images, _image_key(model, iterations),
                      lambda: tv_image(model, iterations))
        fitted = (model.inr.params_of(image) if grid
                  else fit_to_image(model.inr, params, image, seed=seed))
        return _scored(model, fitted, image)

    start = _kept(_starts, _start_key(model, iterations, seed, params), make)
    return replace(start, params={name: value.clone() for name, value in start.params.items()})
