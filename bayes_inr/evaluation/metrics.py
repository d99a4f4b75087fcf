"""Image-quality and calibration metrics (numpy; images in [0, 1]).

Definitions, shared by every method and baseline (the documentation's "Metrics and calibration"
page, ``docs/metrics.md``, states them with formulas):

- PSNR = 10 log10(1 / MSE), data range fixed to 1 (not the image maximum).
- SSIM: scikit-image with ``data_range = 1``.
- The predictive is the draws' empirical distribution with per-draw **weights**
  (default equal). An ensemble is an equally weighted mixture of its members: each
  member weighs 1/K whatever its draw count, split evenly over its draws
  (:func:`bayes_inr.posterior.draw_weights`).
- Predictive mean ``m`` and variance ``s^2`` per pixel: the weighted moments of the
  draws (the plug-in variance, ``ddof = 0``).
- NLL = mean over pixels of 0.5 log(2 pi (s^2 + eps)) + 0.5 (x - m)^2 / (s^2 + eps),
  with ``eps = EPS = 1e-6``.
- **PIT.** The truth x counts as one more draw of the mean draw weight w0 = 1/S
  (S draws). With B the weight of the draws below x and T the weight of the draws
  equal to x, the pixel's randomised PIT is uniform on
  [B / (1 + w0), (B + T + w0) / (1 + w0)]. With equal weights this is the randomised
  rank of x among the S + 1 values, (r + U (t + 1)) / (S + 1) for r draws below and t
  tied: exactly Uniform(0, 1) when x is exchangeable with the draws, **for every S**.
  Ties (air at exactly 0 under a clipped head) are spread over their whole rank
  range (Czado, Gneiting and Held 2009). Every figure below is the expectation over
  the randomisation, so scores are deterministic.
- Coverage at level q: the share of pixels whose PIT lies in the central interval
  [0.5 - q/2, 0.5 + q/2]. Because the PIT ranks the truth among S + 1 values, a
  calibrated predictive covers q in expectation at any draw count: the levels are
  corrected for finite S. (Interpolated empirical quantiles of S draws cover only
  about q (S - 1) / (S + 1), an ECE floor near 0.01 at S = 100; the paper's rule,
  kept in :func:`paper_delta_ece`, has that floor.)
- One-sided coverage at level q: ``below`` = share of pixels whose PIT is under
  0.5 - q/2 (truth below the interval), ``above`` = share over 0.5 + q/2; each is
  (1 - q)/2 when calibrated. A biased predictive cannot hide inside a symmetric
  interval.
- ECE = mean over the levels q in {0, 0.05, ..., 0.95} of |coverage(q) - q|.
- PIT error: mean over the grid g in {0, 0.01, ..., 1} of |G(g) - g|, G the empirical
  CDF of the pixels' PIT values. The PIT histogram is its picture.
- CRPS: the continuous ranked probability score of the (weighted) empirical
  predictive, mean over pixels, from ``scoringrules`` (integral estimator). A
  one-draw reconstruction's CRPS is its mean absolute error. Lower is better; it
  ranks methods on accuracy and calibration at once.
- Pixel sets (:data:`SUPPORTS`): every calibration figure is given on the
  **object** (true value above the air level), the **background** (air: true value at
  or below it) and all pixels, with the share of pixels tied with at least one draw.
  The air level is 0 for phantoms, whose air is exactly 0, and -950 HU in the window for
  CT slices, whose air reads a little above 0 (:func:`bayes_inr.data.images.air_level`);
  a run file records it with its truth (:func:`bayes_inr.posterior.air_level`).
- Coverage map: per-pixel |x - m| / s.

``draws`` arrays hold S draws on axis 0: shape (S, N, N), or (S, ...) in general,
``truth`` has the shape of one draw, and ``weights`` (S,) are non-negative with a
positive sum (normalised here).

One module although it is long: it is one concept, the definitions above, each a few lines
on shared input checks and weighted quantiles, and the score of a run that collects them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..core.errors import InputError, check_finite

EPS = 1e-6
"""Variance floor added to s^2 in the NLL."""

LEVELS = np.arange(20) * 0.05
"""Central-interval levels 0, 0.05, ..., 0.95 used by the reliability curve and ECE."""

PIT_GRID = np.linspace(0.0, 1.0, 101)
"""Grid on which the PIT error compares the PIT values' CDF with the uniform CDF."""

