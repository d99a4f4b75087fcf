"""How the package judges an MCMC run, in one place: R-hat, its wording, sampler warnings.

- R-hat is ArviZ's rank-normalised split R-hat (:func:`arviz.rhat`, Vehtari et al. 2021),
  element by element: per pixel of ``posterior_predictive.image``, per element of a
  ``posterior`` variable (:func:`split_rhat`). ArviZ needs two chains (it gives NaN for
  one). With one chain the package takes the chain's two halves as two chains, and
  ArviZ splits each again, so four quarters of the chain are compared: a check of
  stationarity within the chain, not of agreement between chains.
  :func:`rhat_statement` is the one sentence the fit CLI
  (:func:`bayes_inr.inference.mcmc.diagnostics`) and the report print about it; a run
  with fewer than :data:`MIN_CHAINS` chains is never called converged (:func:`converged`).
- :func:`pixel_convergence`: R-hat and ESS maps of a run and their summaries over a mask
  (the object), with the sampler's statistics: the reference posterior's and Table 1's
  MCMC columns.
- :func:`sampler_warnings`: divergences on more than :data:`DIVERGENCE_SHARE` of the kept
  transitions, and NUTS saturating its maximum tree depth on more than
  :data:`TREE_DEPTH_SHARE`.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import xarray as xr

from .. import posterior

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

RHAT_LIMIT = 1.01
"""R-hat above this marks a pixel or parameter as not converged (Vehtari et al. 2021)."""

ESS_LOW = 100
"""Bulk or tail ESS below this is flagged as too few effective draws."""

MIN_CHAINS = 2
"""Fewer chains than this: R-hat cannot check convergence, the run is never called converged."""

DIVERGENCE_SHARE = 0.01
"""Divergent transitions above this share of the kept transitions are warned about."""

TREE_DEPTH_SHARE = 0.10
"""NUTS transitions that saturate the maximum tree depth above this share are warned about."""

ONE_CHAIN_NOTE = ("one chain: ArviZ's R-hat needs two; the R-hat shown is the split R-hat "
                  "of the chain's two halves taken as two chains (stationarity within the "
                  "chain only, not a convergence check)")
"""What a one-chain R-hat is, in the words of every report."""


def split_rhat(ds: xr.Dataset) -> xr.Dataset:
    """ArviZ's rank-normalised split R-hat of every variable of ``ds`` (chain, draw, ...).

    With one chain, that of its two halves taken as two chains (an odd last draw left
    out). NaN where it is undefined (constant draws, fewer than 4 draws per half).
    """
    if ds.sizes["chain"] == 1:
        n = ds.sizes["draw"] // 2
        first = ds.isel(chain=[0], draw=slice(0, n))
        second = ds.isel(chain=[0], draw=slice(n, 2 * n)).assign_coords(
            draw=first["draw"], chain=[1])
        ds = xr.concat([first, second], dim="chain")
    logger = logging.getLogger("arviz")
    level = logger.level
    logger.setLevel(logging.ERROR)  # "shape validation failed" for very short chains
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return az.rhat(ds)
    finally:
        logger.setLevel(level)


def converged(rhat: np.ndarray, chains: int) -> bool:
    """Whether R-hat calls the run converged: at least :data:`MIN_CHAINS` chains and every
    defined R-hat at most :data:`RHAT_LIMIT` (a one-chain run never is)."""
    finite = np.asarray(rhat, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    return chains >= MIN_CHAINS and finite.size > 0 and bool((finite <= RHAT_LIMIT).all())


def rhat_statement(rhat: np.ndarray, chains: int, what: str = "image pixels") -> str:
    """The sentence every report prints about R-hat (of :func:`split_rhat`) over ``what``.

    One chain: ``"split R-hat within 1 chain: max X over N image pixels (not a
    convergence check: run >= 2 chains)"``.
    """
    values = np.asarray(rhat, dtype=np.float64).ravel()
    finite = values[np.isfinite(values)]
    worst = f"{finite.max():.3f}" if finite.size else "undefined"
    undefined = (f", {values.size - finite.size} undefined (constant draws)"
                 if finite.size < values.size else "")
    if chains < MIN_CHAINS:
        return (f"split R-hat within 1 chain: max {worst} over {values.size} {what}"
                f"{undefined} (not a convergence check: run >= {MIN_CHAINS} chains)")
    over = int((finite > RHAT_LIMIT).sum())
    verdict = "converged by R-hat" if converged(values, chains) else "not converged"
    return (f"split R-hat over {chains} chains: max {worst} over {values.size} {what}, "
            f"{over} above {RHAT_LIMIT}{undefined} ({verdict})")


def pixel_convergence(idata, mask: np.ndarray, rhat_limit: float = 1.05) -> dict:
    """Convergence of the image draws of an MCMC run over the pixels of ``mask`` (N, N).

    Returns a dict: ``chains``, ``draws`` (per chain), the maps ``rhat`` (split R-hat,
    :func:`split_rhat`) and ``ess`` (bulk ESS), ``rhat_share`` (the share of ``mask``'s
    pixels with R-hat at most ``rhat_limit``), ``rhat_max``, ``ess_median`` and ``ess_min``
    over ``mask``; and, from ``sample_stats`` where the run has them (NaN otherwise), the
    share of ``divergent`` transitions, the share ``saturated`` at the maximum tree depth,
    ``steps_median`` (leapfrog steps per transition) and ``accept``, the mean acceptance.
    """
    image = idata.posterior_predictive[["image"]]
    rhat = split_rhat(image)["image"].values
    ess = az.ess(image, method="bulk")["image"].values
    mask = np.asarray(mask, dtype=bool)
    out = {"chains": image.sizes["chain"], "draws": image.sizes["draw"], "rhat": rhat,
           "ess": ess, "rhat_share": float((rhat[mask] <= rhat_limit).mean()),
           "rhat_max": float(np.nanmax(rhat[mask])), "ess_median": float(np.median(ess[mask])),
           "ess_min": float(ess[mask].min())}
    stats = getattr(idata, "sample_stats", None)
    depth = posterior.config(idata).get("max_tree_depth")
    has = stats is not None and {"diverging", "n_steps", "acceptance_rate"} <= set(stats)
    n_steps = _values(stats, "n_steps") if has else np.array([np.nan])
    out |= {"divergent": float(np.nanmean(_values(stats, "diverging"))) if has else np.nan,
            "saturated": float(np.nanmean(n_steps >= 2 ** int(depth) - 1))
            if has and depth else np.nan,
            "steps_median": float(np.nanmedian(n_steps)),
            "accept": float(np.nanmean(_values(stats, "acceptance_rate"))) if has else np.nan}
    return out


def _values(stats: xr.Dataset, name: str) -> np.ndarray:
    """A statistic over all chains and draws, as float64 (NaN for a partial run's padding)."""
    return np.asarray(stats[name].values, dtype=np.float64).ravel()


def sampler_warnings(idata) -> list[str]:
    """One line per sampler problem in ``sample_stats`` (none for a run without them).

    Divergences on more than :data:`DIVERGENCE_SHARE` of the kept transitions, and NUTS
    transitions that saturated the maximum tree depth ``d`` of the stored configuration
    (``max_tree_depth``) on more than :data:`TREE_DEPTH_SHARE`. A transition saturates
    when it completed every doubling allowed, ``2^d - 1`` leapfrog steps (``n_steps``),
    without diverging (Stan's count): one that stopped by a U-turn or a divergence
    during its last doubling has ``tree_depth`` ``d`` too but ended on its own.
    """
    stats = getattr(idata, "sample_stats", None)
    if stats is None or "diverging" not in stats:
        return []
    diverging = _values(stats, "diverging")
    kept = np.isfinite(diverging)
    total, count = int(kept.sum()), int(diverging[kept].sum())
    lines = []
    if total and count > DIVERGENCE_SHARE * total:
        lines.append(f"{count} divergent transitions of {total} kept "
                     f"({100 * count / total:.1f} %, over {100 * DIVERGENCE_SHARE:g} %): the "
                     "sampler missed regions of high curvature; the draws may be biased "
                     "(raise --target-accept)")
    depth = posterior.config(idata).get("max_tree_depth")
    if total and depth and "tree_depth" in stats and "n_steps" in stats:
        steps = 2 ** int(depth) - 1
        full = int(((_values(stats, "n_steps") >= steps) & (diverging == 0))[kept].sum())
        if full > TREE_DEPTH_SHARE * total:
            lines.append(f"NUTS saturated its maximum tree depth {int(depth)} ({steps} leapfrog "
                         f"steps, no U-turn) on {full} of {total} kept transitions "
                         f"({100 * full / total:.1f} %, over {100 * TREE_DEPTH_SHARE:g} %): its "
                         "trajectories were cut short, the draws explore slowly (raise "
                         "--max-tree-depth)")
    return lines
