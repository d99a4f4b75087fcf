"""Image-quality and calibration metrics (numpy only; images in [0, 1]).

Definitions, shared by every method and baseline (see ``DESIGN.md``):

- PSNR = 10 log10(1 / MSE), data range fixed to 1 (not the image maximum).
- SSIM: scikit-image with ``data_range = 1``.
- Predictive mean ``m`` and variance ``s^2`` per pixel from the draws; the variance
  uses ``ddof = 0`` (the plug-in moment of the draws).
- NLL = mean over pixels of 0.5 log(2 pi (s^2 + eps)) + 0.5 (x - m)^2 / (s^2 + eps),
  with ``eps = EPS = 1e-6``.
- Coverage at level q: the fraction of pixels whose true value lies in the central
  q-interval of that pixel's draws, with bounds the empirical quantiles at
  0.5 - q/2 and 0.5 + q/2 (``np.quantile``, linear interpolation; both bounds
  inclusive). q = 0 gives the interval [median, median].
- Ties: where the true value equals some of the draws exactly (a predictive with an
  atom, such as air at exactly 0 under a clipped head), the pixel's PIT is not one
  number but the interval [F(x-), F(x)] (fractions of draws below and not above x).
  Such a pixel counts as covered with the fraction of that interval lying in
  [0.5 - q/2, 0.5 + q/2]: the expectation of the randomised PIT (Czado, Gneiting and
  Held 2009). An atom at the truth is then calibrated at every level, where the
  interval rule would count it covered even at q = 0. Without ties (continuous
  draws) the rule above is unchanged.
- ECE = mean over the levels of |coverage(q) - q|; with the default 20 levels
  0, 0.05, ..., 0.95 this is the sum of |coverage(q) - q| * 0.05.
- Coverage map: per-pixel |x - m| / s.

``draws`` arrays hold S draws on axis 0: shape (S, N, N), or (S, ...) in general,
and ``truth`` has the shape of one draw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .errors import InputError, check_finite

EPS = 1e-6
"""Variance floor added to s^2 in the NLL."""

LEVELS = np.arange(20) * 0.05
"""Central-interval levels 0, 0.05, ..., 0.95 used by the reliability curve and ECE."""

PAPER_DELTAS = np.linspace(0.0, 0.1, 101)
"""Default widening grid for :func:`paper_delta_ece` (image units, step 0.001).

This grid is this package's choice; it starts at 0, so the tuned score is never
above the honest one.
"""


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


def predictive_moments(draws) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel predictive mean and variance of the draws (variance with ``ddof = 0``)."""
    draws = _draws(draws)
    return draws.mean(axis=0), draws.var(axis=0, ddof=0)


def nll(draws, truth, eps: float = EPS) -> float:
    """Gaussian negative log likelihood of ``truth`` under the draws' moments, pixel mean.

    ``0.5 log(2 pi (s^2 + eps)) + 0.5 (x - m)^2 / (s^2 + eps)`` averaged over pixels.
    """
    draws, truth = _draws_truth(draws, truth)
    if not eps >= 0:
        raise InputError(f"eps must be non-negative, got {eps}")
    mean, var = draws.mean(axis=0), draws.var(axis=0, ddof=0)
    v = var + eps
    if (v <= 0).any():
        raise InputError("nll needs eps > 0 when some pixel has zero predictive variance")
    return float(np.mean(0.5 * np.log(2.0 * np.pi * v) + 0.5 * (truth - mean) ** 2 / v))