SUPPORTS = ("object", "background", "all")
"""Pixel sets of the calibration figures, the object (true value above the air level) first."""

PAPER_DELTAS = np.linspace(0.0, 0.1, 101)
"""Default widening grid for :func:`paper_delta_ece` (image units, step 0.001).

This grid is this package's choice; it starts at 0, so the tuned score is never
above the honest one.
"""


@dataclass(frozen=True)
class Metric:
    """One score: its key, label, direction and what it needs."""

    name: str
    label: str
    better: str
    """``"higher"``, ``"lower"``, or ``"nominal"`` (closest to its nominal value)."""
    needs_draws: bool
    """Needs at least two draws (a calibration figure)."""
    per_support: bool
    """Given on every pixel set of :data:`SUPPORTS` (keys ``NAME_SUPPORT``)."""


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("psnr", "PSNR (dB)", "higher", False, False),
    Metric("ssim", "SSIM", "higher", False, False),
    Metric("crps", "CRPS", "lower", False, True),
    Metric("nll", "NLL", "lower", True, True),
    Metric("ece", "ECE", "lower", True, True),
    Metric("pit_error", "PIT error", "lower", True, True),
    Metric("coverage_50", "coverage 0.5", "nominal", True, True),
    Metric("coverage_90", "coverage 0.9", "nominal", True, True),
    Metric("below_90", "below 0.9 interval", "nominal", True, True),
    Metric("above_90", "above 0.9 interval", "nominal", True, True),
    Metric("tied", "tied share", "lower", True, True),
)}
"""Every score :func:`score` returns, in display order."""

SUMMARY = ("psnr", "ssim", "crps_object", "nll_object", "ece_object", "pit_error_object",
           "coverage_90_object", "below_90_object", "above_90_object", "ece_all", "tied_all")
"""The columns that summarise a run wherever runs are compared (report pages, sweep
tables, rankings): accuracy, then calibration on the object first, then all pixels."""

RANKING = ("crps_object", "psnr")
"""How configurations are ranked on validation (:mod:`bayes_inr.experiments.ranking`):
object CRPS first (the proper score, defined for one draw too), then PSNR."""


def metric_of(column: str) -> Metric:
    """The :data:`METRICS` entry of a score column such as ``psnr`` or ``crps_object``."""
    name, _, support = column.rpartition("_")
    if support in SUPPORTS and name in METRICS:
        return METRICS[name]
    if column in METRICS:
        return METRICS[column]
    raise KeyError(f"no metric for the column {column!r}")


def rank_key(row: dict, columns: tuple[str, ...] = RANKING) -> tuple[float, ...]:
    """A sort key ranking ``row`` (column -> value) by ``columns`` in turn, best first: each
    in its metric's direction (``nominal`` metrics cannot rank); NaN ranks last."""
    key = []
    for column in columns:
        better, value = metric_of(column).better, float(row[column])
        if better not in ("higher", "lower"):
            raise ValueError(f"{column} has a nominal value, not a direction: it cannot rank")
        key.append(math.inf if math.isnan(value) else -value if better == "higher" else value)
    return tuple(key)


# ----------------------------------------------------------------------------- validation


