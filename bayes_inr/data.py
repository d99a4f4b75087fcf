"""Sinogram simulation, the benchmark dataset, and the ``Sample`` every method consumes.

Ground-truth sinograms avoid the "inverse crime" by default (``protocol="fine"``):
the object is projected on a grid ``supersample`` times finer than the
reconstruction grid (phantoms are rendered there directly; image files are
upsampled piecewise-constantly) with detectors of the same physical width. The
paper's protocol, projecting the N x N truth with the very operator used in
reconstruction, is ``protocol="same"``. Noise is Gaussian, set by a target SNR in
dB (``sigma^2 = mean(p^2) / 10^(snr / 10)``) or by ``sigma`` directly, and seeded.

Run ``python -m bayes_inr.data`` to write the benchmark: 10 phantoms (ids 0-4
validation, 5-9 test), each at 5 and 20 views.
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
from .phantoms import random_phantom

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
    if protocol == "same":
        from .radon import projection_matrix

        geometry.check_image(image)
        return (projection_matrix(geometry, projector) @ image.ravel()).reshape(
            geometry.sino_shape).astype(np.float32)
    factor, rest = divmod(image.shape[0], geometry.size)
    if rest or factor < 2:
        raise InputError(f"protocol 'fine' needs an image k times finer than {geometry.size} "
                         f"(k >= 2), got {image.shape[0]}")
    vol, proj = geometry.astra_geometries(supersample=factor)
    pid = astra.create_projector(projector, proj, vol)
    try:
        sid, sino = astra.create_sino(image, pid)
        astra.data2d.delete(sid)
    finally:
        astra.projector.delete(pid)
    return (sino * (geometry.pixel_size / factor)).astype(np.float32)


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


def build_benchmark(size: int = 128, views=(5, 20), n_phantoms: int = 10, seed: int = 0,
                    supersample: int = 2, **kwargs) -> xr.Dataset:
    """The benchmark as one dataset: ``image`` (phantom, y, x) and ``sinogram_V``
    (phantom, angle_V, detector) per view count V; ``split`` labels ids 0-4 "val"
    and 5-9 "test". Generation settings are in the attributes."""
    if n_phantoms <= 0 or not views:
        raise InputError("need at least one phantom and one view count")
    phantoms = [phantom_images(i, size, seed, supersample) for i in range(n_phantoms)]
    data, coords, attrs = {}, {}, {}
    for v in views:
        samples = [phantom_sample(i, v, size, seed=seed, supersample=supersample, images=pair,
                                  **kwargs) for i, pair in enumerate(phantoms)]
        data[f"sinogram_{v}"] = (("phantom", f"angle_{v}", "detector"),
                                 np.stack([s.sinogram for s in samples]))
        data[f"noise_sigma_{v}"] = (("phantom",), np.array([s.noise_sigma for s in samples]))
        coords[f"angle_{v}"] = samples[0].geometry.angles
        attrs.update(samples[0].meta)
    data["image"] = (("phantom", "y", "x"), np.stack([truth for truth, _ in phantoms]))
    split = np.array(["val" if i in SPLITS["val"] else "test" for i in range(n_phantoms)])
    coords.update(phantom=np.arange(n_phantoms), split=("phantom", split))
    attrs.update(size=size, views=list(views), seed=seed,
                 n_detectors=samples[0].geometry.n_detectors,
                 units="line integrals in image units; the image spans [-1, 1]^2",
                 phantom="modified Shepp-Logan, every parameter + N(0, 0.05^2)")
    return xr.Dataset(data, coords=coords, attrs=attrs)


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
        description="Write the phantom benchmark (ids 0-4 validation, 5-9 test) as netCDF.")
    parser.add_argument("--out", type=Path, help="output file (default data/benchmark_SIZE.nc)")
    parser.add_argument("--size", type=int, default=128, help="image side N (default 128)")
    parser.add_argument("--views", type=int, nargs="+", default=[5, 20],
                        help="view counts to simulate (default 5 20)")
    parser.add_argument("--phantoms", type=int, default=10, help="number of phantoms (10)")
    parser.add_argument("--seed", type=int, default=0, help="phantom and noise seed (0)")
    parser.add_argument("--protocol", default="fine", choices=PROTOCOLS,
                        help="fine: project a finer grid (default); same: the paper's protocol")
    parser.add_argument("--supersample", type=int, default=2,
                        help="fine-grid factor for --protocol fine (default 2)")
    parser.add_argument("--noise-snr", type=float, default=None,
                        help="Gaussian noise at this SNR in dB (default: noiseless)")
    args = parser.parse_args(argv)
    try:
        if any(v <= 0 for v in args.views) or args.size <= 0 or args.supersample < 2:
            raise InputError("--size and --views must be positive and --supersample >= 2")
        dataset = build_benchmark(args.size, tuple(args.views), args.phantoms, args.seed,
                                  args.supersample, protocol=args.protocol,
                                  snr_db=args.noise_snr)
        out = write_dataset(dataset, args.out or Path(f"data/benchmark_{args.size}.nc"))
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}: {args.phantoms} phantoms at {args.size} x {args.size}, "
          f"views {args.views}, protocol {args.protocol}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
