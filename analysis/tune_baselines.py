"""Choose the iteration counts of the iterative baselines on the validation split.

    python analysis/tune_baselines.py [--dataset data/benchmark_128.nc] [--views 5,20]
        [--counts 1,2,5,10,20,50,100,200,500,1000,2000] [--methods cgls,em,sart,sirt]

For each iterative method (CGLS, EM, SART, SIRT) and each view count, every
validation image is reconstructed from scratch at every iteration count and the
mean PSNR and SSIM are recorded. The best count per view count is printed, and
so is the count best on the mean PSNR over all view counts: that one serves
every view count and is the one to put in ``bayes_inr.baselines.DEFAULT_ITERATIONS``.
Only the validation split is read. Results go to
``analysis/results/baseline_iterations.csv``: one row per (method, views,
iterations), plus rows with ``views = mean`` for the mean over view counts.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping, Sequence

import numpy as np

from bayes_inr.core.errors import InputError, check_choice
from bayes_inr.inference.baselines.classical import reconstruct
from bayes_inr.inference.baselines.evaluate import write_csv
from bayes_inr.inference.baselines.methods import ITERATIVE
from bayes_inr.physics.radon import PROJECTORS

COUNTS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
COLUMNS = ("method", "views", "iterations", "mean_psnr", "mean_ssim", "n_images", "seconds")


def sweep(samples: Mapping[int, Sequence], methods: Sequence[str], counts: Sequence[int],
          projector: str = "linear", log=print) -> list[dict]:
    """Mean PSNR and SSIM per (method, views, iterations) over ``samples[views]``.

    ``samples`` maps a view count to its validation samples (objects with
    ``sinogram``, ``geometry`` and ``ground_truth``).
    """
    from bayes_inr.evaluation.metrics import psnr, ssim

    rows = []
    for method in methods:
        for views, group in samples.items():
            for count in counts:
                start = time.perf_counter()
                scores = []
                for sample in group:
                    image = reconstruct(method, sample.sinogram, sample.geometry, count,
                                        projector)
                    scores.append((psnr(image, sample.ground_truth),
                                   ssim(image, sample.ground_truth)))
                seconds = (time.perf_counter() - start) / len(group)
                mean_psnr, mean_ssim = np.mean(scores, axis=0)
                rows.append({"method": method, "views": views, "iterations": count,
                             "mean_psnr": float(mean_psnr), "mean_ssim": float(mean_ssim),
                             "n_images": len(group), "seconds": seconds})
                log(f"{method:<5} {views:>3} views {count:>5} it  PSNR {mean_psnr:6.2f}  "
                    f"SSIM {mean_ssim:.4f}  {seconds:7.3f} s/image")
    return rows


def with_means(rows: list[dict]) -> list[dict]:
    """``rows`` plus, per (method, iterations), the mean over view counts (``views = mean``)."""
    out = list(rows)
    keys = dict.fromkeys((r["method"], r["iterations"]) for r in rows)
    for method, count in keys:
        mine = [r for r in rows if r["method"] == method and r["iterations"] == count]
        out.append({"method": method, "views": "mean", "iterations": count,
                    **{k: float(np.mean([r[k] for r in mine]))
                       for k in ("mean_psnr", "mean_ssim", "seconds")},
                    "n_images": sum(r["n_images"] for r in mine)})
    return out


def best_counts(rows: list[dict]) -> dict[tuple[str, object], int]:
    """The iteration count with the highest mean PSNR per (method, views)."""
    best: dict[tuple[str, object], dict] = {}
    for row in rows:
        key = (row["method"], row["views"])
        if key not in best or row["mean_psnr"] > best[key]["mean_psnr"]:
            best[key] = row
    return {key: row["iterations"] for key, row in best.items()}


def int_list(text: str, what: str) -> list[int]:
    """Comma-separated positive integers, or one InputError naming the flag ``what``."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise InputError(f"{what} must be positive integers, got {text!r}")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sweep; returns the exit status (2 on bad input)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="data/benchmark_128.nc",
                        help="benchmark netCDF file (default data/benchmark_128.nc)")
    parser.add_argument("--views", default="5,20",
                        help="comma-separated view counts to tune on (default 5,20)")
    parser.add_argument("--counts", default=",".join(map(str, COUNTS)),
                        help="comma-separated iteration counts to try (default %(default)s)")
    parser.add_argument("--methods", default=",".join(ITERATIVE),
                        help="comma-separated iterative methods (default %(default)s)")
    parser.add_argument("--projector", default="linear", choices=PROJECTORS,
                        help="astra projector (default linear)")
    parser.add_argument("--out", default="analysis/results/baseline_iterations.csv",
                        help="output CSV (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        views = int_list(args.views, "--views")
        counts = sorted(set(int_list(args.counts, "--counts")))
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        for method in methods:
            check_choice("iterative method", method, ITERATIVE)
        from bayes_inr.data.benchmark import benchmark_ids, benchmark_sample, load_benchmark

        dataset = load_benchmark(args.dataset)
        ids = benchmark_ids(dataset, "val")
        samples = {v: [benchmark_sample(dataset, i, v) for i in ids] for v in views}
    except (InputError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    print(f"validation ids {ids}, views {views}, projector {args.projector}, "
          f"dataset {args.dataset} ({dict(dataset.attrs).get('protocol', '?')} protocol, "
          f"SNR {dict(dataset.attrs).get('snr_db', '?')})")
    rows = with_means(sweep(samples, methods, counts, args.projector))
    write_csv(args.out, rows, COLUMNS)

    best = best_counts(rows)
    print("\nbest iteration count by mean validation PSNR")
    print(f"{'method':<8}" + "".join(f"{f'{v} views':>10}" for v in views) + f"{'mean':>10}")
    for method in methods:
        print(f"{method:<8}" + "".join(f"{best[method, v]:>10}" for v in views)
              + f"{best[method, 'mean']:>10}")
        if best[method, "mean"] == counts[-1]:
            print(f"  note: {method} is best at the largest count tried; extend --counts")
    chosen = {m: best[m, "mean"] for m in methods}
    print(f"\nDEFAULT_ITERATIONS = {chosen}\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
