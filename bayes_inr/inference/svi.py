"""Stochastic variational inference: MAP, Bayes-by-backprop and Monte Carlo dropout.

One training loop serves the three methods; they differ only in the guide
(:mod:`bayes_inr.inference.guides`) and, for BBB, in the KL factor xi that scales
prior and guide terms of the latent sites together.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoDelta
from pyro.optim import ExponentialLR
from tqdm.auto import tqdm

from ..model import CTModel
from .guides import make_guide, sample_params

METHODS = ("map", "bbb", "mcd")


class DivergenceError(RuntimeError):
    """The loss became NaN or infinite; the guide holds the last good state."""

    def __init__(self, step: int, result: SVIResult):
        super().__init__(f"loss diverged (non-finite) at step {step}; "
                         f"kept the state saved after step {result.steps}")
        self.step = step
        self.result = result


@dataclass
class SVIResult:
    """A trained guide, its loss history and timings."""

    guide: object
    losses: list[float] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0

    @property
    def seconds_per_step(self) -> float:
        return self.seconds / max(self.steps, 1)


def fit_svi(model: CTModel, method: str, init: dict[str, torch.Tensor], *, steps: int = 2000,
            lr: float = 1e-3, lr_final: float = 0.1, kl_factor: float = 1.0,
            init_scale: float = 1e-3, particles: int = 1, checkpoint_every: int = 100,
            progress: bool = True) -> SVIResult:
    """Train the guide of ``method`` on ``model``.

    Adam with the learning rate decaying exponentially from ``lr`` to ``lr * lr_final``
    over ``steps``. The param store is cleared first. A non-finite loss restores the
    state saved at the last checkpoint and raises :class:`DivergenceError`.
    """
    pyro.clear_param_store()
    guide = make_guide(method, model, init, init_scale=init_scale)
    xi = kl_factor if method == "bbb" else 1.0
    model.latent_scale = xi
    train_guide = poutine.scale(guide, scale=xi) if xi != 1.0 else guide
    # plain Adam: ClippedAdam clamps every gradient element, which the 1/sigma^2 scale of the
    # likelihood turns into a badly distorted step
    optim = ExponentialLR({"optimizer": torch.optim.Adam, "optim_args": {"lr": lr},
                           "gamma": lr_final ** (1.0 / max(steps, 1))})
    svi = SVI(model, train_guide, optim, Trace_ELBO(num_particles=particles))
    result = SVIResult(guide)
    store = pyro.get_param_store()
    saved, saved_step = None, 0
    start = time.perf_counter()
    try:
        with pyro.validation_enabled(False), tqdm(range(steps), disable=not progress,
                                                  desc=method, unit="step") as bar:
            for step in bar:
                loss = svi.step()
                optim.step()
                if not math.isfinite(loss):
                    if saved is not None:
                        store.set_state(saved)
                    result.steps = saved_step
                    raise DivergenceError(step, result)
                result.losses.append(loss)
                result.steps = step + 1
                if step % checkpoint_every == 0 or step == steps - 1:
                    saved_step = step + 1
                    saved = {k: v.detach().clone() if torch.is_tensor(v) else v
                             for k, v in store.get_state().items()}
                    bar.set_postfix(loss=f"{loss:.4g}")
    finally:
        model.latent_scale = 1.0
        result.seconds = time.perf_counter() - start
    return result


@torch.no_grad()
def draw_images(model: CTModel, guide, draws: int, chunk: int = 10) -> np.ndarray:
    """Images (S, N, N) rendered from ``draws`` guide draws, ``chunk`` draws per pass.

    A point guide (MAP) gives a single draw.
    """
    sizes = [1] if isinstance(guide, AutoDelta) else [min(chunk, draws - i)
                                                      for i in range(0, draws, chunk)]
    images = []
    for size in sizes:
        params = sample_params(guide, size)
        params.pop("sigma", None)
        images.append(model.inr.render(params).cpu().numpy())
    return np.concatenate(images)
