"""A run's InferenceData on disk: netCDF written atomically, read back without padding.

Only this module and :mod:`bayes_inr.posterior` know the file format.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

with warnings.catch_warnings():
    # arviz 0.23 announces its 1.0 refactor on import; the pinned API is used here.
    warnings.filterwarnings("ignore", message=".*ArviZ is undergoing", category=FutureWarning)
    import arviz as az

from ..core.atomic import atomic_path
from ..core.errors import InputError
from .read import trim_partial

ENGINE = "h5netcdf"


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


def load(path, *, trim: bool = True) -> az.InferenceData:
    """Read an InferenceData netCDF fully into memory (no file handle stays open).

    With ``trim`` (default) a partial sampler run is cut to the draws every chain has
    (:func:`trim_partial`); ``trim=False`` returns the file as stored, padding included
    (what ``fit --resume`` continues from).
    """
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
    return trim_partial(idata) if trim else idata
