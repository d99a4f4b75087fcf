"""The benchmark datasets: phantoms and real CT slices, as netCDF.

``python -m bayes_inr.data`` (:mod:`bayes_inr.data.cli`) writes the benchmark: 10 phantoms (ids 0-4
validation, 5-9 test), each at 5 and 20 views. ``python -m bayes_inr.data --real`` writes
the real-CT benchmark in the same layout: four real CT slices that ship in the pydicom
and pydicom-data packages (ids 0-1 validation, 2-3 test), at 20 and 60 views with 40 dB
noise. Both go through :func:`build_dataset` ((truth, fine image) pairs -> dataset).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from ..core.atomic import atomic_path
from ..core.errors import InputError, check_choice
from ..physics.geometry import Geometry
from .images import DEFAULT_HU_WINDOW, window_air_level
from .sample import Sample, integer_resample, phantom_images, simulate

SPLITS = {"val": range(0, 5), "test": range(5, 10)}
DEFAULT_BENCHMARK = Path("data/benchmark_128.nc")


def build_dataset(pairs, split, views, *, seed: int = 0, supersample: int = 2,
                  seed_tail: tuple = (), coords: dict | None = None, attrs: dict | None = None,
                  **kwargs) -> xr.Dataset:
    """A benchmark dataset from (truth, fine image) pairs, one per image id 0..n-1.

    ``image`` (phantom, y, x) holds the N x N truths and ``sinogram_V`` (phantom, angle_V,
    detector) and ``noise_sigma_V`` (phantom) the simulated data per view count V (see
    :func:`simulate`; ``kwargs`` go there). Image i at V views is noised with seed
    ``(seed, i, V, *seed_tail)``. ``split`` labels every image "val" or "test"; ``coords``
    adds per-image coordinates (name -> values along ``phantom``) and ``attrs`` attributes.
    """
    pairs, split = list(pairs), [str(s) for s in split]
    if not pairs or not views:
        raise InputError("need at least one image and one view count")
    if len(split) != len(pairs) or not set(split) <= set(SPLITS):
        raise InputError(f"need one split label ({'/'.join(SPLITS)}) per image")
    size = pairs[0][0].shape[0]
    data, all_coords, all_attrs = {}, {}, {}
    for v in views:
        samples = [simulate(truth, v, fine_image=fine, supersample=supersample,
                            seed=(seed, i, v, *seed_tail), **kwargs)
                   for i, (truth, fine) in enumerate(pairs)]
        data[f"sinogram_{v}"] = (("phantom", f"angle_{v}", "detector"),
                                 np.stack([s.sinogram for s in samples]))
        data[f"noise_sigma_{v}"] = (("phantom",), np.array([s.noise_sigma for s in samples]))
        all_coords[f"angle_{v}"] = samples[0].geometry.angles
        all_attrs.update(samples[0].meta)
    data["image"] = (("phantom", "y", "x"), np.stack([truth for truth, _ in pairs]))
    all_coords.update(phantom=np.arange(len(pairs)), split=("phantom", np.array(split)))
    all_coords.update({name: ("phantom", np.asarray(values)) for name, values in
                       (coords or {}).items()})
    all_attrs.update(size=size, views=list(views), seed=seed,
                     n_detectors=samples[0].geometry.n_detectors,
                     units="line integrals in image units; the image spans [-1, 1]^2")
    all_attrs.update(attrs or {})
    return xr.Dataset(data, coords=all_coords, attrs=all_attrs)


def build_benchmark(size: int = 128, views=(5, 20), n_phantoms: int = 10, seed: int = 0,
                    supersample: int = 2, **kwargs) -> xr.Dataset:
    """The phantom benchmark as one dataset (see :func:`build_dataset`): ``split`` labels
    ids 0-4 "val" and 5-9 "test". Generation settings are in the attributes."""
    if n_phantoms <= 0:
        raise InputError("need at least one phantom and one view count")
    pairs = [phantom_images(i, size, seed, supersample) for i in range(n_phantoms)]
    split = ["val" if i in SPLITS["val"] else "test" for i in range(n_phantoms)]
    return build_dataset(pairs, split, views, seed=seed, supersample=supersample,
                         attrs={"phantom": "modified Shepp-Logan, every parameter + "
                                           "N(0, 0.05^2)"}, **kwargs)


@dataclass(frozen=True)
class RealSlice:
    """A real CT slice that ships in a PyPI package (see ``data/README.md``)."""

    file: str
    package: str  # "pydicom" (its test files) or "pydicom-data" (module data_store)
    split: str
    body_part: str  # what the slice shows (the DICOM tag is often absent)


REAL_SLICES = (
    RealSlice("explicit_VR-UN.dcm", "pydicom-data", "val", "abdomen (pancreas study)"),
    RealSlice("693_UNCR.dcm", "pydicom-data", "val", "head (with head holder)"),
    RealSlice("CT_small.dcm", "pydicom", "test", "spine (vertebra, cropped field of view)"),
    RealSlice("J2K_pixelrep_mismatch.dcm", "pydicom", "test", "head (skull base)"),
)
DEFAULT_REAL = Path("data/real_128.nc")


def real_slice_path(entry: RealSlice) -> Path:
    """The installed file of ``entry``; :class:`InputError` if its package is missing."""
    if entry.package == "pydicom":
        import pydicom

        root = Path(pydicom.__file__).parent / "data" / "test_files"
    else:
        try:
            import data_store
        except ImportError:
            raise InputError("the real-CT benchmark needs the pydicom-data package: "
                             "pip install pydicom-data") from None
        root = Path(data_store.__file__).parent / "data"
    path = root / entry.file
    if not path.is_file():
        raise InputError(f"{entry.file} not found in the installed {entry.package} ({root})")
    return path


def real_images(entry: RealSlice, size: int = 128, supersample: int = 2
                ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Real slice ``entry``: (N x N truth, kN x kN object that is projected, metadata).

    The slice is windowed by :func:`bayes_inr.data.images.load_image` ((-1000, 1000) HU -> [0, 1])
    at its native n x n size, brought to the fine grid kN by :func:`integer_resample` (block
    means for n = 512; piecewise-constant replication for the 128-pixel CT_small, which has
    no finer detail to give) and block-averaged to the truth, so the two agree exactly.
    """
    import hashlib
    import warnings

    import pydicom

    from .images import load_image

    path = real_slice_path(entry)
    native = load_image(path).astype(np.float64)
    fine = integer_resample(native, size * supersample)
    truth = fine.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's warnings on odd but readable tags
        ds = pydicom.dcmread(path)
        stored = np.ascontiguousarray(ds.pixel_array)
    spacing = ds.get("PixelSpacing")
    meta = {"source_file": entry.file, "package": entry.package, "body_part": entry.body_part,
            "body_part_tag": str(ds.get("BodyPartExamined") or ""),
            "patient_id": str(ds.get("PatientID") or ""), "frame": 0,
            "source_size": native.shape[0],
            "source_pixel_mm": float(spacing[0]) if spacing else np.nan,
            "source_pixel_md5": hashlib.md5(stored.tobytes()).hexdigest()}
    return truth.astype(np.float32), fine.astype(np.float32), meta


