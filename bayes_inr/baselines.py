"""Classical CT reconstructions: FBP, CGLS, EM, SART and SIRT.

FBP, CGLS, SART and SIRT are astra-toolbox's CPU algorithms run with the same
projector the package's :class:`~bayes_inr.radon.RadonOperator` is built from;
astra has no CPU EM, so MLEM is implemented here on that operator. Sinograms
are in the package's units (see :mod:`bayes_inr.geometry`); they are divided by
the pixel size before astra sees them, so that astra's results are attenuation
values directly. Every result is clipped to [0, 1] as the last step, because
the images are known to lie in [0, 1].

Command line::

    python -m bayes_inr.baselines --dataset data/benchmark_128.nc --views 20 --split val
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch

from .atomic import atomic_path
from .errors import InputError, check_choice
from .geometry import Geometry
from .radon import PROJECTORS, RadonOperator

METHODS = ("fbp", "cgls", "em", "sart", "sirt")
ITERATIVE = ("cgls", "em", "sart", "sirt")

# Chosen on the validation split (phantoms 0-4 of data/benchmark_128.nc: noiseless,
# "fine" protocol, 5 and 20 views) by `python analysis/tune_baselines.py`: the count
# with the best mean PSNR over both view counts (per view count: cgls 50 / 20,
# em 50 / 50, sart 100 / 10, sirt 1000 / 500). Sweep results are in
# analysis/results/baseline_iterations.csv; rerun the script if the benchmark changes.
DEFAULT_ITERATIONS: dict[str, int] = {"cgls": 20, "em": 50, "sart": 20, "sirt": 500}

_ASTRA_NAMES = {"fbp": "FBP", "cgls": "CGLS", "sart": "SART", "sirt": "SIRT"}
_ASTRA_OPTIONS = {
    "fbp": {"FilterType": "ram-lak"},
    "cgls": {},
    "sart": {"MinConstraint": 0.0, "ProjectionOrder": "sequential"},
    "sirt": {"MinConstraint": 0.0},
}


def check_iterations(method: str, iterations) -> int | None:
    """Validate ``iterations`` for ``method``; ``None`` gives the method's default."""
    check_choice("method", method, METHODS)
    if method not in ITERATIVE:
        if iterations is not None:
            raise InputError(f"{method} takes no iterations, got {iterations!r}")
        return None
    if iterations is None:
        return DEFAULT_ITERATIONS[method]
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) \
            or iterations <= 0:
        raise InputError(f"iterations must be a positive integer, got {iterations!r}")
    return int(iterations)


