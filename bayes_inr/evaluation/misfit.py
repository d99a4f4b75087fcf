"""Data misfit of posterior means, and ensemble members stuck in a poor optimum.

Every member of a deep ensemble is one fit from its own seed, and now and then a seed stops
in a poorer optimum: on Table 1's real-CT validation slices at 60 views three of ten
members fell 1.1-2.1 dB below the median member. Without the ground truth the image does
not show it, but the data do: such a member's posterior mean explains the sinogram worse
than its siblings'. The misfit of an image f is the mean squared residual per ray,

.. math:: r(f) = \\lVert A f - p \\rVert^2 / n_{\\text{rays}},

and a member is flagged when the misfit of its posterior mean exceeds :data:`POOR_FACTOR`
times the median over the members (ensembles of at least :data:`MIN_MEMBERS`; with two
members the median is their mean, and one poor fit hides half its excess in it).

The factor was chosen on Table 1's validation images (``python analysis/seeds.py``, which
lists every member's ratio beside its PSNR): it flags the three members more than 1 dB
below the median, and two 0.5-0.6 dB below it, and no other. On validation runs made after
the choice (the phantoms at 20 views with ``mcd_20`` at omega0 1) it flagged the one member
more than 1 dB below the median (1.55 dB) and no other; on the real-CT validation slices at 20
views with ``mcd_real_20`` at omega0 2 (the factor was chosen at 4) it flagged six of twenty
members, none more than 1 dB below the median: the two worst (0.8 dB below) and four
0.1-0.4 dB below (five when refitted: the two worst, 0.9 dB below, and three 0.3-0.4 dB
below). The sharper scale spreads the members' misfits, so there it over-flags, a false
alarm that costs a refit, not a wrong image. At 60 views, refitted, it flags the five
members more than 1 dB below their median and one other. It says nothing about an optimum
every seed shares: on two test phantoms every member lost 1.6-3.0 dB to TV together.

A single fit has no siblings to compare with, and the reference it does have, the TV image
it started from, does not separate the final images: on the validation images the members
more than 1 dB below their median leave 2.46-3.18 times the TV image's misfit, the others
1.35-4.10 (and 4-10 at 5 views, where the INR fits the data less tightly than TV), so no
factor flags the first without the second (``seeds.md``, column ``misfit / TV``). What does
separate them is the start: those members' networks had fitted the TV image slowly, and
their starts explained the sinogram 6.2-126 times worse than the TV image, most others'
1.4-3.4 (a slow start does not always cost: one real-CT member at 20 views started at 6.4
and ended at its median). ``--start-tries`` (:mod:`bayes_inr.inference.tv_start`) keeps
the best of several starts.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import posterior
from ..physics.geometry import Geometry
from ..physics.radon import RadonOperator

POOR_FACTOR = 1.3
"""A member whose posterior mean's misfit exceeds this times the members' median is flagged."""

MIN_MEMBERS = 3
"""Ensembles with fewer members are not checked."""


def run_operator(idata) -> RadonOperator:
    """The projector of a run's data: its image size, view count and detector count."""
    sinogram = idata.observed_data["sinogram"]
    size = int(idata.posterior_predictive["image"].sizes["y"])
    return RadonOperator(Geometry(size, int(sinogram.sizes["angle"]),
                                  int(sinogram.sizes["detector"])))


def data_misfit(images, sinogram, operator: RadonOperator) -> np.ndarray:
    """The mean squared residual per ray of each image (..., y, x) against ``sinogram``,
    shape ``images.shape[:-2]``; the images are projected in one batch."""
    with torch.no_grad():
        projected = operator(torch.as_tensor(np.asarray(images), dtype=operator.dtype,
                                             device=operator.device))
    residual = projected.cpu().numpy().astype(np.float64) - np.asarray(sinogram, np.float64)
    return np.mean(residual ** 2, axis=(-2, -1))


def member_misfits(idata, operator: RadonOperator | None = None) -> np.ndarray:
    """:func:`data_misfit` of every chain's (member's) posterior mean, in chain order."""
    operator = run_operator(idata) if operator is None else operator
    return data_misfit(posterior.chain_means(idata), idata.observed_data["sinogram"].values,
                       operator)


def misfit_ratios(misfits) -> np.ndarray:
    """Each member's misfit over the members' median."""
    misfits = np.asarray(misfits, dtype=np.float64)
    return misfits / np.median(misfits)


def poor_members(misfits, factor: float | None = None) -> list[int]:
    """The members whose misfit exceeds ``factor`` (default :data:`POOR_FACTOR`) times the
    median ([] for fewer than :data:`MIN_MEMBERS` members)."""
    if len(misfits) < MIN_MEMBERS:
        return []
    factor = POOR_FACTOR if factor is None else factor
    return [int(k) for k in np.flatnonzero(misfit_ratios(misfits) > factor)]


def poor_member_warnings(idata, operator: RadonOperator | None = None) -> list[str]:
    """One line per flagged member of an ensemble run, naming its label and ratio."""
    misfits = member_misfits(idata, operator)
    ratios = misfit_ratios(misfits)
    pp = idata.posterior_predictive
    labels = (pp["member"].values if "member" in pp.coords
              else [f"chain {k}" for k in range(len(misfits))])
    return [f"{labels[k]}: its posterior mean's data misfit is {ratios[k]:.2f} x the "
            f"members' median (flagged above {POOR_FACTOR}): likely a poor optimum; refit "
            "it with another seed or leave it out" for k in poor_members(misfits)]
