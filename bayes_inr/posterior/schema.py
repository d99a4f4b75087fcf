"""Build a run's InferenceData from image draws (the schema of :mod:`bayes_inr.posterior`).
"""

from __future__ import annotations

import datetime as _dt
import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

with warnings.catch_warnings():
    # arviz 0.23 announces its 1.0 refactor on import; the pinned API is used here.
    warnings.filterwarnings("ignore", message=".*ArviZ is undergoing", category=FutureWarning)
    import arviz as az

from ..core import provenance
from ..core.errors import InputError, check_finite

FORWARD_CHUNK = 64
"""Draws projected per call of the forward operator in :func:`build`."""


# ----------------------------------------------------------------------------- helpers


def _numpy(array) -> np.ndarray:
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def _float(array) -> np.ndarray:
    array = _numpy(array)
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    return array


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _config_json(cfg: Mapping | None) -> str:
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, Mapping):
        raise InputError(f"config must be a dict, got {type(cfg).__name__}")
    try:
        return json.dumps(dict(cfg), sort_keys=True, default=_json_default, allow_nan=True)
    except (TypeError, ValueError) as err:
        raise InputError(f"config cannot be stored as JSON: {err}") from err


def _pad_chains(name: str, value, n_chains: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Stack per-chain arrays (draw_i, ...) into (chain, max_draw, ...), NaN-padded.

    Returns the stacked array and the per-chain draw counts. A single array is taken
    as already stacked (chain, draw, ...).
    """
    if isinstance(value, (list, tuple)):
        chains = [_numpy(v) for v in value]
        if not chains:
            raise InputError(f"{name}: no chains given")
        trailing = {c.shape[1:] for c in chains}
        if any(c.ndim < 1 or c.shape[0] < 1 for c in chains) or len(trailing) != 1:
            raise InputError(
                f"{name}: every chain must be an array (draws >= 1, ...) with the same "
                f"trailing shape, got shapes {[c.shape for c in chains]}"
            )
        counts = np.array([c.shape[0] for c in chains], dtype=np.int64)
        longest = int(counts.max())
        ragged = bool((counts != longest).any())
        dtype = np.result_type(*chains)
        if ragged and not np.issubdtype(dtype, np.floating):
            dtype = np.float64
        out = np.full((len(chains), longest, *chains[0].shape[1:]), np.nan if ragged else 0,
                      dtype=dtype)
        for i, c in enumerate(chains):
            out[i, : c.shape[0]] = c
    else:
        out = _numpy(value)
        if out.ndim < 2:
            raise InputError(f"{name} must have dims (chain, draw, ...), got shape {out.shape}")
        counts = np.full(out.shape[0], out.shape[1], dtype=np.int64)
    if n_chains is not None and out.shape[0] != n_chains:
        raise InputError(f"{name} has {out.shape[0]} chains, expected {n_chains}")
    return out, counts


def _attrs(*, method: str, config_json: str, seed, device, wall_time, provenance: dict
           ) -> dict:
    attrs: dict = {
        "method": str(method),
        "config": config_json,
        **provenance,
        "device": str(device) if device is not None else None,
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    if seed is not None:
        if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
            raise InputError(f"seed must be an integer or None, got {seed!r}")
        attrs["seed"] = int(seed)
    if wall_time is not None:
        wall_time = float(wall_time)
        if not np.isfinite(wall_time) or wall_time < 0:
            raise InputError(f"wall_time must be a non-negative number, got {wall_time}")
        attrs["wall_time"] = wall_time
    return {k: v for k, v in attrs.items() if v is not None}


def _likelihood(images: np.ndarray, counts: np.ndarray, observed: np.ndarray,
                forward: Callable, sigma, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-ray Gaussian log-likelihood and a noisy replicate of the data, per draw.

    Returns ``log N(y | A x, sigma^2)`` and ``A x + sigma eps`` (chain, draw, angle,
    detector) as float32, NaN where ``images`` is padding. ``A x`` is computed
    ``FORWARD_CHUNK`` draws per call of ``forward``, the density in float64. ``eps`` of
    chain c comes from its own stream seeded with (seed, c) and is drawn in draw order, so
    a checkpoint's replicates are the first draws of the finished run's.
    """
    n_chains, n_draws = images.shape[:2]
    if sigma is None:
        raise InputError("forward needs sigma (the likelihood's noise standard deviation)")
    if np.ndim(sigma) == 0 and not isinstance(sigma, (list, tuple)):
        scales = np.full((n_chains, n_draws), float(sigma))
    else:
        scales, _ = _pad_chains("sigma", sigma, n_chains)
        scales = scales.astype(np.float64)
        if scales.shape != (n_chains, n_draws):
            raise InputError(f"sigma has shape {scales.shape}, expected one value or one per "
                             f"draw {(n_chains, n_draws)}")
    shape = (n_chains, n_draws, *observed.shape)
    log_lik = np.full(shape, np.nan, dtype=np.float32)
    replicate = np.full(shape, np.nan, dtype=np.float32)
    for c, n in enumerate(counts.tolist()):
        scale = scales[c, :n, None, None]
        if not (np.isfinite(scale) & (scale > 0)).all():
            raise InputError(f"sigma must be positive and finite, got {scales[c, :n]}")
        chain = images[c, :n]
        predicted = np.concatenate(
            [_numpy(forward(chain[i:i + FORWARD_CHUNK])).astype(np.float64)
             for i in range(0, n, FORWARD_CHUNK)])
        if predicted.shape != (n, *observed.shape):
            raise InputError(f"forward gave sinograms of shape {predicted.shape[1:]}, "
                             f"the data's is {observed.shape}")
        z = (observed - predicted) / scale
        log_lik[c, :n] = -0.5 * z * z - np.log(scale) - 0.5 * np.log(2 * np.pi)
        rng = np.random.default_rng([0 if seed is None else seed % 2**64, c])
        replicate[c, :n] = predicted + scale * rng.standard_normal(predicted.shape)
    return log_lik, replicate


def representative_pixels(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The 20 fixed pixels of ``posterior.pixel``: a 4 x 5 grid over the central 3/4."""
    rows = np.rint(np.linspace(shape[0] / 8, shape[0] * 7 / 8 - 1, 4)).astype(int)
    cols = np.rint(np.linspace(shape[1] / 8, shape[1] * 7 / 8 - 1, 5)).astype(int)
    ys, xs = np.meshgrid(rows, cols, indexing="ij")
    return ys.ravel(), xs.ravel()


# ----------------------------------------------------------------------------- build


def build(
    images,
    *,
    sinogram,
    angles,
    method: str,
    config: Mapping | None,
    ground_truth=None,
    air_level: float = 0.0,
    seed: int | None = None,
    wall_time: float | None = None,
    device="cpu",
    sample_stats: Mapping | None = None,
    posterior: Mapping | None = None,
    chain_labels: Sequence | None = None,
    extra_constant: Mapping | None = None,
    settings=None,
    forward: Callable | None = None,
    sigma=None,
) -> az.InferenceData:
    """Assemble the InferenceData of one reconstruction.

    Parameters
    ----------
    images : array (chain, draw, y, x) or list of arrays (draw_i, y, x)
        Image draws. A list gives one chain per entry; chains of unequal length are
        NaN-padded along ``draw`` and ``posterior_predictive.n_draws`` is stored.
    sinogram : array (angle, detector)
        The measured sinogram.
    angles : array (angle,)
        Projection angles in radians.
    method : str
        Method name (``"MCD"``, ``"HMC"``, ``"FBP"``, ...).
    config : dict
        The full configuration; stored as JSON.
    ground_truth : array (y, x), optional
    air_level : float
        True values at or below it are air (:class:`bayes_inr.data.sample.Sample`), stored
        as the ``air_level`` attribute of ``constant_data.ground_truth``.
    seed, wall_time, device
        Provenance attributes (``wall_time`` in seconds).
    sample_stats, posterior : dict of name -> array (chain, draw, ...), optional
        Per-chain lists are padded like ``images`` (ragged integer or boolean
        statistics become float64 so that the padding can be NaN). Extra dims are
        named ``f"{name}_dim_{i}"``.
    chain_labels : sequence of str, optional
        One label per chain (ensemble members), stored as the ``member`` coordinate.
    extra_constant : dict of name -> array or (dims, array), optional
        More ``constant_data`` arrays; dims default to ``f"{name}_dim_{i}"``.
    settings : FitConfig or dict, optional
        What ``config_hash`` is computed from (default ``config``): the run's settings
        without derived values and timings (see :mod:`bayes_inr.core.provenance`).
    forward : callable, optional
        The forward operator ``A``: images (n, y, x) to noise-free sinograms (n, angle,
        detector), numpy or torch (a :class:`~bayes_inr.physics.radon.RadonOperator`). With
        ``sigma`` it adds ``log_likelihood.sinogram`` and ``posterior_predictive.sinogram``
        and ``posterior.pixel`` (see the module's schema); without it none is stored.
    sigma : float, or array (chain, draw), or list of arrays (draw_i,), optional
        The likelihood's noise standard deviation: one value, or one per draw (an
        inferred sigma), given like ``images``.
    """
    if not isinstance(method, str) or not method:
        raise InputError(f"method must be a non-empty string, got {method!r}")

    if isinstance(images, (list, tuple)):
        for i, chain in enumerate(images):
            chain = _numpy(chain)
            if chain.ndim != 3:
                raise InputError(
                    f"images[{i}] must have dims (draw, y, x), got shape {chain.shape}"
                )
            check_finite(f"images[{i}]", chain)
        image_array, counts = _pad_chains("images", [_float(c) for c in images])
        ragged = bool((counts != image_array.shape[1]).any())
    else:
        image_array = _float(images)
        if image_array.ndim != 4:
            raise InputError(
                f"images must have dims (chain, draw, y, x), got shape {image_array.shape}"
            )
        check_finite("images", image_array)
        counts = np.full(image_array.shape[0], image_array.shape[1], dtype=np.int64)
        ragged = False
    n_chains, n_draws, ny, nx = image_array.shape
    if min(n_chains, n_draws, ny, nx) < 1:
        raise InputError(f"images is empty: shape {image_array.shape}")

    sino = _float(sinogram)
    if sino.ndim != 2:
        raise InputError(f"sinogram must have dims (angle, detector), got shape {sino.shape}")
    check_finite("sinogram", sino)
    angle_values = _float(angles).astype(np.float64)
    if angle_values.ndim != 1 or angle_values.shape[0] != sino.shape[0]:
        raise InputError(
            f"angles shape {angle_values.shape} does not match the sinogram's "
            f"{sino.shape[0]} angles"
        )
    check_finite("angles", angle_values)

    truth = None if ground_truth is None else _float(ground_truth)
    attrs = _attrs(method=method, config_json=_config_json(config), seed=seed,
                   device=device, wall_time=wall_time,
                   provenance=provenance.record((config or {}) if settings is None else settings,
                                                sino, angle_values, truth))
    chain_coords = {"chain": np.arange(n_chains), "draw": np.arange(n_draws)}
    member = None
    if chain_labels is not None:
        labels = [str(label) for label in chain_labels]
        if len(labels) != n_chains:
            raise InputError(f"chain_labels has {len(labels)} labels for {n_chains} chains")
        member = np.array(labels, dtype=object)

    angle_coord = {"angle": ("angle", angle_values, {"units": "rad"})}

    def chain_dataset(variables: dict) -> xr.Dataset:
        coords = chain_coords | (angle_coord if any("angle" in dims for dims, _ in
                                                    variables.values()) else {})
        ds = xr.Dataset(variables, coords=coords, attrs=dict(attrs))
        if member is not None:
            ds = ds.assign_coords(member=("chain", member))
        return ds

    pp_vars = {"image": (("chain", "draw", "y", "x"), image_array)}
    if ragged:
        pp_vars["n_draws"] = (("chain",), counts)
    groups: dict[str, xr.Dataset] = {}
    if forward is not None:
        rays = ("chain", "draw", "angle", "detector")
        log_lik, replicate = _likelihood(image_array, counts, sino.astype(np.float64),
                                         forward, sigma, seed)
        pp_vars["sinogram"] = (rays, replicate)
        groups["log_likelihood"] = chain_dataset({"sinogram": (rays, log_lik)})
    groups["posterior_predictive"] = chain_dataset(pp_vars)

    for group, values in (("posterior", posterior), ("sample_stats", sample_stats)):
        variables = {}
        if group == "posterior" and forward is not None:
            ys, xs = representative_pixels((ny, nx))
            variables["pixel"] = (("chain", "draw", "pixel_id"), image_array[:, :, ys, xs])
        for name, value in (values or {}).items():
            array, _ = _pad_chains(f"{group}.{name}", value, n_chains)
            if array.shape[1] != n_draws:
                raise InputError(
                    f"{group}.{name} has {array.shape[1]} draws per chain, expected {n_draws}"
                )
            dims = ("chain", "draw") + tuple(f"{name}_dim_{i}" for i in range(array.ndim - 2))
            variables[str(name)] = (dims, array)
        if variables:
            groups[group] = chain_dataset(variables)
        if group == "posterior" and forward is not None:
            groups[group] = groups[group].assign_coords(
                pixel_id=[f"y{y}x{x}" for y, x in zip(ys, xs, strict=True)],
                pixel_y=("pixel_id", ys), pixel_x=("pixel_id", xs))

    groups["observed_data"] = xr.Dataset(
        {"sinogram": (("angle", "detector"), sino)}, coords=angle_coord, attrs=dict(attrs))

    constant: dict = {}
    if ground_truth is not None:
        truth = _float(ground_truth)
        if truth.shape != (ny, nx):
            raise InputError(
                f"ground_truth shape {truth.shape} does not match the images' {(ny, nx)}"
            )
        check_finite("ground_truth", truth)
        if not 0.0 <= air_level < 1.0:
            raise InputError(f"air_level must be in [0, 1), got {air_level}")
        constant["ground_truth"] = xr.Variable(("y", "x"), truth,
                                               attrs={"air_level": float(air_level)})
    for name, value in (extra_constant or {}).items():
        if name in ("angle", "ground_truth"):
            raise InputError(f"extra_constant may not redefine {name!r}")
        if isinstance(value, tuple) and len(value) == 2 and not np.isscalar(value[0]):
            dims, array = tuple(value[0]), _numpy(value[1])
        else:
            array = _numpy(value)
            dims = tuple(f"{name}_dim_{i}" for i in range(array.ndim))
        if len(dims) != array.ndim:
            raise InputError(f"extra_constant {name!r}: {len(dims)} dims for a "
                             f"{array.ndim}-D array")
        constant[str(name)] = (dims, array)
    groups["constant_data"] = xr.Dataset(constant, coords=angle_coord, attrs=dict(attrs))
    return az.InferenceData(attrs=attrs, **groups)


def from_reconstruction(
    image,
    *,
    sinogram,
    angles,
    method: str,
    config: Mapping | None = None,
    ground_truth=None,
    air_level: float = 0.0,
    wall_time: float | None = None,
    seed: int | None = None,
    device="cpu",
) -> az.InferenceData:
    """A deterministic reconstruction (y, x) as one chain of one draw.

    No ``log_likelihood`` nor replicated sinogram: a classical reconstruction has no
    noise model of its own, and LOO or WAIC over one draw is not defined.
    """
    image = _float(image)
    if image.ndim != 2:
        raise InputError(f"image must have dims (y, x), got shape {image.shape}")
    return build(image[None, None], sinogram=sinogram, angles=angles, method=method,
                 config=config, ground_truth=ground_truth, air_level=air_level, seed=seed,
                 wall_time=wall_time, device=device)