def reconstruct(method: str, sinogram, geometry: Geometry, iterations: int | None = None,
                projector: str = "linear") -> np.ndarray:
    """Reconstruct one image from one sinogram with a classical method.

    Parameters
    ----------
    method : {"fbp", "cgls", "em", "sart", "sirt"}
        FBP uses the Ram-Lak filter; SIRT and SART are constrained to be
        non-negative; SART updates one view at a time in sequential order, and one
        of its iterations is one sweep over all views. EM is MLEM started from
        ones; it needs a non-negative sinogram, so negative measured values are
        clipped to 0 for it.
    sinogram : array (V, D)
        Measured line integrals in package units.
    geometry : Geometry
        The geometry the sinogram was measured in.
    iterations : int, optional
        Iteration count of an iterative method (default ``DEFAULT_ITERATIONS``);
        FBP takes none.
    projector : {"linear", "strip", "line"}
        astra projector used for the forward and back projections.

    Returns
    -------
    np.ndarray
        The image (N, N), float32, clipped to [0, 1] (the images are known to
        lie there).
    """
    check_choice("method", method, METHODS)
    check_choice("projector", projector, PROJECTORS)
    iterations = check_iterations(method, iterations)
    if isinstance(sinogram, torch.Tensor):
        sinogram = sinogram.detach().cpu().numpy()
    sinogram = np.asarray(sinogram, dtype=np.float64)
    if sinogram.ndim != 2:
        raise InputError(f"sinogram shape {sinogram.shape} must be 2-D: "
                         f"({geometry.n_views} views, {geometry.n_detectors} detectors)")
    geometry.check_sinogram(sinogram)
    if method == "em":
        image = _mlem(sinogram, geometry, iterations, projector)
    else:
        image = _astra(method, sinogram, geometry, iterations, projector)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _astra(method: str, sinogram: np.ndarray, geometry: Geometry, iterations: int | None,
           projector: str) -> np.ndarray:
    import astra

    vol_geom, proj_geom = geometry.astra_geometries()
    proj_id = sino_id = rec_id = alg_id = None
    try:
        proj_id = astra.create_projector(projector, proj_geom, vol_geom)
        sino_id = astra.data2d.create("-sino", proj_geom, sinogram / geometry.pixel_size)
        rec_id = astra.data2d.create("-vol", vol_geom, 0.0)
        config = astra.astra_dict(_ASTRA_NAMES[method])
        config["ProjectorId"] = proj_id
        config["ProjectionDataId"] = sino_id
        config["ReconstructionDataId"] = rec_id
        config["option"] = dict(_ASTRA_OPTIONS[method])
        alg_id = astra.algorithm.create(config)
        steps = 1 if iterations is None else iterations
        if method == "sart":
            steps *= geometry.n_views  # astra's SART iteration is one view
        astra.algorithm.run(alg_id, steps)
        return np.array(astra.data2d.get(rec_id), dtype=np.float64)
    finally:
        if alg_id is not None:
            astra.algorithm.delete(alg_id)
        for data_id in (sino_id, rec_id):
            if data_id is not None:
                astra.data2d.delete(data_id)
        if proj_id is not None:
            astra.projector.delete(proj_id)


@torch.no_grad()
def _mlem(sinogram: np.ndarray, geometry: Geometry, iterations: int, projector: str
          ) -> np.ndarray:
    """MLEM: ``x <- x / (A^T 1) * A^T (p / (A x))`` from ``x = 1``, with zero-safe ratios."""
    op = RadonOperator(geometry, projector, dtype=torch.float64)
    p = torch.from_numpy(np.maximum(sinogram, 0.0).astype(np.float64))
    sensitivity = op.adjoint(torch.ones_like(p))
    seen = sensitivity > 0
    inverse_sensitivity = torch.where(seen, 1.0 / sensitivity.clamp_min(1e-300), 0.0)
    tiny = 1e-12 * max(float(p.max()), 1e-12)
    x = seen.to(p.dtype)
    for _ in range(iterations):
        ax = op(x)
        ratio = torch.where(ax > tiny, p / ax.clamp_min(tiny), 0.0)
        x = x * inverse_sensitivity * op.adjoint(ratio)
    return x.numpy()


# ---------------------------------------------------------------------------- command line


def evaluate(dataset, methods: Sequence[str], views: int, split: str,
             iterations: Mapping[str, int] | None = None, projector: str = "linear"
             ) -> list[dict]:
    """Reconstruct every image of ``split`` with each method; one row per (method, image).

    ``dataset`` is a benchmark from :func:`bayes_inr.data.load_benchmark`; ``split`` is
    "val", "test" or "all"; ``iterations`` overrides ``DEFAULT_ITERATIONS`` per method.
    """
    from .data import benchmark_ids, benchmark_sample
    from .metrics import psnr, ssim

    iterations = dict(iterations or {})
    rows = []
    for method in methods:
        count = check_iterations(method, iterations.get(method))
        for image_id in benchmark_ids(dataset, split):
            sample = benchmark_sample(dataset, image_id, views)
            if sample.ground_truth is None:
                raise InputError(f"image {image_id} has no ground truth to score against")
            start = time.perf_counter()
            image = reconstruct(method, sample.sinogram, sample.geometry, count, projector)
            seconds = time.perf_counter() - start
            rows.append({
                "method": method, "image_id": image_id, "views": views,
                "split": getattr(sample, "meta", {}).get("split", split),
                "psnr": float(psnr(image, sample.ground_truth)),
                "ssim": float(ssim(image, sample.ground_truth)),
                "iterations": "" if count is None else count, "seconds": seconds,
            })
    return rows


