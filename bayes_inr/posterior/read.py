"""Readers of a run's InferenceData: its image draws and their weights, its attributes and
configuration.
"""

from __future__ import annotations

import json
import warnings

import numpy as np

with warnings.catch_warnings():
    # arviz 0.23 announces its 1.0 refactor on import; the pinned API is used here.
    warnings.filterwarnings("ignore", message=".*ArviZ is undergoing", category=FutureWarning)
    import arviz as az

from ..core.errors import InputError


def image_draws(idata: az.InferenceData) -> np.ndarray:
    """Pooled image draws over all chains, shape (S, y, x), NaN padding dropped."""
    pp = getattr(idata, "posterior_predictive", None)
    if pp is None or "image" not in pp:
        raise InputError("the InferenceData has no posterior_predictive.image")
    image = pp["image"]
    if set(image.dims) != {"chain", "draw", "y", "x"}:
        raise InputError(f"posterior_predictive.image has dims {image.dims}, "
                         "expected (chain, draw, y, x)")
    values = np.asarray(image.transpose("chain", "draw", "y", "x").values)
    if "n_draws" in pp:
        counts = np.asarray(pp["n_draws"].values).astype(np.int64)
        if counts.shape != (values.shape[0],) or (counts < 1).any() or (
            counts > values.shape[1]
        ).any():
            raise InputError(f"posterior_predictive.n_draws {counts.tolist()} does not fit "
                             f"the image's {values.shape[:2]} (chain, draw)")
        return np.concatenate([values[c, :n] for c, n in enumerate(counts)], axis=0)
    return values.reshape(-1, *values.shape[2:])


def draw_weights(idata: az.InferenceData) -> np.ndarray:
    """Per-draw weights (S,) of :func:`image_draws`, summing to 1.

    An ensemble (a ``member`` coordinate on the chain dimension) is an equally weighted
    mixture of its members: member k weighs 1/K whatever its draw count, split evenly
    over its draws, so a one-draw MAP member beside a 100-draw MCD member weighs 1/2.
    Chains of one sampler (no ``member`` coordinate) pool their draws with equal weights.
    A weighted mixture (:mod:`bayes_inr.posterior.mixture`) states each chain's weight in
    the ``member_weight`` coordinate, spread evenly over that chain's draws.
    """
    pp = idata.posterior_predictive
    counts = _draw_counts(idata)
    if "member_weight" in pp.coords:
        chain = np.asarray(pp["member_weight"].values, dtype=np.float64)
        return np.concatenate([np.full(n, w / n) for w, n in zip(chain, counts, strict=True)])
    if "member" in pp.coords:
        return np.concatenate([np.full(n, 1.0 / (counts.size * n)) for n in counts])
    return np.full(int(counts.sum()), 1.0 / counts.sum())


def chain_means(idata: az.InferenceData) -> np.ndarray:
    """The mean image of every chain (an ensemble's: of every member) over its own draws,
    shape (chain, y, x)."""
    draws = image_draws(idata)
    parts = np.split(draws, np.cumsum(_draw_counts(idata))[:-1])
    return np.stack([part.mean(axis=0) for part in parts])


def _draw_counts(idata: az.InferenceData) -> np.ndarray:
    """The real draws of every chain (``n_draws``, or the draw dimension when unpadded)."""
    pp = idata.posterior_predictive
    if "n_draws" in pp:
        return np.asarray(pp["n_draws"].values).astype(np.int64)
    return np.full(pp["image"].sizes["chain"], pp["image"].sizes["draw"], dtype=np.int64)


def run_attrs(idata: az.InferenceData) -> dict:
    """The run's attributes: the InferenceData's own (root) attributes, or for a file
    written before they were stored there, those of ``posterior_predictive``."""
    root = dict(idata.attrs)
    if root:
        return root
    pp = getattr(idata, "posterior_predictive", None)
    return dict(pp.attrs) if pp is not None else {}


def air_level(idata: az.InferenceData) -> float:
    """The run's air level: true values at or below it are air, the background of the
    calibration figures (the ``air_level`` attribute of ``constant_data.ground_truth``, see
    :func:`build`); 0 when none is recorded (no truth, or a file written before it was)."""
    constant = getattr(idata, "constant_data", None)
    if constant is None or "ground_truth" not in constant:
        return 0.0
    return float(constant["ground_truth"].attrs.get("air_level", 0.0))


def with_air_level(idata: az.InferenceData, level: float) -> az.InferenceData:
    """``idata`` with its ground truth's air level set to ``level`` (in place): for a run
    file written before the level was stored, read by a caller that knows its data."""
    if not 0.0 <= level < 1.0:
        raise InputError(f"air_level must be in [0, 1), got {level}")
    constant = getattr(idata, "constant_data", None)
    if constant is not None and "ground_truth" in constant:
        constant["ground_truth"].attrs["air_level"] = float(level)
    return idata


def config(idata: az.InferenceData) -> dict:
    """The configuration stored with the draws (decoded JSON; {} when none is stored)."""
    text = run_attrs(idata).get("config")
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except (TypeError, ValueError) as err:
        raise InputError(f"the stored config is not valid JSON: {err}") from err
    if not isinstance(value, dict):
        raise InputError("the stored config is not a JSON object")
    return value


def trim_partial(idata: az.InferenceData) -> az.InferenceData:
    """A partial sampler run cut to the draws every chain has.

    An interrupted hmc/nuts run holds chains of unequal length, NaN-padded along
    ``draw`` (``posterior_predictive.n_draws``, no ``member`` coordinate): every group
    with a ``draw`` dimension is cut to the shortest chain, and ``n_draws`` dropped, so
    that ArviZ (``az.summary``, ``az.rhat``, ``az.loo``) sees only draws that exist and
    every chain weighs the same. Any other InferenceData is returned as it is: complete
    runs, and ensembles, whose members hold their own numbers of draws by design.
    """
    pp = idata.posterior_predictive
    if "n_draws" not in pp or "member" in pp.coords:
        return idata
    trimmed = idata.isel(draw=slice(0, int(np.asarray(pp["n_draws"].values).min())))
    trimmed.posterior_predictive = trimmed.posterior_predictive.drop_vars("n_draws")
    return trimmed
