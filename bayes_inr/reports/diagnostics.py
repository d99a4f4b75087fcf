"""The MCMC diagnostics of a report: R-hat, ESS, divergences and sampler statistics.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from .. import posterior
from ..evaluation import metrics
from ..evaluation.convergence import (
    MIN_CHAINS,
    ONE_CHAIN_NOTE,
    RHAT_LIMIT,
    sampler_warnings,
    split_rhat,
)
from ..inference.method import family_of
from .page import _num

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az


SAMPLER_STATS = (  # (sample_stats variable, column, reduction)
    ("step_size", "step size", "mean"),
    ("acceptance_rate", "acceptance (mean)", "mean"),
    ("n_steps", "leapfrog steps (mean)", "mean"),
    ("tree_depth", "tree depth (mean)", "mean"),
    ("tree_depth", "tree depth (max)", "max"),
)


# ----------------------------------------------------------------------------- diagnostics


@dataclass
class Diagnostics:
    """ArviZ diagnostics of one MCMC run, over the stored draws.

    ``image`` summarises the per-pixel maps ``rhat``, ``ess_bulk``, ``ess_tail`` of
    ``posterior_predictive.image`` (each (y, x)); ``params`` has one row per ``posterior``
    variable;
    ``sampler`` one row per chain plus an ``all`` row.
    """

    chains: int
    draws: int
    notes: list[str]
    rhat: np.ndarray
    ess_bulk: np.ndarray
    ess_tail: np.ndarray
    image: dict
    params: list[dict] = field(default_factory=list)
    sampler: list[dict] = field(default_factory=list)
    divergences: int = 0
    transitions: int = 0
    warnings: list[str] = field(default_factory=list)


def is_mcmc(idata) -> bool:
    """Whether a run is an MCMC run: a method of the registry's ``mcmc`` family, or
    sampler statistics with divergences."""
    method = str(posterior.run_attrs(idata).get("method", "")).lower()
    stats = getattr(idata, "sample_stats", None)
    return family_of(method) == "mcmc" or (stats is not None and "diverging" in stats)


def _arviz(ds: xr.Dataset, name: str) -> tuple[np.ndarray, ...]:
    """R-hat, bulk ESS and tail ESS of one variable, element-wise (NaN where undefined)."""
    data = ds[[name]]
    rhat = split_rhat(data)[name].values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        bulk = az.ess(data, method="bulk")[name].values
        tail = az.ess(data, method="tail")[name].values
    return (np.asarray(rhat, dtype=np.float64), np.asarray(bulk, dtype=np.float64),
            np.asarray(tail, dtype=np.float64))


def _summary(rhat: np.ndarray, bulk: np.ndarray, tail: np.ndarray) -> dict:
    def stat(fn, values):
        finite = values[np.isfinite(values)]
        return float(fn(finite)) if finite.size else math.nan

    finite_rhat = rhat[np.isfinite(rhat)]
    return {
        "size": int(rhat.size),
        "rhat_max": stat(np.max, rhat),
        "rhat_over": float((finite_rhat > RHAT_LIMIT).sum() / rhat.size) if rhat.size else 0.0,
        "rhat_undefined": int((~np.isfinite(rhat)).sum()),
        "ess_bulk_min": stat(np.min, bulk),
        "ess_bulk_median": stat(np.median, bulk),
        "ess_bulk_max": stat(np.max, bulk),
        "ess_tail_min": stat(np.min, tail),
        "ess_tail_median": stat(np.median, tail),
        "ess_tail_max": stat(np.max, tail),
    }


def mcmc_diagnostics(idata) -> Diagnostics | None:
    """ArviZ diagnostics of an MCMC run (None for any other run).

    R-hat is :func:`bayes_inr.evaluation.convergence.split_rhat` (ArviZ's rank-normalised split
    R-hat; with a single chain that of the chain's two halves taken as two chains: a
    check of stationarity within the chain, not of agreement between chains). Bulk and
    tail ESS (:func:`arviz.ess`) are over all chains. A partial run (chains of unequal
    length) is cut to its shortest chain (:func:`bayes_inr.posterior.trim_partial`).
    """
    if not is_mcmc(idata):
        return None
    full = int(idata.posterior_predictive.sizes["draw"])
    idata = posterior.trim_partial(idata)
    pp = idata.posterior_predictive[["image"]]
    chains, draws = int(pp.sizes["chain"]), int(pp.sizes["draw"])
    notes = []
    if draws < full:
        notes.append(f"a partial run: every chain is cut to the shortest chain's {draws} "
                     f"of {full} draws for the diagnostics")
    if chains < MIN_CHAINS:
        notes.append(ONE_CHAIN_NOTE)
    if draws < 8:
        notes.append(f"only {draws} draws per chain: R-hat and ESS are unreliable")
    logger = logging.getLogger("arviz")
    level = logger.level
    logger.setLevel(logging.ERROR)  # "shape validation failed" for very short chains
    try:
        rhat, bulk, tail = _arviz(pp, "image")
        post = getattr(idata, "posterior", None)
        params = [{"variable": str(name), **_summary(*_arviz(post, name))}
                  for name in (post.data_vars if post is not None else ())]
    finally:
        logger.setLevel(level)

    sampler, divergences, transitions = [], 0, 0
    stats = getattr(idata, "sample_stats", None)
    if stats is not None:
        for chain in [*range(chains), None] if chains > 1 else [0]:
            sub = stats if chain is None else stats.isel(chain=chain)
            row: dict = {"chain": "all" if chain is None else str(chain)}
            if "diverging" in sub:
                values = np.asarray(sub["diverging"].values, dtype=np.float64)
                values = values[np.isfinite(values)]
                row["draws"] = int(values.size)
                row["divergences"] = int(values.sum())
            for name, column, how in SAMPLER_STATS:
                if name in sub:
                    values = np.asarray(sub[name].values, dtype=np.float64)
                    values = values[np.isfinite(values)]
                    if values.size:
                        row[column] = float(values.mean() if how == "mean" else values.max())
            sampler.append(row)
        if "diverging" in stats:
            divergences = sum(row["divergences"] for row in sampler[:chains])
            transitions = sum(row["draws"] for row in sampler[:chains])
    return Diagnostics(chains=chains, draws=draws, notes=notes, rhat=rhat, ess_bulk=bulk,
                       ess_tail=tail, image=_summary(rhat, bulk, tail), params=params,
                       sampler=sampler, divergences=divergences, transitions=transitions,
                       warnings=sampler_warnings(idata))


def trace_pixels(idata, diag: Diagnostics) -> dict[str, tuple[int, int]]:
    """Up to four pixels worth tracing, labelled with why and with their diagnostics:
    the highest and the median pooled variance, the centre, and the worst R-hat (with
    one chain: the lowest bulk ESS)."""
    _, var = metrics.predictive_moments(posterior.image_draws(idata))
    ny, nx = var.shape
    flat = var.ravel()
    order = np.argsort(flat, kind="stable")
    picks = [("highest variance", int(order[-1])),
             ("median variance", int(order[order.size // 2])),
             ("centre", (ny // 2) * nx + nx // 2)]
    if diag.chains > 1 and np.isfinite(diag.rhat).any():
        picks.append(("worst R-hat", int(np.nanargmax(diag.rhat))))
    elif np.isfinite(diag.ess_bulk).any():
        picks.append(("lowest bulk ESS", int(np.nanargmin(diag.ess_bulk))))
    chosen: dict[int, list[str]] = {}
    for why, index in picks:
        chosen.setdefault(index, []).append(why)
    pixels = {}
    for index, whys in chosen.items():
        y, x = divmod(index, nx)
        label = (f"{', '.join(whys)} (y {y}, x {x}): sd {math.sqrt(flat[index]):.3g}, "
                 f"R-hat {_num(diag.rhat[y, x], 3)}, ESS bulk {_num(diag.ess_bulk[y, x], 0)}"
                 f" / tail {_num(diag.ess_tail[y, x], 0)}")
        pixels[label] = (y, x)
    return pixels


# ----------------------------------------------------------------------------- page model