def write_csv(path: str | os.PathLike, rows: Iterable[Mapping], fieldnames: Sequence[str]
              ) -> None:
    """Write ``rows`` to a CSV file atomically (temporary file in the same folder, then rename)."""
    path = os.path.abspath(os.fspath(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fieldnames))
        writer.writeheader()
        writer.writerows(rows)


CSV_COLUMNS = ("method", "image_id", "views", "split", "psnr", "ssim", "iterations", "seconds")


def _parse_methods(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    if not methods:
        raise InputError("--methods is empty")
    for method in methods:
        check_choice("method", method, METHODS)
    return methods


def _parse_iterations(text: str | None) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep:
            raise InputError(f"--iterations item {item!r} is not METHOD=COUNT")
        check_choice("iterative method", name, ITERATIVE)
        try:
            count = int(value)
        except ValueError:
            raise InputError(f"--iterations {name}: {value!r} is not an integer") from None
        counts[name] = check_iterations(name, count)
    return counts


def _table(rows: list[dict], methods: Sequence[str]) -> str:
    lines = [f"{'method':<8}{'iterations':>11}{'PSNR':>9}{'SSIM':>9}{'images':>8}{'s/image':>9}"]
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        if not mine:
            continue
        lines.append(
            f"{method:<8}{mine[0]['iterations'] or '-':>11}"
            f"{np.mean([r['psnr'] for r in mine]):>9.2f}"
            f"{np.mean([r['ssim'] for r in mine]):>9.4f}{len(mine):>8d}"
            f"{np.mean([r['seconds'] for r in mine]):>9.3f}"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``python -m bayes_inr.baselines``."""
    parser = argparse.ArgumentParser(
        prog="python -m bayes_inr.baselines",
        description="Score classical reconstructions (FBP, CGLS, EM, SART, SIRT) on the "
                    "benchmark dataset: mean PSNR and SSIM per method.",
    )
    parser.add_argument("--dataset", required=True,
                        help="benchmark netCDF file (for example data/benchmark_128.nc)")
    parser.add_argument("--views", type=int, default=20,
                        help="number of projection views of the sinograms to use (default 20)")
    parser.add_argument("--split", default="val", choices=("val", "test", "all"),
                        help="which split to reconstruct (default val)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="comma-separated methods among " + ", ".join(METHODS)
                             + " (default all)")
    parser.add_argument("--iterations", default=None,
                        help="iteration counts overriding the defaults, e.g. sirt=200,em=50 "
                             "(defaults: " + ",".join(f"{k}={v}" for k, v in
                                                      DEFAULT_ITERATIONS.items()) + ")")
    parser.add_argument("--projector", default="linear", choices=PROJECTORS,
                        help="astra projector for the reconstructions (default linear)")
    parser.add_argument("--out", default=None,
                        help="CSV file for one row per (method, image): " + ", ".join(CSV_COLUMNS))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 on bad input)."""
    args = build_parser().parse_args(argv)
    try:
        methods = _parse_methods(args.methods)
        iterations = _parse_iterations(args.iterations)
        if args.views <= 0:
            raise InputError(f"--views must be a positive integer, got {args.views}")
        from .data import load_benchmark

        dataset = load_benchmark(args.dataset)
        rows = evaluate(dataset, methods, args.views, args.split, iterations, args.projector)
    except (InputError, FileNotFoundError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    print(f"{args.split} split, {args.views} views, projector {args.projector}")
    print(_table(rows, methods))
    if args.out:
        write_csv(args.out, rows, CSV_COLUMNS)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
