"""R-hat, ESS and divergences of an HMC/NUTS run, as text.
"""

from __future__ import annotations

import warnings

import numpy as np

from ...evaluation import convergence


def diagnostics(idata, rows: int = 5) -> str:
    """R-hat, ESS and divergences, as a short table and a few lines.

    R-hat is :func:`bayes_inr.evaluation.convergence.split_rhat` (with one chain: of its two
    halves) of every image pixel, stated as :func:`~bayes_inr.evaluation.convergence.rhat_statement`
    says it; the table shows ``rows`` of the representative pixels (``posterior.pixel``)
    with their R-hat and bulk/tail ESS (NaN where ArviZ cannot tell, e.g. for a chain that
    never moved).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return _diagnostics(idata, rows)


def _diagnostics(idata, rows: int) -> str:
    import arviz as az

    pixels = idata.posterior["pixel"]
    chains = pixels.sizes["chain"]
    rhat = convergence.split_rhat(idata.posterior[["pixel"]])["pixel"].values
    bulk = az.ess(idata, var_names=["pixel"], method="bulk")["pixel"].values
    tail = az.ess(idata, var_names=["pixel"], method="tail")["pixel"].values
    labels = pixels["pixel_id"].values
    stats = idata.sample_stats
    lines = [f"{'pixel':>10} {'mean':>8} {'sd':>8} {'r_hat':>6} {'ess_bulk':>9} {'ess_tail':>9}"]
    mean, sd = pixels.mean(("chain", "draw")).values, pixels.std(("chain", "draw")).values
    for i in np.linspace(0, len(labels) - 1, rows).astype(int):
        lines.append(f"{labels[i]:>10} {mean[i]:8.4f} {sd[i]:8.4f} {rhat[i]:6.3f} "
                     f"{bulk[i]:9.1f} {tail[i]:9.1f}")
    image_rhat = convergence.split_rhat(idata.posterior_predictive[["image"]])["image"].values
    lines.append(convergence.rhat_statement(image_rhat, chains))
    n = int(stats["diverging"].count())
    lines.append(f"over the {len(labels)} representative pixels: min ess_bulk "
                 f"{np.nanmin(bulk):.1f}, median ess_bulk {np.nanmedian(bulk):.1f}")
    depth = (f", mean tree depth {float(stats['tree_depth'].mean()):.1f}"
             if "tree_depth" in stats else "")
    lines.append(f"divergences {int(stats['diverging'].sum())} of {n} draws, "
                 f"mean acceptance {float(stats['acceptance_rate'].mean()):.3f}, "
                 f"mean leapfrog steps {float(stats['n_steps'].mean()):.1f}{depth}")
    moved = pixels.std("draw").max("pixel_id").values
    accepted = stats["acceptance_rate"].mean("draw").values
    for chain in np.flatnonzero((moved == 0) | (accepted < 0.05)):
        lines.append(f"warning: chain {chain} barely moves (mean acceptance "
                     f"{accepted[chain]:.3f}): its R-hat and ESS are not to be trusted")
    return "\n".join(lines)
