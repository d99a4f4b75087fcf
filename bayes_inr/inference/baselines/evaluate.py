"""Score the classical reconstructions on a benchmark split, and write the rows as CSV.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Iterable, Mapping, Sequence

from ...core.atomic import atomic_path
from ...core.errors import InputError
from .classical import reconstruct
from .methods import check_iterations
from .tv import check_weight, tv_settings


def evaluate(dataset, methods: Sequence[str], views: int, split: str,
             iterations: Mapping[str, int] | None = None, projector: str = "linear",
             tv_weight: float | None = None, name: str | None = None) -> list[dict]:
    """Reconstruct every image of ``split`` with each method; one row per (method, image).

    ``dataset`` is a benchmark from :func:`bayes_inr.data.benchmark.load_benchmark`; ``split`` is
    "val", "test" or "all"; ``iterations`` overrides ``DEFAULT_ITERATIONS`` per method.
    TV takes ``tv_weight`` and ``iterations["tv"]`` where given, else the settings of
    :func:`tv_settings` for the dataset ``name`` (its file name) at ``views``, else (no
    ``name``) ``DEFAULT_TV_WEIGHT`` and ``DEFAULT_ITERATIONS["tv"]``.
    """
    from ...data.benchmark import benchmark_ids, benchmark_sample
    from ...evaluation.metrics import psnr, ssim

    iterations = dict(iterations or {})
    rows = []
    for method in methods:
        count = check_iterations(method, iterations.get(method))
        weight = check_weight(method, tv_weight if method == "tv" else None)
        if method == "tv" and name is not None and (tv_weight is None or "tv" not in iterations):
            chosen = tv_settings(name, views)
            weight = chosen.weight if tv_weight is None else weight
            count = chosen.iterations if "tv" not in iterations else count
        for image_id in benchmark_ids(dataset, split):
            sample = benchmark_sample(dataset, image_id, views)
            if sample.ground_truth is None:
                raise InputError(f"image {image_id} has no ground truth to score against")
            start = time.perf_counter()
            image = reconstruct(method, sample.sinogram, sample.geometry, count, projector,
                                weight)
            seconds = time.perf_counter() - start
            rows.append({
                "method": method, "image_id": image_id, "views": views,
                "split": getattr(sample, "meta", {}).get("split", split),
                "psnr": float(psnr(image, sample.ground_truth)),
                "ssim": float(ssim(image, sample.ground_truth)),
                "iterations": "" if count is None else count,
                "weight": "" if weight is None else weight, "seconds": seconds,
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


CSV_COLUMNS = ("method", "image_id", "views", "split", "psnr", "ssim", "iterations", "weight",
               "seconds")
