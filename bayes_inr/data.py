"""Sinogram simulation, the benchmark dataset, and the ``Sample`` every method consumes.

Ground-truth sinograms avoid the "inverse crime" by default (``protocol="fine"``):
the object is projected on a grid ``supersample`` times finer than the
reconstruction grid (phantoms are rendered there directly; image files are
upsampled piecewise-constantly) with detectors of the same physical width. The
paper's protocol, projecting the N x N truth with the very operator used in
reconstruction, is ``protocol="same"``. Noise is Gaussian, set by a target SNR in
dB (``sigma^2 = mean(p^2) / 10^(snr / 10)``) or by ``sigma`` directly, and seeded.

Run ``python -m bayes_inr.data`` to write the benchmark: 10 phantoms (ids 0-4
validation, 5-9 test), each at 5 and 20 views. ``python -m bayes_inr.data --real`` writes
the real-CT benchmark in the same layout: four real CT slices that ship in the pydicom
and pydicom-data packages (ids 0-1 validation, 2-3 test), at 20 and 60 views with 40 dB
noise. Both go through :func:`build_dataset` ((truth, fine image) pairs -> dataset).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from .atomic import atomic_path
from .errors import InputError, check_choice, check_finite
from .geometry import Geometry
from .images import DEFAULT_HU_WINDOW
from .outputs import check_output, output_lock
from .phantoms import random_phantom
from .resources import check_memory

PROTOCOLS = ("fine", "same")
SPLITS = {"val": range(0, 5), "test": range(5, 10)}
DEFAULT_BENCHMARK = Path("data/benchmark_128.nc")


@dataclass
class Sample:
    """One reconstruction problem: a geometry, a measured sinogram, maybe a truth.

    ``noise_sigma`` is the standard deviation of the added noise when known
    (``0.0`` for noiseless data, ``None`` when unknown).
    """

    geometry: Geometry
    sinogram: np.ndarray
    ground_truth: np.ndarray | None = None
    noise_sigma: float | None = None
    name: str = "sample"
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.geometry.check_sinogram(self.sinogram)
        if self.ground_truth is not None:
            self.geometry.check_image(self.ground_truth)


def project_truth(image: np.ndarray, geometry: Geometry, protocol: str = "fine",
                  projector: str = "linear") -> np.ndarray:
    """Noiseless sinogram (V, D) of ``image`` in package units.

    ``protocol="fine"``: ``image`` is k N x k N for an integer k >= 2 and is projected
    with astra on that grid. ``protocol="same"``: ``image`` is N x N and is projected
    with the reconstruction operator itself (the paper's protocol).
    """
    import astra

    check_choice("protocol", protocol, PROTOCOLS)
    image = np.asarray(image, dtype=np.float32)
    check_finite("image", image)
    if image.ndim != 2 or image.shape[0] != image.shape[1]:
        raise InputError(f"image must be square 2-D, got shape {image.shape}")
    from .radon import projection_matrix, view_blocks

    if protocol == "same":
        geometry.check_image(image)
        return (projection_matrix(geometry, projector) @ image.ravel()).reshape(
            geometry.sino_shape).astype(np.float32)
    factor, rest = divmod(image.shape[0], geometry.size)
    if rest or factor < 2:
        raise InputError(f"protocol 'fine' needs an image k times finer than {geometry.size} "
                         f"(k >= 2), got {image.shape[0]}")
    blocks = []  # a few views per astra call, so that a signal handler runs in between
    for views in view_blocks(geometry, 2 * factor * geometry.size * geometry.n_detectors):
        vol, proj = geometry.astra_geometries(supersample=factor, views=views)
        pid = astra.create_projector(projector, proj, vol)
        try:
            sid, sino = astra.create_sino(image, pid)
            astra.data2d.delete(sid)
        finally:
            astra.projector.delete(pid)
        blocks.append(sino)
    return (np.concatenate(blocks) * (geometry.pixel_size / factor)).astype(np.float32)


def add_noise(sinogram: np.ndarray, snr_db: float | None = None, sigma: float | None = None,
              seed=0) -> tuple[np.ndarray, float]:
    """Add seeded Gaussian noise by target SNR (dB) or by ``sigma``; returns (noisy, sigma)."""
    if snr_db is not None and sigma is not None:
        raise InputError("give either snr_db or sigma, not both")
    if snr_db is not None:
        sigma = float(np.sqrt(np.mean(np.square(sinogram, dtype=np.float64)) / 10 ** (snr_db / 10)))
    if not sigma:
        return sinogram, 0.0
    if sigma < 0 or not np.isfinite(sigma):
        raise InputError(f"noise sigma must be a non-negative finite number, got {sigma}")
    rng = np.random.default_rng(seed)
    noisy = sinogram + sigma * rng.standard_normal(sinogram.shape)
    return noisy.astype(np.float32), float(sigma)


def simulate(image: np.ndarray, views: int, *, fine_image: np.ndarray | None = None,
             protocol: str = "fine", supersample: int = 2, projector: str = "linear",
             snr_db: float | None = None, sigma: float | None = None, seed=0,
             name: str = "image") -> Sample:
    """A :class:`Sample` from an N x N ground truth.

    ``fine_image`` is the object on the finer grid for ``protocol="fine"``; without
    it the truth is upsampled piecewise-constantly by ``supersample``.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2 or image.shape[0] != image.shape[1] or image.size == 0:
        raise InputError(f"ground truth must be a non-empty square 2-D image, got {image.shape}")
    geometry = Geometry(image.shape[0], views)
    if protocol == "fine" and fine_image is None:
        fine_image = np.kron(image, np.ones((supersample, supersample), np.float32))
    clean = project_truth(image if protocol == "same" else fine_image, geometry, protocol,
                          projector)
    sinogram, noise = add_noise(clean, snr_db=snr_db, sigma=sigma, seed=seed)
    meta = {"protocol": protocol, "supersample": supersample if protocol == "fine" else 1,
            "truth_projector": projector, "snr_db": snr_db if snr_db is not None else "none"}
    return Sample(geometry, sinogram, image, noise, name, meta)


def phantom_images(phantom_id: int, size: int = 128, seed: int = 0, supersample: int = 2
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Benchmark phantom ``phantom_id``: (N x N truth, kN x kN object that is projected).

    The phantom is rendered on the ``supersample`` = k times finer grid (2 x 2 point
    samples per fine pixel) and block-averaged to the truth, so the two agree exactly.
    """
    check_memory(size, points=2 * supersample)
    fine = random_phantom((seed, phantom_id), size * supersample, supersample=2)
    return fine.reshape(size, supersample, size, supersample).mean(axis=(1, 3)), fine


def phantom_sample(phantom_id: int, views: int, size: int = 128, *, seed: int = 0,
                   supersample: int = 2, images=None, **kwargs) -> Sample:
    """A random Shepp-Logan phantom (benchmark numbering and seeding) as a :class:`Sample`.

    ``images`` reuses a (truth, fine) pair from :func:`phantom_images`.
    """
    truth, fine = images or phantom_images(phantom_id, size, seed, supersample)
    return simulate(truth, views, fine_image=fine, supersample=supersample,
                    seed=(seed, phantom_id, views), name=f"phantom-{phantom_id}", **kwargs)


def integer_resample(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` (n x n) on an m x m grid by an integer factor: block means when m divides n,
    piecewise-constant replication when n divides m (the same function on a finer grid)."""
    n = image.shape[0]
    if n % size == 0:
        k = n // size
        return image.reshape(size, k, size, k).mean(axis=(1, 3), dtype=np.float64)
    if size % n == 0:
        return np.kron(image, np.ones((size // n, size // n)))
    raise InputError(f"cannot resample a {n} x {n} image to {size} x {size} by an integer factor")


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

    The slice is windowed by :func:`bayes_inr.images.load_image` ((-1000, 1000) HU -> [0, 1])
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
    return Sample(geometry, entry[f"sinogram_{views}"].values, entry["image"].values,
                  float(entry[f"noise_sigma_{views}"]), f"phantom-{image_id}",
                  {**dataset.attrs, "image_id": image_id, "split": str(entry.split.values)})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bayes_inr.data",
        description="Write the phantom benchmark (ids 0-4 validation, 5-9 test) or, with "
                    "--real, the real-CT benchmark as netCDF.")
    parser.add_argument("--real", action="store_true",
                        help="real CT slices from pydicom and pydicom-data instead of phantoms "
                             "(defaults: views 20 60, 40 dB noise, data/real_SIZE.nc)")
    parser.add_argument("--out", type=Path,
                        help="output file (default data/benchmark_SIZE.nc or data/real_SIZE.nc)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out file (refused otherwise)")
    parser.add_argument("--size", type=int, default=128, help="image side N (default 128)")
    parser.add_argument("--views", type=int, nargs="+", default=None,
                        help="view counts to simulate (default 5 20; --real: 20 60)")
    parser.add_argument("--phantoms", type=int, default=None,
                        help="number of phantoms (10; not with --real)")
    parser.add_argument("--seed", type=int, default=0, help="phantom and noise seed (0)")
    parser.add_argument("--protocol", default="fine", choices=PROTOCOLS,
                        help="fine: project a finer grid (default); same: the paper's protocol")
    parser.add_argument("--supersample", type=int, default=2,
                        help="fine-grid factor for --protocol fine (default 2)")
    parser.add_argument("--noise-snr", type=float, default=None,
                        help="Gaussian noise at this SNR in dB (default: noiseless; --real: 40)")
    args = parser.parse_args(argv)
    views = args.views or ([20, 60] if args.real else [5, 20])
    try:
        if any(v <= 0 for v in views) or args.size <= 0 or args.supersample < 2:
            raise InputError("--size and --views must be positive and --supersample >= 2")
        if args.real and args.phantoms is not None:
            raise InputError("--phantoms does not apply to --real")
        stem = "real" if args.real else "benchmark"
        out = check_output(args.out or Path(f"data/{stem}_{args.size}.nc"),
                           overwrite=args.overwrite, what="--out")
        check_memory(args.size, max(views) if args.protocol == "same" else 0,
                     points=2 * args.supersample)
        with output_lock(out):
            if args.real:
                snr = 40.0 if args.noise_snr is None else args.noise_snr
                dataset = build_real_benchmark(args.size, tuple(views), args.seed,
                                               args.supersample, snr, protocol=args.protocol)
                what = f"{dataset.sizes['phantom']} real CT slices"
            else:
                n = 10 if args.phantoms is None else args.phantoms
                dataset = build_benchmark(args.size, tuple(views), n, args.seed,
                                          args.supersample, protocol=args.protocol,
                                          snr_db=args.noise_snr)
                what = f"{n} phantoms"
            write_dataset(dataset, out)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}: {what} at {args.size} x {args.size}, views {views}, "
          f"protocol {args.protocol}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
