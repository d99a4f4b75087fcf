"""Deep ensembles (the paper's DE-N): a mixture of independent fits.

Each member is an independent MAP, BBB or MCD fit (MCD by default) with its own seed,
so its own Fourier matrix and initial weights; members may have different
configurations (for example the top N of a sweep, :mod:`bayes_inr.ranking`). Members
run on :mod:`bayes_inr.workers` processes. The InferenceData stores member k as chain
k, with coordinates ``member`` (its label) and ``member_config`` (its configuration as
JSON) on the chain dimension; a deterministic member (MAP) is one draw, not copies of
one draw. Metrics score the equally weighted mixture: every member weighs 1/K whatever its
draw count (:func:`bayes_inr.posterior.draw_weights`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Sequence

import arviz as az
import numpy as np

from . import posterior
from .config import SVI, FitConfig
from .data import Sample
from .errors import InputError
from .metrics import score
from .workers import run_tasks, threads_per_worker


def member_configs(config: FitConfig, members: Sequence[FitConfig] | None = None
                   ) -> list[FitConfig]:
    """The configurations of the members of the ensemble ``config``.

    Without ``members``: ``config.members`` copies of ``config`` with inference
    ``config.member_inference``. Member k gets seed ``config.seed + k`` in both cases.
    """
    if members is None:
        members = [config.replace(inference=config.member_inference)] * config.members
    if not members:
        raise InputError("an ensemble needs at least one member")
    for member in members:
        if member.inference not in SVI:
            raise InputError(f"ensemble members are {', '.join(SVI)} fits, not "
                             f"{member.inference}")
    return [member.replace(seed=config.seed + k) for k, member in enumerate(members)]


def settings(config: FitConfig, members: Sequence[FitConfig] | None = None) -> dict:
    """What the ensemble's ``config_hash`` covers: its settings and every member's
    (:mod:`bayes_inr.provenance`)."""
    configs = member_configs(config, members)
    return dataclasses.asdict(config) | {
        "members": len(configs),
        "member_configs": [dataclasses.asdict(member) for member in configs]}


def fit_ensemble(sample: Sample, config: FitConfig, members: Sequence[FitConfig] | None = None,
                 progress: bool = True) -> az.InferenceData:
    """Fit the members of the ensemble ``config`` (see :func:`member_configs`) to ``sample``.

    ``config.workers`` members run at once, each with ``config.threads`` torch threads
    (0: the cores shared evenly); progress bars only when they run in this process.
    """
    start = time.perf_counter()
    configs = member_configs(config, members)
    threads = threads_per_worker(config.workers, config.threads)
    configs = [member.replace(threads=threads) for member in configs]
    from .fit import fit  # fit() dispatches ensembles here

    job = functools.partial(fit, sample, progress=progress and config.workers == 1)
    fits: list = [None] * len(configs)
    for k, idata in run_tasks(job, configs, workers=min(config.workers, len(configs)),
                              threads=threads):
        fits[k] = idata
    labels = [f"member{k}-{member.inference}" for k, member in enumerate(configs)]
    stored = [posterior.config(idata) for idata in fits]
    record = dataclasses.asdict(config) | {"members": len(configs), "threads_used": threads,
                                           "member_configs": stored}
    idata = posterior.build(
        [posterior.image_draws(member) for member in fits], sinogram=sample.sinogram,
        angles=sample.geometry.angles, method=f"DE-{len(configs)}", config=record,
        ground_truth=sample.ground_truth, seed=config.seed,
        wall_time=time.perf_counter() - start, device=config.device, chain_labels=labels,
        settings=settings(config, members))
    member_json = np.array([json.dumps(c, sort_keys=True) for c in stored], dtype=object)
    idata.posterior_predictive = idata.posterior_predictive.assign_coords(
        member_config=("chain", member_json))
    return idata



def member_scores(idata: az.InferenceData) -> list[dict]:
    """:func:`bayes_inr.metrics.score` of every member (chain) alone, method = its label."""
    labels = idata.posterior_predictive["member"].values
    return [score(idata.isel(chain=[k])) | {"method": str(label)}
            for k, label in enumerate(labels)]