def build_real_benchmark(size: int = 128, views=(20, 60), seed: int = 0, supersample: int = 2,
                         snr_db: float | None = 40.0, slices=REAL_SLICES, **kwargs
                         ) -> xr.Dataset:
    """The real-CT benchmark (``slices``, by default :data:`REAL_SLICES`) in the phantom
    benchmark's layout (see :func:`build_dataset`), with per-slice metadata coordinates
    (source file, package, body part, patient id, frame, native size and pixel spacing,
    MD5 of the stored pixels). Noise seeds differ from the phantoms' (seed tail 1)."""
    entries = [real_images(entry, size, supersample) for entry in slices]
    coords = {key: [meta[key] for _, _, meta in entries] for key in entries[0][2]}
    attrs = {"source": "real CT slices (DICOM) from the PyPI packages pydicom and "
                       "pydicom-data; see data/README.md",
             "hu_window": list(DEFAULT_HU_WINDOW),
             "resampling": "windowed, then integer block means (or piecewise-constant "
                           "replication) to the fine grid, truth = block mean of the fine grid"}
    return build_dataset([(truth, fine) for truth, fine, _ in entries],
                         [entry.split for entry in slices], views, seed=seed,
                         supersample=supersample, seed_tail=(1,), coords=coords, attrs=attrs,
                         snr_db=snr_db, **kwargs)


def write_dataset(dataset: xr.Dataset, path) -> Path:
    """Write a dataset to netCDF atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        dataset.to_netcdf(tmp, engine="h5netcdf")
    return path


def load_benchmark(path=DEFAULT_BENCHMARK) -> xr.Dataset:
    """Read a benchmark file written by :func:`build_benchmark` (fully into memory)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"benchmark file {path} not found (make it with python -m bayes_inr.data)")
    if path.stat().st_size == 0:
        raise InputError(f"benchmark file {path} is empty")
    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            ds = ds.load()
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read benchmark file {path}: {err}") from None
    if "image" not in ds or "split" not in ds.coords:
        raise InputError(f"{path} is not a bayes_inr benchmark (no image/split variables)")
    return ds


def is_real_ct(path) -> bool:
    """Whether the benchmark file at ``path`` holds real CT slices
    (:func:`build_real_benchmark`: it has their DICOM provenance coordinates); False for a
    phantom benchmark and for a file that cannot be read (:func:`load_benchmark` says why)."""
    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            return "source_file" in ds.coords
    except (OSError, ValueError):
        return False


def benchmark_ids(dataset: xr.Dataset, split: str) -> list[int]:
    """Phantom ids of a split ("val", "test" or "all")."""
    check_choice("split", split, (*SPLITS, "all"))
    ids = dataset.phantom.values
    return [int(i) for i in (ids if split == "all" else ids[dataset.split.values == split])]


def benchmark_sample(dataset: xr.Dataset, image_id: int, views: int) -> Sample:
    """One benchmark entry as a :class:`Sample`."""
    if f"sinogram_{views}" not in dataset:
        have = sorted(int(k.split("_")[1]) for k in dataset.data_vars if k.startswith("sinogram_"))
        raise InputError(f"the benchmark has no {views}-view sinograms (it has {have})")
    if image_id not in dataset.phantom.values:
        raise InputError(f"image id {image_id} not in the benchmark (ids "
                         f"{int(dataset.phantom.min())}-{int(dataset.phantom.max())})")
    entry = dataset.sel(phantom=image_id)
    geometry = Geometry(int(dataset.attrs["size"]), int(views), int(dataset.attrs["n_detectors"]))
    window = dataset.attrs.get("hu_window")  # real CT: windowed Hounsfield units
    return Sample(geometry, entry[f"sinogram_{views}"].values, entry["image"].values,
                  float(entry[f"noise_sigma_{views}"]), f"phantom-{image_id}",
                  {**dataset.attrs, "image_id": image_id, "split": str(entry.split.values)},
                  air_level=0.0 if window is None else window_air_level(window))
