"""Start points of HMC/NUTS chains: the prior, MAP fits, the TV solution, or a saved run's
last draws.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ... import posterior
from ...core.errors import InputError, check_choice
from ..guides import point_guide
from ..svi import DivergenceError, fit_svi
from ..tv_start import tv_start
from .potential import FlatPotential
from .run import STATE_PREFIX


def initial_points(potential: FlatPotential, init: str, chains: int, seed: int, *,
                   steps: int = 2000, lr: float = 1e-3, lr_final: float = 0.1,
                   progress: bool = True, start_tries: int = 1,
                   record: dict | None = None) -> torch.Tensor:
    """Start points (chains, dim) of the chains.

    ``init="prior"``: the network's initial weights with seed ``seed + chain`` (sigma at
    its prior median). ``"map"``: a MAP fit (:func:`~bayes_inr.inference.svi.fit_svi`,
    ``steps`` Adam steps) from each of those, so that chains start at different
    optima. ``"tv"``: every chain at the TV solution
    (:func:`~bayes_inr.inference.tv_start.tv_start`, ``steps`` iterations; a network
    fitted to it from seed ``seed``, the best of ``start_tries`` fits; its
    :meth:`~bayes_inr.inference.tv_start.Start.record` goes into ``record`` when given). A
    path to a saved hmc/nuts run: that run's last draws, chain by chain (cycled when it has
    fewer chains).
    """
    if init.endswith(".nc"):
        last = last_draws(posterior.load(init))
        if last.shape[1] != potential.dim:
            raise InputError(f"{init} holds {last.shape[1]} parameters per draw; this model "
                             f"has {potential.dim}")
        return last[torch.arange(chains) % last.shape[0]]
    check_choice("init", init, ("map", "prior", "tv"))
    if init == "tv":
        start = tv_start(potential.model, steps, seed, start_tries)
        if record is not None:
            record.update(start.record())
        return potential.flatten(start.params).expand(chains, -1).clone()
    points = []
    for chain in range(chains):
        values = potential.model.init_params(seed + chain)
        if init == "map":
            try:
                guide = fit_svi(potential.model, point_guide(potential.model, values),
                                steps=steps, lr=lr, lr_final=lr_final, progress=progress,
                                desc="map").guide
            except DivergenceError as err:
                warnings.warn(f"MAP warm start of chain {chain}: {err}", stacklevel=2)
                guide = err.result.guide
            values = {name: value.detach() for name, value in guide.median().items()}
        points.append(potential.flatten(values))
    return torch.stack(points)


def last_draws(idata) -> torch.Tensor:
    """The last kept position of every chain of a saved hmc/nuts run (chains, dim)."""
    const = getattr(idata, "constant_data", None)
    if const is None or STATE_PREFIX + "theta" not in const:
        raise InputError("the init file is not an hmc/nuts run of this package")
    theta = np.asarray(const[STATE_PREFIX + "theta"].values)
    theta = theta[~np.isnan(theta).any(axis=1)]
    if not len(theta):
        raise InputError("the init file has no kept draws")
    return torch.from_numpy(theta)