def _image_pair(estimate, truth) -> tuple[np.ndarray, np.ndarray]:
    estimate = np.asarray(estimate, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if estimate.shape != truth.shape:
        raise InputError(
            f"estimate shape {estimate.shape} does not match truth shape {truth.shape}"
        )
    check_finite("estimate", estimate)
    check_finite("truth", truth)
    return estimate, truth


def _draws(draws) -> np.ndarray:
    draws = np.asarray(draws, dtype=np.float64)
    if draws.ndim < 1 or draws.shape[0] < 1:
        raise InputError(f"draws must have shape (S, ...) with S >= 1, got {draws.shape}")
    check_finite("draws", draws)
    return draws


def _draws_truth(draws, truth) -> tuple[np.ndarray, np.ndarray]:
    draws = _draws(draws)
    truth = np.asarray(truth, dtype=np.float64)
    if draws.shape[1:] != truth.shape:
        raise InputError(
            f"draws shape {draws.shape} does not match truth shape {truth.shape}: "
            f"expected (S, {', '.join(str(n) for n in truth.shape)})"
        )
    check_finite("truth", truth)
    return draws, truth


def _weights(weights, n_draws: int) -> np.ndarray:
    """Normalised per-draw weights (n_draws,); None gives equal weights."""
    if weights is None:
        return np.full(n_draws, 1.0 / n_draws)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (n_draws,):
        raise InputError(f"weights must have shape ({n_draws},), got {weights.shape}")
    check_finite("weights", weights)
    if (weights < 0).any() or not weights.sum() > 0:
        raise InputError("weights must be non-negative with a positive sum")
    return weights / weights.sum()


def _levels(levels) -> np.ndarray:
    levels = np.atleast_1d(np.asarray(levels, dtype=np.float64))
    if levels.ndim != 1 or levels.size == 0:
        raise InputError(f"levels must be a non-empty 1-D sequence, got shape {levels.shape}")
    check_finite("levels", levels)
    if (levels < 0).any() or (levels > 1).any():
        raise InputError("levels must lie in [0, 1]")
    return levels


# ----------------------------------------------------------------------------- accuracy


def psnr(estimate, truth) -> float:
    """Peak signal-to-noise ratio in dB with the data range fixed to 1.

    Returns ``inf`` for identical images.
    """
    estimate, truth = _image_pair(estimate, truth)
    mse = float(np.mean((estimate - truth) ** 2))
    if mse == 0.0:
        return math.inf
    return float(10.0 * np.log10(1.0 / mse))


def ssim(estimate, truth) -> float:
    """Structural similarity (scikit-image, ``data_range = 1``)."""
    from skimage.metrics import structural_similarity

    estimate, truth = _image_pair(estimate, truth)
    try:
        return float(structural_similarity(estimate, truth, data_range=1.0))
    except ValueError as err:
        raise InputError(f"cannot compute SSIM for shape {truth.shape}: {err}") from err


# ----------------------------------------------------------------------------- predictive


def support_masks(truth, air_level: float = 0.0) -> dict[str, np.ndarray]:
    """Boolean masks of the pixel sets of :data:`SUPPORTS`: object = truth > ``air_level``."""
    truth = np.asarray(truth, dtype=np.float64)
    obj = truth > air_level
    return {"object": obj, "background": ~obj, "all": np.ones_like(obj)}


def predictive_moments(draws, weights=None) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel predictive mean and variance of the (weighted) draws, ``ddof = 0``."""
    draws = _draws(draws)
    w = _weights(weights, draws.shape[0])
    mean = np.tensordot(w, draws, axes=1)
    var = np.tensordot(w, (draws - mean) ** 2, axes=1)
    return mean, var


def _nll_pixels(mean, var, truth, eps: float) -> np.ndarray:
    v = var + eps
    if (v <= 0).any():
        raise InputError("nll needs eps > 0 when some pixel has zero predictive variance")
    return 0.5 * np.log(2.0 * np.pi * v) + 0.5 * (truth - mean) ** 2 / v


def nll(draws, truth, eps: float = EPS, weights=None) -> float:
    """Gaussian negative log likelihood of ``truth`` under the draws' moments, pixel mean.

    ``0.5 log(2 pi (s^2 + eps)) + 0.5 (x - m)^2 / (s^2 + eps)`` averaged over pixels.
    """
    draws, truth = _draws_truth(draws, truth)
    if not eps >= 0:
        raise InputError(f"eps must be non-negative, got {eps}")
    mean, var = predictive_moments(draws, weights)
    return float(np.mean(_nll_pixels(mean, var, truth, eps)))


def pit_interval(draws, truth, weights=None) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the range [lo, hi] of the randomised PIT (see the module notes).

    The truth is one more draw of weight 1/S; ``hi - lo >= 1 / (S + 1)``.
    """
    draws, truth = _draws_truth(draws, truth)
    w = _weights(weights, draws.shape[0])
    flat = draws.reshape(draws.shape[0], -1)
    t = truth.reshape(-1)
    below = w @ (flat < t)
    tied = w @ (flat == t)
    w0 = 1.0 / draws.shape[0]
    lo = below / (1.0 + w0)
    hi = (below + tied + w0) / (1.0 + w0)
    return lo.reshape(truth.shape), hi.reshape(truth.shape)


def pit_cdf(lo, hi, grid) -> np.ndarray:
    """The expected empirical CDF of the randomised PIT values at ``grid`` points.

    ``lo``, ``hi`` from :func:`pit_interval` (any shape, flattened); returns (G,).
    """
    lo = np.asarray(lo, dtype=np.float64).reshape(1, -1)
    hi = np.asarray(hi, dtype=np.float64).reshape(1, -1)
    g = np.asarray(grid, dtype=np.float64).reshape(-1, 1)
    return np.clip((g - lo) / (hi - lo), 0.0, 1.0).mean(axis=1)


def _central_coverage(lo, hi, levels: np.ndarray) -> np.ndarray:
    """Coverage per level from PIT ranges: G(0.5 + q/2) - G(0.5 - q/2)."""
    return pit_cdf(lo, hi, 0.5 + levels / 2.0) - pit_cdf(lo, hi, 0.5 - levels / 2.0)


def coverage_curve(draws, truth, levels: Sequence[float] | np.ndarray = LEVELS,
                   weights=None) -> np.ndarray:
    """Coverage at each level (the reliability curve), shape (L,)."""
    levels = _levels(levels)
    return _central_coverage(*pit_interval(draws, truth, weights), levels)


def coverage(draws, truth, q: float, weights=None) -> float:
    """Share of pixels whose truth lies in the central ``q``-interval of the predictive."""
    return float(coverage_curve(draws, truth, [q], weights)[0])


def tail_coverage(draws, truth, q: float, weights=None) -> tuple[float, float]:
    """One-sided coverage at level ``q``: shares of pixels with the truth below and above
    the central ``q``-interval; each is (1 - q) / 2 when calibrated."""
    q = float(_levels([q])[0])
    cdf = pit_cdf(*pit_interval(draws, truth, weights), [0.5 - q / 2.0, 0.5 + q / 2.0])
    return float(cdf[0]), float(1.0 - cdf[1])


def ece(draws, truth, levels: Sequence[float] | np.ndarray = LEVELS, weights=None) -> float:
    """Expected calibration error: mean over levels of |coverage(q) - q|.

    With the default 20 levels this is sum |coverage(q) - q| * 0.05.
    """
    levels = _levels(levels)
    return float(np.mean(np.abs(coverage_curve(draws, truth, levels, weights) - levels)))


def pit_error(draws, truth, weights=None, grid=PIT_GRID) -> float:
    """Mean |G(g) - g| over ``grid``, G the CDF of the pixels' randomised PIT values."""
    grid = np.asarray(grid, dtype=np.float64)
    return float(np.mean(np.abs(pit_cdf(*pit_interval(draws, truth, weights), grid) - grid)))


def pit_histogram(draws, truth, bins: int = 10, weights=None, mask=None) -> np.ndarray:
    """Share of the pixels' PIT mass in each of ``bins`` equal bins on [0, 1] (sums to 1;
    1 / bins each when calibrated). ``mask`` restricts the pixels (a boolean image)."""
    lo, hi = pit_interval(draws, truth, weights)
    if mask is not None:
        lo, hi = lo[mask], hi[mask]
    return np.diff(pit_cdf(lo, hi, np.linspace(0.0, 1.0, bins + 1)))


def crps(draws, truth, weights=None) -> float:
    """Mean CRPS over pixels of the (weighted) empirical predictive (``scoringrules``)."""
    draws, truth = _draws_truth(draws, truth)
    w = _weights(weights, draws.shape[0])
    return float(np.mean(_crps_pixels(draws.reshape(draws.shape[0], -1), truth.reshape(-1), w)))


def _crps_pixels(flat: np.ndarray, t: np.ndarray, w: np.ndarray) -> np.ndarray:
    import scoringrules

    ens_w = np.broadcast_to(w[:, None], flat.shape)
    return np.asarray(scoringrules.crps_ensemble(t, flat, m_axis=0, ens_w=ens_w,
                                                 estimator="int", backend="numpy"))


def quantiles(flat: np.ndarray, probs: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Quantiles (len(probs), P) of the weighted draws ``flat`` (S, P) with weights ``w``
    (S,) at ``probs``; equal weights give ``np.quantile``
    (linear interpolation), other weights interpolate at the draws' mid-weight points."""
    if np.allclose(w, w[0]):
        return np.quantile(flat, probs, axis=0)
    order = np.argsort(flat, axis=0)
    values = np.take_along_axis(flat, order, axis=0)
    ws = w[order]
    position = np.cumsum(ws, axis=0) - ws / 2.0  # (S, P), increasing per pixel
    out = np.empty((probs.size, flat.shape[1]))
    cols = np.arange(flat.shape[1])
    for i, p in enumerate(probs):
        upper = np.clip((position < p).sum(axis=0), 1, flat.shape[0] - 1)
        x0, x1 = position[upper - 1, cols], position[upper, cols]
        frac = np.clip((p - x0) / np.where(x1 > x0, x1 - x0, 1.0), 0.0, 1.0)
        out[i] = values[upper - 1, cols] + frac * (values[upper, cols] - values[upper - 1, cols])
    return out


def paper_delta_ece(draws, truth, deltas: Sequence[float] | np.ndarray = PAPER_DELTAS,
                    levels: Sequence[float] | np.ndarray = LEVELS, weights=None,
                    return_delta: bool = False) -> float | tuple[float, float]:
    """The authors' ECE: the minimum over ``deltas`` of the ECE of intervals widened by
    ``delta`` on each side, with the paper's interval rule (interpolated empirical
    quantiles 0.5 -/+ q/2, bounds inclusive).

    The authors' sigmoid outputs never equal the truth; where ours do (air at exactly 0
    under a clipped head), the interval rule would count the pixel covered even at q = 0.
    Such tied pixels count instead with the share of their PIT range [F(x-), F(x)] inside
    [0.5 - q/2, 0.5 + q/2] (the randomised PIT), which no widening changes.

    WARNING: this TUNES THE INTERVALS ON THE GROUND TRUTH. The widening ``delta`` is
    picked to minimise the calibration error against the very truth the score is
    computed on, so the result is optimistic and is not a calibration score. It exists
    only to compare like for like with the paper's Table 1; report :func:`ece`
    otherwise. With ``return_delta`` the chosen delta is returned as well.
    """
    draws, truth = _draws_truth(draws, truth)
    levels = _levels(levels)
    w = _weights(weights, draws.shape[0])
    deltas = np.atleast_1d(np.asarray(deltas, dtype=np.float64))
    if deltas.ndim != 1 or deltas.size == 0:
        raise InputError("deltas must be a non-empty 1-D sequence")
    check_finite("deltas", deltas)
    if (deltas < 0).any():
        raise InputError("deltas must be non-negative")
    flat = draws.reshape(draws.shape[0], -1)
    t = truth.reshape(-1)
    below, upto = w @ (flat < t), w @ (flat <= t)
    tied = upto > below
    lo_q, hi_q = 0.5 - levels[:, None] / 2.0, 0.5 + levels[:, None] / 2.0
    overlap = np.clip(np.minimum(hi_q, upto[tied]) - np.maximum(lo_q, below[tied]), 0.0, None)
    tied_covered = (overlap / (upto[tied] - below[tied])).sum(axis=1)  # (L,)
    untied, tu = flat[:, ~tied], t[~tied][None]
    bounds = quantiles(untied, np.concatenate([0.5 - levels / 2.0, 0.5 + levels / 2.0]), w)
    lo, hi = bounds[: levels.size], bounds[levels.size:]
    excess = np.sort(np.maximum(np.maximum(lo - tu, tu - hi), 0.0), axis=1)  # (L, P_untied)
    # coverage(level, delta) = (untied excesses <= delta + tied shares) / pixels
    counts = np.stack([np.searchsorted(row, deltas, side="right") for row in excess])
    curves = (counts + tied_covered[:, None]) / t.size  # (L, K)
    errors = np.mean(np.abs(curves - levels[:, None]), axis=0)  # (K,)
    best = int(np.argmin(errors))
    if return_delta:
        return float(errors[best]), float(deltas[best])
    return float(errors[best])


def coverage_map(draws, truth, weights=None) -> np.ndarray:
    """Per-pixel standardised error |x - m| / s (s = predictive std, ``ddof = 0``).

    Where s == 0 the value is ``inf`` if x != m and 0 if x == m.
    """
    draws, truth = _draws_truth(draws, truth)
    mean, var = predictive_moments(draws, weights)
    std = np.sqrt(var)
    err = np.abs(truth - mean)
    out = np.empty_like(err)
    zero = std == 0
    np.divide(err, std, out=out, where=~zero)
    out[zero] = np.where(err[zero] == 0, 0.0, np.inf)
    return out


# ----------------------------------------------------------------------------- all at once


def calibration(draws, truth, weights=None, mask=None) -> dict[str, float]:
    """Every calibration figure of :data:`METRICS` on the pixels of ``mask`` (default all).

    Keys ``crps`` and, with at least two draws, ``nll``, ``ece``, ``pit_error``,
    ``coverage_50``, ``coverage_90``, ``below_90``, ``above_90`` and ``tied`` (share of
    pixels whose truth equals a draw). An empty ``mask`` gives NaN everywhere.
    """
    draws, truth = _draws_truth(draws, truth)
    w = _weights(weights, draws.shape[0])
    flat = draws.reshape(draws.shape[0], -1)
    t = truth.reshape(-1)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool).reshape(-1)
        if mask.size != t.size:
            raise InputError(f"mask has {mask.size} pixels, truth {t.size}")
        flat, t = flat[:, mask], t[mask]
    keys = [m.name for m in METRICS.values() if m.per_support
            and (draws.shape[0] >= 2 or not m.needs_draws)]
    if t.size == 0:
        return dict.fromkeys(keys, math.nan)
    out = {"crps": float(np.mean(_crps_pixels(flat, t, w)))}
    if draws.shape[0] < 2:
        return out
    mean, var = predictive_moments(flat, w)
    lo, hi = pit_interval(flat, t, w)
    cdf = pit_cdf(lo, hi, np.concatenate([0.5 - LEVELS / 2.0, 0.5 + LEVELS / 2.0,
                                          [0.25, 0.75, 0.05, 0.95], PIT_GRID]))
    n = LEVELS.size
    curve = cdf[n: 2 * n] - cdf[:n]
    out |= {
        "nll": float(np.mean(_nll_pixels(mean, var, t, EPS))),
        "ece": float(np.mean(np.abs(curve - LEVELS))),
        "pit_error": float(np.mean(np.abs(cdf[2 * n + 4:] - PIT_GRID))),
        "coverage_50": float(cdf[2 * n + 1] - cdf[2 * n]),
        "coverage_90": float(cdf[2 * n + 3] - cdf[2 * n + 2]),
        "below_90": float(cdf[2 * n + 2]),
        "above_90": float(1.0 - cdf[2 * n + 3]),
        "tied": float(np.mean((flat == t).any(axis=0))),
    }
    return out


def score(idata, truth=None) -> dict:
    """Score an InferenceData: PSNR and SSIM of the predictive mean, and every
    calibration figure on every pixel set of :data:`SUPPORTS` (keys ``NAME_SUPPORT``,
    e.g. ``ece_object``; ``crps_*`` for one draw too, the rest with >= 2 draws).

    Reads only the InferenceData: the pooled draws of ``posterior_predictive.image``
    over all chains with their weights (:func:`bayes_inr.posterior.draw_weights`:
    ensemble members 1/K each), ``constant_data.ground_truth`` unless ``truth`` is
    given, and its air level (:func:`bayes_inr.posterior.air_level`). Also returns
    ``method``, ``n_draws``, ``air_level`` and ``object_share`` (share of object pixels).
    """
    from ..posterior import air_level, draw_weights, image_draws, run_attrs

    draws = image_draws(idata)
    weights = draw_weights(idata)
    if truth is None:
        constant = getattr(idata, "constant_data", None)
        if constant is None or "ground_truth" not in constant:
            raise InputError(
                "cannot score: the InferenceData has no ground truth "
                "(constant_data.ground_truth) and none was given"
            )
        truth = constant["ground_truth"].values
    draws, truth = _draws_truth(draws, truth)
    mean, _ = predictive_moments(draws, weights)
    level = air_level(idata)
    masks = support_masks(truth, level)
    result: dict = {
        "method": run_attrs(idata).get("method"),
        "n_draws": int(draws.shape[0]),
        "air_level": level,
        "psnr": psnr(mean, truth),
        "ssim": ssim(mean, truth),
        "object_share": float(masks["object"].mean()),
    }
    for support in SUPPORTS:
        mask = None if support == "all" else masks[support]
        for key, value in calibration(draws, truth, weights, mask).items():
            result[f"{key}_{support}"] = value
    return result


# ----------------------------------------------------------------------------- tables


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return "-"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        # three decimals, or three significant digits below 0.1 (a CRPS of 0.0103, a TV
        # weight of 5.48e-4 in a sweep's ranking), so that small values stay readable
        return f"{value:.3g}" if 0 < abs(value) < 0.1 else f"{value:.3f}"
    return str(value)


SUMMARY_COLUMNS = ("method", "n_draws", *(column for column in SUMMARY
                                          if not column.startswith(("below", "above", "tied"))))
"""The columns of a one-line-per-run score table on a terminal: :data:`SUMMARY` without the
one-sided coverages and the tied share (which :func:`calibration_table` shows)."""


def score_table(rows: list[dict], columns: Sequence[str] | None = None) -> str:
    """Fixed-width text table of :func:`score` dicts; NaN, None and missing show as '-'.

    Floats are shown with three decimals (three significant digits below 0.1), text
    left-aligned, numbers right-aligned.
    Columns default to :data:`SUMMARY_COLUMNS` present in the rows, then any other
    keys that are not per-support scores nor the pixel sets' definition (``object_share``,
    ``air_level``), in order of first appearance.
    """
    if columns is None:
        seen: list[str] = []
        for row in rows:
            for key in row:
                if key not in seen:
                    seen.append(key)
        per_support = {f"{m.name}_{s}" for m in METRICS.values() if m.per_support
                       for s in SUPPORTS} | {"object_share", "air_level"}
        columns = [c for c in SUMMARY_COLUMNS if c in seen] + [
            c for c in seen if c not in SUMMARY_COLUMNS and c not in per_support
        ]
    columns = list(columns)
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    numeric = [
        all(isinstance(row.get(c), (int, float, np.number)) or row.get(c) is None
            for row in rows)
        for c in columns
    ]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]

    def fmt(values: list[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    lines = [fmt(columns), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in cells]
    return "\n".join(lines)


def calibration_table(scores: dict) -> str:
    """The calibration figures of one :func:`score` dict, one row per pixel set (object
    first), with the share of pixels in each set."""
    share = scores.get("object_share", math.nan)
    shares = {"object": share, "background": 1.0 - share, "all": 1.0}
    names = [m.name for m in METRICS.values() if m.per_support]
    rows = [{"pixels": support, "share": shares[support]}
            | {name: scores.get(f"{name}_{support}") for name in names}
            for support in SUPPORTS]
    return score_table(rows, ["pixels", "share", *names])
