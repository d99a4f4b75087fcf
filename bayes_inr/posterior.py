"""Every method's output as one ArviZ ``InferenceData`` (netCDF on disk).

Schema (see ``DESIGN.md``):

- ``posterior_predictive.image`` (chain, draw, y, x): the reconstructed images. An
  ensemble stores one chain per member, labelled by a ``member`` coordinate on the
  chain dimension. Members may hold different numbers of draws (a deterministic
  member is one draw): the draw dimension is then padded with NaN to the longest
  member and ``posterior_predictive.n_draws`` (chain) says how many draws are real.
  :func:`image_draws` drops the padding.
- ``posterior``: parameter draws (chain, draw, ...) when kept.
- ``observed_data.sinogram`` (angle, detector).
- ``constant_data``: ``angle`` (the angle coordinate, radians), ``ground_truth``
  (y, x) when known, and any extra arrays.
- ``sample_stats``: sampler statistics (chain, draw, ...).
- attrs on every group: ``method``, ``config`` (JSON of the full configuration),
  ``seed``, ``device``, ``wall_time`` (seconds), ``created_at`` (UTC ISO 8601), and
  the provenance of :mod:`bayes_inr.provenance`: ``git_commit``, ``git_dirty``,
  ``bayes_inr_version``, ``config_hash``, ``data_hash``. Attributes that are None are
  omitted.

Files are written with the h5netcdf engine, atomically (:func:`save`), and read
fully into memory (:func:`load`).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

with warnings.catch_warnings():
    # arviz 0.23 announces its 1.0 refactor on import; the pinned API is used here.
    warnings.filterwarnings("ignore", message=".*ArviZ is undergoing", category=FutureWarning)
    import arviz as az

from . import provenance
from .atomic import atomic_path
from .errors import InputError, check_finite

ENGINE = "h5netcdf"

__all__ = [
    "build",
    "config",
    "draw_weights",
    "from_reconstruction",
    "image_draws",
    "load",
    "save",
]


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


# ----------------------------------------------------------------------------- build


def build(
    images,
    *,
    sinogram,
    angles,
    method: str,
    config: Mapping | None,
    ground_truth=None,
    seed: int | None = None,
    wall_time: float | None = None,
    device="cpu",
    sample_stats: Mapping | None = None,
    posterior: Mapping | None = None,
    chain_labels: Sequence | None = None,
    extra_constant: Mapping | None = None,
    settings=None,
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
        without derived values and timings (see :mod:`bayes_inr.provenance`).
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

    def chain_dataset(variables: dict) -> xr.Dataset:
        ds = xr.Dataset(variables, coords=chain_coords, attrs=dict(attrs))
        if member is not None:
            ds = ds.assign_coords(member=("chain", member))
        return ds

    pp_vars = {"image": (("chain", "draw", "y", "x"), image_array)}
    if ragged:
        pp_vars["n_draws"] = (("chain",), counts)
    groups: dict[str, xr.Dataset] = {"posterior_predictive": chain_dataset(pp_vars)}

    for group, values in (("posterior", posterior), ("sample_stats", sample_stats)):
        if not values:
            continue
        variables = {}
        for name, value in values.items():
            array, _ = _pad_chains(f"{group}.{name}", value, n_chains)
            if array.shape[1] != n_draws:
                raise InputError(
                    f"{group}.{name} has {array.shape[1]} draws per chain, expected {n_draws}"
                )
            dims = ("chain", "draw") + tuple(f"{name}_dim_{i}" for i in range(array.ndim - 2))
            variables[str(name)] = (dims, array)
        groups[group] = chain_dataset(variables)

    groups["observed_data"] = xr.Dataset(
        {"sinogram": (("angle", "detector"), sino)},
        coords={"angle": ("angle", angle_values, {"units": "rad"})},
        attrs=dict(attrs),
    )

    constant: dict = {}
    if ground_truth is not None:
        truth = _float(ground_truth)
        if truth.shape != (ny, nx):
            raise InputError(
                f"ground_truth shape {truth.shape} does not match the images' {(ny, nx)}"
            )
        check_finite("ground_truth", truth)
        constant["ground_truth"] = (("y", "x"), truth)
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
    groups["constant_data"] = xr.Dataset(
        constant,
        coords={"angle": ("angle", angle_values, {"units": "rad"})},
        attrs=dict(attrs),
    )
    return az.InferenceData(**groups)


def from_reconstruction(
    image,
    *,
    sinogram,
    angles,
    method: str,
    config: Mapping | None = None,
    ground_truth=None,
    wall_time: float | None = None,
    seed: int | None = None,
    device="cpu",
) -> az.InferenceData:
    """A deterministic reconstruction (y, x) as one chain of one draw."""
    image = _float(image)
    if image.ndim != 2:
        raise InputError(f"image must have dims (y, x), got shape {image.shape}")
    return build(image[None, None], sinogram=sinogram, angles=angles, method=method,
                 config=config, ground_truth=ground_truth, seed=seed,
                 wall_time=wall_time, device=device)


# ----------------------------------------------------------------------------- readers


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
    """
    pp = idata.posterior_predictive
    n_chains = pp["image"].sizes["chain"]
    counts = (np.asarray(pp["n_draws"].values).astype(np.int64) if "n_draws" in pp
              else np.full(n_chains, pp["image"].sizes["draw"], dtype=np.int64))
    if "member" in pp.coords:
        return np.concatenate([np.full(n, 1.0 / (n_chains * n)) for n in counts])
    return np.full(int(counts.sum()), 1.0 / counts.sum())


def config(idata: az.InferenceData) -> dict:
    """The configuration stored with the draws (decoded JSON; {} when none is stored)."""
    for group in ("posterior_predictive", *idata.groups()):
        ds = getattr(idata, group, None)
        if ds is not None and "config" in ds.attrs:
            text = ds.attrs["config"]
            try:
                value = json.loads(text)
            except (TypeError, ValueError) as err:
                raise InputError(f"the stored config is not valid JSON: {err}") from err
            if not isinstance(value, dict):
                raise InputError("the stored config is not a JSON object")
            return value
    return {}


# ----------------------------------------------------------------------------- disk


def save(idata: az.InferenceData, path) -> Path:
    """Write ``idata`` to ``path`` atomically (temporary file + ``os.replace``).

    A failure midway leaves any previous file at ``path`` untouched and removes the
    temporary file.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"cannot save {path}: directory {path.parent} does not exist")
    with atomic_path(path) as tmp:
        idata.to_netcdf(str(tmp), engine=ENGINE)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
    return path


def load(path) -> az.InferenceData:
    """Read an InferenceData netCDF fully into memory (no file handle stays open)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such file: {path}")
    if not path.is_file():
        raise InputError(f"not a file: {path}")
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty")
    try:
        with az.rc_context({"data.load": "eager"}):
            idata = az.from_netcdf(str(path), engine=ENGINE)
    except Exception as err:  # h5py/h5netcdf/xarray raise many types for a bad file
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(
            f"{path} is not an InferenceData netCDF file ({type(err).__name__}: {message})"
        ) from err
    pp = getattr(idata, "posterior_predictive", None)
    if pp is None or "image" not in pp:
        raise InputError(f"{path} is not a bayes_inr InferenceData: "
                         "it has no posterior_predictive.image")
    return idata