def _excess(draws: np.ndarray, truth: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Per level and pixel, how far ``truth`` lies outside the central interval (0 inside).

    Shape (L, P) for draws (S, P), truth (P,). ``truth`` lies inside the interval widened
    by ``delta`` exactly when the excess is ``<= delta``. All quantiles come from one
    ``np.quantile`` call.
    """
    n_levels = levels.size
    probs = np.concatenate([0.5 - levels / 2.0, 0.5 + levels / 2.0])
    bounds = np.quantile(draws, probs, axis=0)  # (2L, P)
    lo, hi = bounds[:n_levels], bounds[n_levels:]
    t = truth.reshape(1, -1)
    return np.maximum(np.maximum(lo - t, t - hi), 0.0)


def _coverage_parts(draws: np.ndarray, truth: np.ndarray, levels: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, int]:
    """The pieces of the coverage curve: the excesses (L, P_untied) of the pixels whose
    truth equals no draw, the summed fractional coverage (L,) of the tied pixels (see the
    module notes on ties), and the number of pixels."""
    flat = draws.reshape(draws.shape[0], -1)
    t = truth.reshape(-1)
    below = (flat < t).mean(axis=0)
    upto = (flat <= t).mean(axis=0)
    tied = upto > below
    lo, hi = 0.5 - levels[:, None] / 2.0, 0.5 + levels[:, None] / 2.0
    overlap = np.clip(np.minimum(hi, upto[tied]) - np.maximum(lo, below[tied]), 0.0, None)
    tied_sum = (overlap / (upto[tied] - below[tied])).sum(axis=1)
    return _excess(flat[:, ~tied], t[~tied], levels), tied_sum, t.size


def coverage_curve(draws, truth, levels: Sequence[float] | np.ndarray = LEVELS,
                   widen: float | None = None) -> np.ndarray:
    """Coverage at each level (the reliability curve), shape (L,).

    ``widen`` widens every interval by a fixed amount on each side (bounds
    ``lo - widen``, ``hi + widen``; tied pixels keep their fractional coverage); see
    :func:`ece` for why that is not a fair score.
    """
    draws, truth = _draws_truth(draws, truth)
    levels = _levels(levels)
    excess, tied_sum, n_pixels = _coverage_parts(draws, truth, levels)
    return ((excess <= _widen(widen)).sum(axis=1) + tied_sum) / n_pixels


def coverage(draws, truth, q: float) -> float:
    """Fraction of pixels whose true value lies in the central ``q``-interval of the draws."""
    return float(coverage_curve(draws, truth, [q])[0])


def _widen(widen) -> float:
    if widen is None:
        return 0.0
    widen = float(widen)
    if not (np.isfinite(widen) and widen >= 0):
        raise InputError(f"widen must be a finite non-negative number, got {widen}")
    return widen


def ece(draws, truth, levels: Sequence[float] | np.ndarray = LEVELS,
        widen: float | None = None) -> float:
    """Expected calibration error: mean over levels of |coverage(q) - q|.

    With the default 20 levels this is sum |coverage(q) - q| * 0.05. This is the
    honest score when ``widen`` is None (the default).

    ``widen`` is the paper authors' variant and is NOT a fair calibration score:
    every interval is widened by a fixed ``widen`` on each side
    (``lo - widen``, ``hi + widen``) before the coverage is counted. A widening
    chosen by looking at the ground truth (see :func:`paper_delta_ece`) tunes the
    uncertainty on the very pixels it is scored on.
    """
    levels = _levels(levels)
    curve = coverage_curve(draws, truth, levels, widen=widen)
    return float(np.mean(np.abs(curve - levels)))


def paper_delta_ece(draws, truth, deltas: Sequence[float] | np.ndarray = PAPER_DELTAS,
                    levels: Sequence[float] | np.ndarray = LEVELS,
                    return_delta: bool = False) -> float | tuple[float, float]:
    """The authors' ECE: the minimum over ``deltas`` of ``ece(..., widen=delta)``.

    WARNING: this TUNES THE INTERVALS ON THE GROUND TRUTH. The widening ``delta`` is
    picked to minimise the calibration error against the very truth the score is
    computed on, so the result is optimistic and is not a calibration score. It exists
    only to compare like for like with the paper's Table 1; report :func:`ece`
    otherwise. With ``return_delta`` the chosen delta is returned as well.
    """
    draws, truth = _draws_truth(draws, truth)
    levels = _levels(levels)
    deltas = np.atleast_1d(np.asarray(deltas, dtype=np.float64))
    if deltas.ndim != 1 or deltas.size == 0:
        raise InputError("deltas must be a non-empty 1-D sequence")
    check_finite("deltas", deltas)
    if (deltas < 0).any():
        raise InputError("deltas must be non-negative")
    excess, tied_sum, n_pixels = _coverage_parts(draws, truth, levels)
    excess = np.sort(excess, axis=1)  # (L, P_untied)
    # coverage(level, delta) = (untied excesses <= delta + tied fractions) / pixels
    counts = np.stack([np.searchsorted(row, deltas, side="right") for row in excess])
    curves = (counts + tied_sum[:, None]) / n_pixels  # (L, K)
    errors = np.mean(np.abs(curves - levels[:, None]), axis=0)  # (K,)
    best = int(np.argmin(errors))
    if return_delta:
        return float(errors[best]), float(deltas[best])
    return float(errors[best])


def coverage_map(draws, truth) -> np.ndarray:
    """Per-pixel standardised error |x - m| / s (s = predictive std, ``ddof = 0``).

    Where s == 0 the value is ``inf`` if x != m and 0 if x == m.
    """
    draws, truth = _draws_truth(draws, truth)
    mean, std = draws.mean(axis=0), draws.std(axis=0, ddof=0)
    err = np.abs(truth - mean)
    out = np.empty_like(err)
    zero = std == 0
    np.divide(err, std, out=out, where=~zero)
    out[zero] = np.where(err[zero] == 0, 0.0, np.inf)
    return out


# ----------------------------------------------------------------------------- InferenceData


def score(idata, truth=None) -> dict:
    """Score an InferenceData: PSNR and SSIM of the predictive mean, and with >= 2 draws
    NLL, ECE (honest) and coverage at 0.5 and 0.9.

    Reads only the InferenceData: the pooled draws of ``posterior_predictive.image``
    over all chains, and ``constant_data.ground_truth`` unless ``truth`` is given.
    Returns a dict with keys ``method``, ``n_draws``, ``psnr``, ``ssim`` and, with
    at least two draws, ``nll``, ``ece``, ``coverage_50``, ``coverage_90``.
    """
    from .posterior import image_draws

    draws = image_draws(idata)
    if truth is None:
        constant = getattr(idata, "constant_data", None)
        if constant is None or "ground_truth" not in constant:
            raise InputError(
                "cannot score: the InferenceData has no ground truth "
                "(constant_data.ground_truth) and none was given"
            )
        truth = constant["ground_truth"].values
    draws, truth = _draws_truth(draws, truth)
    mean = draws.mean(axis=0)
    attrs = idata.posterior_predictive.attrs
    result: dict = {
        "method": attrs.get("method"),
        "n_draws": int(draws.shape[0]),
        "psnr": psnr(mean, truth),
        "ssim": ssim(mean, truth),
    }
    if draws.shape[0] >= 2:
        curve = coverage_curve(draws, truth, np.concatenate([LEVELS, [0.5, 0.9]]))
        result["nll"] = nll(draws, truth)
        result["ece"] = float(np.mean(np.abs(curve[: LEVELS.size] - LEVELS)))
        result["coverage_50"] = float(curve[-2])
        result["coverage_90"] = float(curve[-1])
    return result


_COLUMN_ORDER = ("method", "n_draws", "psnr", "ssim", "nll", "ece", "coverage_50",
                 "coverage_90")


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
        return f"{value:.3f}"
    return str(value)


def score_table(rows: list[dict], columns: Sequence[str] | None = None) -> str:
    """Fixed-width text table of :func:`score` dicts; NaN, None and missing show as '-'.

    Floats are shown with three decimals, text left-aligned, numbers right-aligned.

    Columns default to the known score keys first, then any other keys in order of
    first appearance.
    """
    if columns is None:
        seen: list[str] = []
        for row in rows:
            for key in row:
                if key not in seen:
                    seen.append(key)
        columns = [c for c in _COLUMN_ORDER if c in seen] + [
            c for c in seen if c not in _COLUMN_ORDER
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
