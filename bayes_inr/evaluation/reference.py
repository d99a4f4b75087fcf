"""How far an approximate posterior is from a reference posterior, pixel by pixel.

The reference is a converged sampler's draws (the HMC/NUTS reference recipe of
``models/hmc_reference.toml``); the approximation is any method's draws of the same image,
with optional per-draw weights (an ensemble's members weigh 1/K each, see
:func:`bayes_inr.posterior.draw_weights`). Per pixel:

- **std ratio** ``s_method / s_reference`` of the two predictive standard deviations:
  below 1 the method is over-confident, above 1 under-confident;
- **reference coverage**: the share of the reference's draws inside the method's central
  interval at level ``q`` (0.9), which is ``q`` when the method's marginal is the
  reference's, lower when it is too narrow or shifted;
- **W1**: the 1-Wasserstein distance between the two marginals,
  ``int_0^1 |F^-1(u) - G^-1(u)| du``, on a midpoint grid of ``u`` (:data:`W1_GRID` points;
  image units: it bounds how far the mean moved and how much the spread differs).

:func:`compare` summarises them over a pixel set (the object first), with the
posterior-mean PSNR of the method against the truth.
"""

from __future__ import annotations

import numpy as np

from ..core.errors import InputError, check_finite
from .metrics import predictive_moments, psnr, quantiles

W1_GRID = 200
"""Midpoint quantile levels on which the 1-Wasserstein distance is integrated."""

LEVEL = 0.9
"""Level of the central interval whose reference coverage :func:`compare` reports."""


def _flat(draws, weights) -> tuple[np.ndarray, np.ndarray]:
    """Draws as (S, pixels), finite, and their weights (equal when None; else S
    non-negative numbers summing to 1)."""
    draws = np.asarray(draws, dtype=np.float64)
    check_finite("draws", draws)
    flat = draws.reshape(draws.shape[0], -1)
    if weights is None:
        return flat, np.full(flat.shape[0], 1.0 / flat.shape[0])
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (flat.shape[0],) or (w < 0).any() or not np.isclose(w.sum(), 1.0):
        raise InputError(f"weights must be {flat.shape[0]} non-negative numbers summing to 1")
    return flat, w


def _pair(draws, reference, weights) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_flat` of the method's draws and of the reference's, on the same pixels."""
    flat, w = _flat(draws, weights)
    ref, wr = _flat(reference, None)
    if flat.shape[1] != ref.shape[1]:
        raise InputError(f"the draws have {flat.shape[1]} pixels, the reference "
                         f"{ref.shape[1]}: they must be images of one shape")
    return flat, w, ref, wr


def std_ratio(draws, reference, weights=None) -> np.ndarray:
    """Per pixel, the method's predictive std over the reference's (flat, pixels)."""
    flat, w, ref, wr = _pair(draws, reference, weights)
    _, var = predictive_moments(flat, w)
    _, var_ref = predictive_moments(ref, wr)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(var / var_ref)


def reference_coverage(draws, reference, level: float = LEVEL, weights=None) -> np.ndarray:
    """Per pixel, the share of ``reference`` draws inside the method's central interval at
    ``level`` (interpolated quantiles ``0.5 -/+ level / 2``, bounds inclusive)."""
    if not 0 < level < 1:
        raise InputError(f"level must be in (0, 1), got {level}")
    flat, w, ref, _ = _pair(draws, reference, weights)
    lo, hi = quantiles(flat, np.array([0.5 - level / 2, 0.5 + level / 2]), w)
    return ((ref >= lo) & (ref <= hi)).mean(axis=0)


def wasserstein(draws, reference, weights=None, grid: int = W1_GRID) -> np.ndarray:
    """Per pixel, the 1-Wasserstein distance between the method's and the reference's
    marginals (their quantile functions compared on ``grid`` midpoint levels)."""
    flat, w, ref, wr = _pair(draws, reference, weights)
    levels = (np.arange(grid) + 0.5) / grid
    return np.abs(quantiles(flat, levels, w) - quantiles(ref, levels, wr)).mean(axis=0)


def compare(draws, reference, truth, mask=None, weights=None, level: float = LEVEL) -> dict:
    """The summary of one method against the reference over the pixels ``mask`` (default
    all): std ratio median and quartiles, mean reference coverage at ``level``, W1 median
    and mean, and both posterior means' PSNR against ``truth``.

    Parameters
    ----------
    draws : array (S, N, N)
        The method's image draws.
    reference : array (R, N, N)
        The reference's image draws (equally weighted).
    truth : array (N, N)
    mask : bool array (N, N), optional
    weights : array (S,), optional
        Per-draw weights of ``draws`` (summing to 1).
    """
    draws, reference = np.asarray(draws), np.asarray(reference)
    if draws.shape[1:] != reference.shape[1:] or np.shape(truth) != draws.shape[1:]:
        raise InputError(f"draws {draws.shape[1:]}, reference {reference.shape[1:]} and truth "
                         f"{np.shape(truth)} must be images of one shape")
    keep = (np.ones(draws.shape[1:], bool) if mask is None else np.asarray(mask, bool)).ravel()
    flat, w = _flat(draws, weights)
    ratio = std_ratio(draws, reference, weights)[keep]
    ratio = ratio[np.isfinite(ratio)]
    q1, median, q3 = np.quantile(ratio, [0.25, 0.5, 0.75]) if ratio.size else (np.nan,) * 3
    w1 = wasserstein(draws, reference, weights)[keep]
    mean = (w @ flat).reshape(draws.shape[1:])
    return {"std_ratio_q1": float(q1), "std_ratio_median": float(median),
            "std_ratio_q3": float(q3),
            "reference_coverage": float(reference_coverage(draws, reference, level,
                                                           weights)[keep].mean()),
            "w1_median": float(np.median(w1)), "w1_mean": float(w1.mean()),
            "psnr": psnr(mean, truth), "reference_psnr": psnr(reference.mean(0), truth)}
