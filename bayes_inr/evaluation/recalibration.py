"""Recalibration on validation: split-conformal intervals and a recalibrated predictive.

This replaces the authors' interval widening, which was tuned on the test ground truth.

**Fit.** From the validation runs of one method (one configuration) at one view count on
one dataset, pool the normalised residuals z = (x - m) / s over the validation **object**
pixels (true value x above the image's air level): m and s_draws^2 are the predictive mean
and variance of the pixel, the weighted moments of its draws
(:func:`bayes_inr.posterior.draw_weights`: ensemble members weigh 1/K each), and
s = sqrt(s_draws^2 + tau^2) with a **variance floor** tau^2 (:class:`Calibration`'s ``floor``),
one of two (``floor`` of :func:`calibrate`):

- ``"fit"`` (the default): tau^2 >= eps maximises the Gaussian likelihood of the pooled
  errors x - m under variances c^2 (s_draws^2 + tau^2), c^2 profiled out
  (:func:`fit_floor`). It stands for the error the draws do not spread over (a smooth
  basis's miss, a clipped head certain of a wrong value), which is about the same size
  wherever the draws agree: without it a pixel with tiny s_draws gets a huge z, and the
  quantiles of z, set by such pixels, stretch every other pixel's interval;
- ``"none"``: tau^2 = eps = ``metrics.EPS`` = 1e-6, the variance floor of the NLL, so s is
  the draws' own spread (a pixel whose draws all agree, s_draws = 0, gets s = 1e-3 instead
  of a division by zero).

The calibration file keeps the floor, the quantiles of z and the conformal multipliers of |z|
on a fixed level grid, and where the runs came from (:class:`Calibration`). Runs of the test
split are refused: their split is found by matching each run's ``data_hash`` against the
images of the benchmark file (:func:`benchmark_index`); a run that matches none is refused
unless the user vouches that it is a validation image.

**Split-conformal interval** at level q: m +/- k_q s, where k_q is the
ceil((n + 1) q)-th smallest |z| of the n calibration pixels, infinite when
ceil((n + 1) q) > n. Levels off the grid use the next grid level up (still valid, wider).

**Recalibrated predictive.** Per pixel m + s Z, in one of two forms (the calibration's
``predictive``):

- ``"residuals"``: Z distributed as the calibration's signed z (its quantile function: the
  Weibull plotting positions j / (n + 1) of the sorted z, interpolated), so it has the
  residuals' shape (skew, tails), not only their width. Its mean is m + s E[Z]: a bias of
  the validation images moves the image;
- ``"symmetric"``: Z symmetric about 0 with ``|Z|`` distributed as the conformal multipliers
  of ``|z|``: Z at level p is ``sign(2p - 1) k(|2p - 1|)``, k(q) = k_q below. Its mean is m,
  so the image is the method's own, and its central interval at level q is the
  split-conformal interval m +/- k_q s.

It is stored as S deterministic draws at the levels (i + 1) / (S + 1), i = 0..S-1, of Z: the
metrics rank the truth among the draws plus itself, and these levels make that rank exactly
uniform when Z is right (the midpoint levels (i + 0.5) / S would over-cover every level q by
about q / S). Every metric (PIT, ECE, coverage, CRPS, NLL) scores it unchanged.

**The guarantee.** Let z_1..z_n be the calibration scores and z_new = (x - m) / s that of a
new pixel. If (z_1, ..., z_n, z_new) are exchangeable, then

    q <= P(x in [m - k_q s, m + k_q s]) <= q + 1 / (n + 1)

(the upper bound when the |z| have no ties), the probability taken jointly over the
calibration pixels and the new pixel. What it is and is not:

- *marginal*: over a random object pixel of a random new image drawn from the same
  distribution (same phantom generator or scanner, method, configuration, view count and
  noise, i.e. same dataset). It is not a per-pixel statement, and not conditional on the
  image, on the calibration set at hand, or on the intensity or region: edges may be
  under-covered while flat regions are over-covered, as long as they average to q;
- *object support only*: it holds for pixels whose true value is > 0, the set it was fitted
  on; applied to background or all pixels it promises nothing;
- *effective n*: pixels of one image are not exchangeable with each other across images:
  they share one reconstruction, their errors are spatially correlated, and the images
  differ. What is exchangeable is the images. The bound above with n = the pixel count
  holds exactly only when calibration and new pixels are exchangeable as pixels; for a
  pixel drawn uniformly at random from a new image exchangeable with the K calibration
  images it holds with the images as the units (Dunn, Wasserman and Ramdas 2022; Lee,
  Barber and Willett 2023): the multiplier ``unit="image"`` of :meth:`Calibration.multiplier`
  is the smallest t with (1 / (K + 1)) sum_j F_j(t) >= q, F_j the CDF of |z| on
  calibration image j, infinite when q > K / (K + 1). In practice: with 5 validation
  images the formally valid 90 % interval is unbounded, and the pixel-pooled k_q is an
  estimate of the right width whose error on a new image is set by how much the images'
  residual distributions differ (if every pixel of an image had the same |z|, the pooled
  k_0.9 of 5 images would cover only 5/6 of new images' pixels; tested), not by
  1 / (n + 1).

The recalibrated predictive's equal-tailed intervals share the same assumptions, up to the
interpolation of the stored quantiles (O(1 / n) and the grid step).

*Fitted floor*: the bound is exact for a score function fixed before the calibration pixels
are seen. A fitted floor is one number fitted on the same pixels, so with ``"fit"`` the bound
holds only approximately (one parameter on n pixels: an effect expected of order 1 / n, not
bounded here); ``"none"`` keeps it exact.

**Held out on validation.** Whether the images are exchangeable enough can be checked before
any test image is seen: with K >= 2 calibration images, each image j is scored (object ECE,
50 % and 90 % coverage, PIT error, exactly as the metrics score a recalibrated run) under the
calibration fitted on the other K - 1, floor included (:func:`held_out_scores`; the file's
``held_out``). Their mean estimates the recalibrated predictive's calibration on a new image
*like the validation images*; a test score much worse than it says the test images are not
like them.

One module although it is long: it is one method, whose fit, application and calibration
file share the level grid and the residual definitions above. The command line is
:mod:`bayes_inr.recalibration`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr
from scipy import optimize

from .. import __version__, posterior
from ..core import provenance
from ..core.atomic import atomic_path
from ..core.errors import InputError
from ..data.benchmark import SPLITS, benchmark_ids, benchmark_sample
from . import metrics

FORMAT = "bayes_inr.recalibration/1"
"""The ``format`` field of a calibration file."""

EPS = metrics.EPS
"""Variance floor: s = sqrt(s_draws^2 + EPS), as in the NLL."""

GRID_STEPS = 1000
LEVELS = np.arange(GRID_STEPS + 1) / GRID_STEPS
"""Levels 0, 0.001, ..., 1 at which a calibration stores its quantiles."""

DRAWS = 100
"""Default number of draws of a recalibrated predictive (Table 1's MCD and BBB store 100)."""

PREDICTIVES = ("residuals", "symmetric")
"""The two forms of the recalibrated predictive (see the module notes)."""

FLOORS = ("fit", "none")
"""How a calibration sets its variance floor tau^2 (see the module notes)."""

UNITS = ("pixel", "image")
"""What the conformal guarantee takes as exchangeable (see the module notes)."""

HELD_OUT = ("ece", "coverage_50", "coverage_90", "pit_error")
"""The object calibration figures of each image held out (:func:`held_out_scores`)."""

KEYS = ("method", "views", "shape", "config_hash", "members")
"""What a calibration's runs share and a run it is applied to must match: the predictive."""


# ----------------------------------------------------------------------------- numpy core


def moments(draws, weights=None, floor: float = EPS) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel predictive mean m and floored sd s = sqrt(var + floor) of weighted draws."""
    mean, var = metrics.predictive_moments(draws, weights)
    return mean, np.sqrt(var + floor)


def object_errors(draws, truth, weights=None, air_level: float = 0.0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The errors x - m and draw variances s_draws^2 of the object pixels (truth above
    ``air_level``, :func:`bayes_inr.evaluation.metrics.support_masks`), flattened."""
    mean, var = metrics.predictive_moments(draws, weights)
    truth = np.asarray(truth, dtype=np.float64)
    if truth.shape != mean.shape:
        raise InputError(f"truth shape {truth.shape} does not match the draws' {mean.shape}")
    obj = metrics.support_masks(truth, air_level)["object"]
    return truth[obj] - mean[obj], var[obj]


def residuals(draws, truth, weights=None, air_level: float = 0.0, floor: float = EPS
              ) -> np.ndarray:
    """Normalised residuals z = (x - m) / s, s = sqrt(s_draws^2 + floor), of the object
    pixels (:func:`object_errors`), flattened."""
    error, var = object_errors(draws, truth, weights, air_level)
    return error / np.sqrt(var + floor)


def _check_errors(errors: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
    """Refuse calibration errors that are empty, unpaired, negative in variance or not finite."""
    if not errors:
        raise InputError("give at least one calibration image")
    for e, v in errors:
        e, v = np.asarray(e, dtype=np.float64), np.asarray(v, dtype=np.float64)
        if e.size == 0 or e.shape != v.shape:
            raise InputError("the errors and variances must be of the same object pixels, "
                             "at least one per image")
        if not (np.isfinite(e).all() and np.isfinite(v).all() and (v >= 0).all()):
            raise InputError("the errors and variances must be finite, the variances >= 0")


def fit_floor(errors: Sequence[tuple[np.ndarray, np.ndarray]]) -> float:
    """The variance floor tau^2 >= EPS that maximises the Gaussian likelihood of pooled
    errors e ~ Normal(0, c^2 (v + tau^2)), c^2 profiled out.

    With c^2 at its maximum mean(e^2 / (v + tau^2)), minus the mean log-likelihood is, up to
    constants, mean log(v + tau^2) + log mean(e^2 / (v + tau^2)): minimised over log tau^2 on
    a grid from EPS to 100 mean(e^2), then refined by bounded Brent around the best point.

    Parameters
    ----------
    errors : sequence of (e, v)
        Per calibration image, its object errors x - m and draw variances
        (:func:`object_errors`).
    """
    _check_errors(errors)
    e = np.concatenate([np.ravel(a) for a, _ in errors]).astype(np.float64)
    v = np.concatenate([np.ravel(b) for _, b in errors]).astype(np.float64)

    def objective(log_floor: float) -> float:
        total = v + math.exp(log_floor)
        return float(np.mean(np.log(total)) + math.log(np.mean(e**2 / total)))

    top = math.log(max(100.0 * float(np.mean(e**2)), 10.0 * EPS))
    grid = np.linspace(math.log(EPS), top, 61)
    values = [objective(u) for u in grid]
    best = int(np.argmin(values))
    if best == 0:
        return EPS
    lo, hi = grid[best - 1], grid[min(best + 1, grid.size - 1)]
    found = optimize.minimize_scalar(objective, bounds=(lo, hi), method="bounded")
    return float(math.exp(found.x)) if found.fun <= values[best] else float(np.exp(grid[best]))


def conformal_quantile(scores, q, weights=None) -> np.ndarray:
    """Split-conformal quantile of calibration scores.

    The smallest score t whose cumulative weight (scores <= t) reaches q, the new point
    holding the rest of the weight at +inf. Equal weights 1 / (n + 1) give the
    ceil((n + 1) q)-th smallest score, +inf when that rank exceeds n.

    Parameters
    ----------
    scores : array (..., n)
        Calibration scores (here |z|); leading axes are independent calibration sets.
    q : float or array (L,)
        Levels in [0, 1]; level 0 gives 0.
    weights : array (n,), optional
        Weight of each score, summing to at most 1 (default 1 / (n + 1) each; the image
        units of :func:`image_weights`).

    Returns
    -------
    array (...) for a scalar ``q``, else (..., L)
    """
    scores = np.asarray(scores, dtype=np.float64)
    levels = np.asarray(q, dtype=np.float64)
    n = scores.shape[-1]
    if n == 0:
        raise InputError("no calibration scores")
    w = np.full(n, 1.0 / (n + 1)) if weights is None else np.asarray(weights, np.float64)
    order = np.argsort(scores, axis=-1)
    ranked = np.take_along_axis(scores, order, axis=-1)
    cumulative = np.cumsum(w[order], axis=-1).reshape(-1, n)
    # how many cumulative weights fall short of q (a 1e-12 slack for the float sums)
    targets = np.atleast_1d(levels) - 1e-12
    rank = np.stack([np.searchsorted(c, targets) for c in cumulative]
                    ).reshape(*ranked.shape[:-1], targets.size)
    padded = np.concatenate([ranked, np.full((*ranked.shape[:-1], 1), np.inf)], axis=-1)
    out = np.take_along_axis(padded, rank, axis=-1)
    out = np.where(np.atleast_1d(levels) > 0, out, 0.0)
    return out[..., 0] if levels.ndim == 0 else out


def image_weights(counts: Sequence[int]) -> np.ndarray:
    """Weights of pooled pixels for the image-level guarantee: a pixel of calibration image
    j (of K, with counts[j] object pixels) weighs 1 / ((K + 1) counts[j])."""
    counts = np.asarray(counts, dtype=np.int64)
    return np.repeat(1.0 / ((counts.size + 1) * counts), counts)


@dataclass(frozen=True)
class Calibration:
    """A calibration: quantiles of the normalised residuals and where they came from.

    ``z_quantiles`` are the quantiles of the signed z at ``levels`` (Weibull plotting
    positions j / (n + 1), interpolated), ``abs_z`` the conformal multipliers k_q of |z| at
    ``levels`` with the pixels as units, ``abs_z_image`` with the images as units (see the
    module notes); +inf where unbounded. ``predictive`` is the form of the recalibrated
    predictive, one of :data:`PREDICTIVES` (files without it are ``"residuals"``). ``floor``
    is the variance floor tau^2 of s = sqrt(s_draws^2 + tau^2) (files without it: EPS).
    """

    levels: np.ndarray
    z_quantiles: np.ndarray
    abs_z: np.ndarray
    abs_z_image: np.ndarray
    n_pixels: int
    n_images: int
    n_zero_sd: int = 0
    """Calibration pixels whose draws all agree (s_draws = 0: s is sqrt(floor))."""
    predictive: str = "residuals"
    floor: float = EPS
    method: str | None = None
    views: int | None = None
    shape: tuple[int, ...] | None = None
    dataset: str | None = None
    split: str = "val"
    split_verified: bool = False
    config_hash: str | None = None
    members: int | None = None
    """Ensemble members of the calibrated runs (1: not an ensemble); None in files written
    before it was recorded, which then fit runs of any member count."""
    runs: tuple[dict, ...] = field(default=())
    held_out: tuple[dict, ...] = field(default=())
    """Per calibration image (in ``runs`` order), its object calibration figures under the
    calibration of the other images (:func:`held_out_scores`); empty with one image and in
    files written before it was recorded."""

    def __post_init__(self):
        if self.predictive not in PREDICTIVES:
            raise InputError(f"unknown recalibrated predictive {self.predictive!r}; choose one "
                             f"of {', '.join(PREDICTIVES)}")
        if not (math.isfinite(self.floor) and self.floor >= EPS):
            raise InputError(f"variance floor must be finite and at least {EPS:g}, got "
                             f"{self.floor}")

    @classmethod
    def from_errors(cls, errors: Sequence[tuple[np.ndarray, np.ndarray]], floor: str = "fit",
                    **about) -> Calibration:
        """A calibration from the object errors and draw variances of each calibration image
        (:func:`object_errors`), its variance floor set as ``floor`` says (:data:`FLOORS`)."""
        if floor not in FLOORS:
            raise InputError(f"unknown floor {floor!r}; choose one of {', '.join(FLOORS)}")
        _check_errors(errors)
        tau2 = fit_floor(errors) if floor == "fit" else EPS
        return cls.from_residuals([e / np.sqrt(v + tau2) for e, v in errors], floor=tau2,
                                  **about)

    @classmethod
    def from_residuals(cls, z_per_image: Sequence[np.ndarray], **about) -> Calibration:
        """A calibration from the object residuals of each calibration image."""
        counts = [int(np.size(z)) for z in z_per_image]
        if not counts or min(counts) == 0:
            raise InputError("every calibration image needs object pixels (true value above "
                             "its air level)")
        z = np.concatenate([np.ravel(v) for v in z_per_image]).astype(np.float64)
        if not np.isfinite(z).all():
            raise InputError("the normalised residuals hold non-finite values")
        return cls(levels=LEVELS, z_quantiles=np.quantile(z, LEVELS, method="weibull"),
                   abs_z=conformal_quantile(np.abs(z), LEVELS),
                   abs_z_image=conformal_quantile(np.abs(z), LEVELS, image_weights(counts)),
                   n_pixels=z.size, n_images=len(counts), **about)

    def held_out_mean(self) -> dict[str, float]:
        """The mean of :attr:`held_out` over the calibration images (empty if none)."""
        if not self.held_out:
            return {}
        return {key: float(np.mean([image[key] for image in self.held_out]))
                for key in HELD_OUT}

    def multiplier(self, q: float, unit: str = "pixel") -> float:
        """k_q: the conformal interval is m +/- k_q s; a level off the grid uses the next
        grid level up."""
        if unit not in UNITS:
            raise InputError(f"unknown unit {unit!r}; choose one of {', '.join(UNITS)}")
        if not 0 <= q <= 1:
            raise InputError(f"level q must lie in [0, 1], got {q}")
        index = int(np.searchsorted(self.levels, q - 1e-12, side="left"))
        return float((self.abs_z if unit == "pixel" else self.abs_z_image)[index])

    def z_at(self, p) -> np.ndarray:
        """The quantile function of the recalibrated predictive's Z at probabilities ``p``
        (interpolated; see the module notes for its two forms)."""
        p = np.asarray(p, dtype=np.float64)
        if self.predictive == "residuals":
            return np.interp(p, self.levels, self.z_quantiles)
        central = np.abs(2 * p - 1)
        if central.max(initial=0.0) > self.levels[np.isfinite(self.abs_z)][-1]:
            raise InputError(f"{self.n_pixels} calibration pixels bound no interval at level "
                             f"{central.max():.3f}: use fewer draws")
        return np.sign(2 * p - 1) * np.interp(central, self.levels, self.abs_z)

    def to_json(self) -> dict:
        """The calibration file's content (+inf stored as null)."""
        out = {"format": FORMAT} | asdict(self)
        for key in ("levels", "z_quantiles", "abs_z", "abs_z_image"):
            out[key] = [None if math.isinf(v) else float(v) for v in out[key]]
        out["shape"] = None if self.shape is None else list(self.shape)
        out["runs"] = list(self.runs)
        out["held_out"] = list(self.held_out)
        return out

    @classmethod
    def from_json(cls, data: dict) -> Calibration:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise InputError(f"not a calibration file (format {FORMAT!r} expected)")
        data = dict(data)
        data.pop("format")
        try:
            for key in ("levels", "z_quantiles", "abs_z", "abs_z_image"):
                data[key] = np.array([np.inf if v is None else v for v in data[key]],
                                     dtype=np.float64)
            if data["shape"] is not None:
                data["shape"] = tuple(data["shape"])
            data["runs"] = tuple(data["runs"])
            data["held_out"] = tuple(data.get("held_out", ()))
            if any(not isinstance(h, dict) or set(h) != set(HELD_OUT)
                   for h in data["held_out"]):
                raise ValueError(f"held_out entries must hold {', '.join(HELD_OUT)}")
            cal = cls(**data)
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(f"malformed calibration file: {err}") from None
        lengths = {v.size for v in (cal.levels, cal.z_quantiles, cal.abs_z, cal.abs_z_image)}
        if len(lengths) != 1 or cal.levels[0] != 0 or cal.levels[-1] != 1:
            raise InputError("malformed calibration file: quantile tables do not match its "
                             "levels 0..1")
        return cal


def recalibrated_draws(mean, sd, calibration: Calibration, n_draws: int = DRAWS
                       ) -> np.ndarray:
    """S = ``n_draws`` draws m + s Z_i of the recalibrated predictive, shape (S, *m.shape),
    Z_i the quantile of Z at level (i + 1) / (S + 1); ``sd`` floored with the calibration's
    floor (:func:`run_moments`)."""
    if n_draws < 2:
        raise InputError(f"a recalibrated predictive needs at least 2 draws, got {n_draws}")
    z = calibration.z_at((np.arange(n_draws) + 1.0) / (n_draws + 1.0))
    mean, sd = np.asarray(mean, np.float64), np.asarray(sd, np.float64)
    return mean[None] + sd[None] * z.reshape(-1, *([1] * mean.ndim))


def held_out_scores(errors: Sequence[tuple[np.ndarray, np.ndarray]],
                    predictive: str = "residuals", floor: str = "fit", n_draws: int = DRAWS
                    ) -> list[dict[str, float]]:
    """Leave one calibration image out: for each image j, the calibration figures
    :data:`HELD_OUT` of its object pixels under the recalibrated predictive (form
    ``predictive``, ``n_draws`` draws) calibrated on the other images, floor included.

    ``errors[j]`` holds image j's object errors x - m and draw variances
    (:func:`object_errors`). The figures are those
    :func:`bayes_inr.evaluation.metrics.calibration` gives the recalibrated run of image j:
    its draws m + s Z_i rank the truth x as the Z_i rank z = (x - m) / s, so the errors
    suffice. Needs at least 2 images.
    """
    if len(errors) < 2:
        raise InputError("leaving one image out needs at least 2 calibration images")
    levels = (np.arange(n_draws) + 1.0) / (n_draws + 1.0)
    out = []
    for j, (error, var) in enumerate(errors):
        cal = Calibration.from_errors([pair for i, pair in enumerate(errors) if i != j],
                                      floor, predictive=predictive)
        z = np.ravel(error / np.sqrt(var + cal.floor)).astype(np.float64)
        draws = cal.z_at(levels)
        figures = metrics.calibration(np.broadcast_to(draws[:, None], (n_draws, z.size)), z)
        out.append({key: figures[key] for key in HELD_OUT})
    return out


def interval(mean, sd, calibration: Calibration, q: float, unit: str = "pixel"
             ) -> tuple[np.ndarray, np.ndarray]:
    """Bounds m -/+ k_q s of the split-conformal interval at level ``q`` (see the module
    notes for its guarantee); ``mean, sd`` from :func:`moments` or :func:`run_moments` with
    the calibration's floor."""
    k = calibration.multiplier(q, unit)
    mean, sd = np.asarray(mean, np.float64), np.asarray(sd, np.float64)
    return mean - k * sd, mean + k * sd


# ----------------------------------------------------------------------------- runs


def run_moments(idata, floor: float = EPS) -> tuple[np.ndarray, np.ndarray]:
    """:func:`moments` of a run's pooled draws with their weights (ensembles 1/K each)."""
    return moments(posterior.image_draws(idata), posterior.draw_weights(idata), floor)


def _truth(idata, name: str) -> np.ndarray:
    constant = getattr(idata, "constant_data", None)
    if constant is None or "ground_truth" not in constant:
        raise InputError(f"{name} has no ground truth (constant_data.ground_truth)")
    return np.asarray(constant["ground_truth"].values, dtype=np.float64)


def run_about(idata, name: str) -> dict:
    """What a calibration must agree on, and the provenance of one run."""
    attrs = posterior.run_attrs(idata)
    return {"path": name, "method": attrs.get("method"),
            "views": int(idata.observed_data["sinogram"].sizes["angle"]),
            "shape": tuple(int(n) for n in idata.posterior_predictive["image"].shape[2:]),
            "config_hash": attrs.get("config_hash"), "members": _members(idata),
            "data_hash": attrs.get("data_hash"), "git_commit": attrs.get("git_commit")}


def _members(idata) -> int:
    """The run's ensemble members (1 for a run that is not an ensemble): a selection of an
    ensemble's first members keeps the whole job's config hash, but is another predictive."""
    pp = idata.posterior_predictive
    return int(pp["member"].size) if "member" in pp.coords else 1


def benchmark_index(dataset: xr.Dataset) -> dict[str, dict]:
    """Every image of a benchmark at every view count, keyed by the ``data_hash`` a run of
    it records: {hash: {"image_id", "views", "split"}}."""
    views = sorted(int(k.split("_")[1]) for k in dataset.data_vars if k.startswith("sinogram_"))
    split_of = {i: split for split in SPLITS for i in benchmark_ids(dataset, split)}
    index = {}
    for v in views:
        for image_id in benchmark_ids(dataset, "all"):
            sample = benchmark_sample(dataset, image_id, v)
            key = provenance.data_hash(sample.sinogram, sample.geometry.angles,
                                       sample.ground_truth)
            index[key] = {"image_id": image_id, "views": v, "split": split_of[image_id],
                          "air_level": sample.air_level}
    return index


def validation_split(about: dict, index: dict | None, vouch: bool) -> dict:
    """The benchmark entry of a run; refuses test-split runs and, unless ``vouch``, runs
    whose split cannot be established."""
    entry = (index or {}).get(about["data_hash"])
    if entry is not None:
        if entry["split"] != "val":
            raise InputError(f"{about['path']} is image {entry['image_id']} of the "
                             f"{entry['split']} split; calibrate on validation runs only")
        return entry | {"split_verified": True}
    if not vouch:
        where = ("its data hash matches no image of the --dataset benchmark" if index
                 else "no --dataset benchmark given")
        raise InputError(f"cannot establish the split of {about['path']} ({where}); pass "
                         "--dataset BENCHMARK.nc, or --vouch-validation if you know it is a "
                         "validation image")
    return {"split": "val", "split_verified": False}


def entry_air_level(entry: dict, idata) -> float:
    """The air level of a run's image: its benchmark's (``entry``, from
    :func:`validation_split`) where known, so that run files written before the level was
    recorded draw the same object, else the run's own."""
    return float(entry.get("air_level", posterior.air_level(idata)))


def calibrate(runs: Sequence, names: Sequence[str] | None = None, *,
              benchmark: xr.Dataset | None = None, dataset: str | None = None,
              vouch: bool = False, predictive: str = "residuals", floor: str = "fit"
              ) -> Calibration:
    """A :class:`Calibration` from validation runs of one method, configuration and view
    count.

    Parameters
    ----------
    runs : sequence of InferenceData
        Runs with ``constant_data.ground_truth``, each of another image.
    names : sequence of str, optional
        Their labels in messages and in the file (their paths).
    benchmark : xarray.Dataset, optional
        The benchmark they were made from: a run's split is that of the image whose
        ``data_hash`` it records (:func:`benchmark_index`); test-split runs are refused.
    dataset : str, optional
        The benchmark's name in the file (its path).
    vouch : bool
        Take runs whose split cannot be established as validation images (recorded with
        ``split_verified`` false) instead of refusing them.
    predictive : str
        The form of the recalibrated predictive, one of :data:`PREDICTIVES`.
    floor : str
        The variance floor, one of :data:`FLOORS`: fitted on the runs (:func:`fit_floor`)
        or the fixed EPS.

    Raises
    ------
    InputError
        Runs that differ in method, configuration, view count, image size or member count,
        repeat an image, lack a ground truth, belong to the test split, or (without
        ``vouch``) whose split is unknown.
    """
    names = [f"run {i}" for i in range(len(runs))] if names is None else list(names)
    if not runs or len(names) != len(runs):
        raise InputError("give at least one run (and one name per run)")
    index = None if benchmark is None else benchmark_index(benchmark)
    abouts = [run_about(idata, name) for idata, name in zip(runs, names, strict=True)]
    for key in KEYS:
        values = {str(a[key]) for a in abouts}
        if len(values) > 1:
            raise InputError(f"the runs differ in {key} ({', '.join(sorted(values))}); a "
                             "calibration is for one predictive: one method, configuration, "
                             "view count and member count")
    hashes = [a["data_hash"] for a in abouts]
    if len(set(hashes)) < len(hashes):
        raise InputError("two runs are of the same data (equal data_hash): each image once")
    if floor not in FLOORS:
        raise InputError(f"unknown floor {floor!r}; choose one of {', '.join(FLOORS)}")
    records, errors, zero = [], [], 0
    for idata, about in zip(runs, abouts, strict=True):
        entry = validation_split(about, index, vouch)
        level = entry_air_level(entry, idata)
        records.append(about | entry | {"air_level": level})
        draws, truth = posterior.image_draws(idata), _truth(idata, about["path"])
        errors.append(object_errors(draws, truth, posterior.draw_weights(idata), level))
        zero += int(((draws == draws[:1]).all(axis=0) & (truth > level)).sum())
    first = abouts[0]
    held_out = held_out_scores(errors, predictive, floor) if len(errors) > 1 else []
    return Calibration.from_errors(
        errors, floor, n_zero_sd=zero, predictive=predictive, method=first["method"],
        views=first["views"], shape=first["shape"], dataset=dataset, split="val",
        split_verified=all(r["split_verified"] for r in records),
        config_hash=first["config_hash"], members=first["members"],
        runs=tuple({k: v for k, v in r.items() if k != "shape"} for r in records),
        held_out=tuple(held_out))


# ----------------------------------------------------------------------------- files


def save_calibration(calibration: Calibration, path) -> Path:
    """Write the calibration as JSON (one field per line), atomically."""
    path = Path(path)
    content = calibration.to_json() | {
        "bayes_inr_version": str(__version__),
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    lines = [f" {json.dumps(key)}: {json.dumps(value)}" for key, value in content.items()]
    with atomic_path(path) as tmp:
        tmp.write_text("{\n" + ",\n".join(lines) + "\n}\n")  # one field per line
    return path


def load_calibration(path) -> tuple[Calibration, str]:
    """A calibration file and the SHA-256 of its bytes."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"calibration file {path} not found")
    raw = path.read_bytes()
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as err:
        raise InputError(f"calibration file {path} is not JSON: {err}") from None
    if isinstance(data, dict):
        for key in ("bayes_inr_version", "created_at"):
            data.pop(key, None)
    return Calibration.from_json(data), hashlib.sha256(raw).hexdigest()


def check_applicable(calibration: Calibration, idata, name: str = "the run") -> None:
    """Refuse a run of another method, configuration, view count, image size or ensemble
    member count than the calibration's, or one of its calibration images."""
    about = run_about(idata, name)
    for key in KEYS:
        if key == "members" and calibration.members is None:
            continue
        if about[key] != getattr(calibration, key):
            raise InputError(f"{name} has {key} {about[key]}, the calibration "
                             f"{getattr(calibration, key)}: it calibrates another predictive")
    if about["data_hash"] in {r.get("data_hash") for r in calibration.runs}:
        raise InputError(f"{name} is one of the calibration runs: score it on other images")


def apply(idata, calibration_path, n_draws: int = DRAWS):
    """A run's recalibrated predictive as a new InferenceData.

    Parameters
    ----------
    idata : InferenceData
        A run of the calibration's method, configuration and view count, not one of its
        calibration images (:func:`check_applicable`).
    calibration_path : path
        The calibration file (:func:`save_calibration`).
    n_draws : int
        Draws S of the recalibrated predictive.

    Returns
    -------
    InferenceData
        ``posterior_predictive.image``: S deterministic draws m + s Z_i in one chain
        (:func:`recalibrated_draws`); the run's sinogram, angles and ground truth; attributes
        ``method`` "METHOD+recal", ``config`` the run's plus a ``recalibration`` entry,
        ``calibration_file`` (absolute path), ``calibration_sha256`` and ``raw_config_hash``.
    """
    calibration, sha = load_calibration(calibration_path)
    check_applicable(calibration, idata)
    mean, sd = run_moments(idata, calibration.floor)
    attrs = posterior.run_attrs(idata)
    constant = getattr(idata, "constant_data", None)
    truth = (constant["ground_truth"].values
             if constant is not None and "ground_truth" in constant else None)
    source = {"calibration_file": str(Path(calibration_path).resolve()),
              "calibration_sha256": sha, "raw_config_hash": str(attrs.get("config_hash"))}
    out = posterior.build(
        recalibrated_draws(mean, sd, calibration, n_draws)[None],
        sinogram=idata.observed_data["sinogram"].values,
        angles=idata.observed_data["angle"].values, method=f"{attrs.get('method')}+recal",
        config=posterior.config(idata) | {"recalibration": source | {"draws": n_draws}},
        settings={"recalibration": source | {"draws": n_draws}}, ground_truth=truth,
        air_level=posterior.air_level(idata),
        device=attrs.get("device", "cpu"))
    out.attrs.update(source)
    for group in out.groups():
        getattr(out, group).attrs.update(source)
    return out


# ----------------------------------------------------------------------------- CLI
