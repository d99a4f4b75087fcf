"""Benchmark of a network's TV start: the fit to the TV image on random pixel batches
against the same number of steps on every pixel.

    python analysis/bench_tv_start.py [--repeats 3]

For the first validation image of the phantoms (models/mcd_20.toml) and of the real CT
slices (models/mcd_real_20.toml) at 20 views: the wall time of
:func:`~bayes_inr.inference.tv_start.fit_to_image` (median over ``--repeats``, the two
variants alternating in one process) and how closely each network renders the TV image
(PSNR against it) and the truth.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bayes_inr.data.benchmark import benchmark_ids, benchmark_sample, load_benchmark
from bayes_inr.evaluation.metrics import psnr
from bayes_inr.inference.config import load_config
from bayes_inr.inference.single import build_model
from bayes_inr.inference.tv_start import FIT_BATCH, TV_ITERATIONS, fit_to_image, tv_image

CASES = (("phantoms", "data/benchmark_128.nc", "models/mcd_20.toml"),
         ("real CT", "data/real_128.nc", "models/mcd_real_20.toml"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--views", type=int, default=20)
    args = parser.parse_args()
    for name, path, config_path in CASES:
        dataset = load_benchmark(path)
        sample = benchmark_sample(dataset, benchmark_ids(dataset, "val")[0], args.views)
        model = build_model(sample, load_config(config_path))
        target = tv_image(model, TV_ITERATIONS)
        variants = {"every pixel": target.size, f"{FIT_BATCH} pixels": FIT_BATCH}
        times = {label: [] for label in variants}
        fitted = {}  # the weights of each variant's last timed fit (the fits are seeded)
        for _ in range(args.repeats):
            for label, batch in variants.items():
                start = time.perf_counter()
                fitted[label] = fit_to_image(model.inr, model.init_params(0), target,
                                             batch=batch)
                times[label].append(time.perf_counter() - start)
        reference = np.median(times["every pixel"])
        print(f"{name}, {args.views} views (TV {psnr(target, sample.ground_truth):.2f} dB):")
        for label in variants:
            image = model.inr.render(fitted[label]).numpy()
            seconds = np.median(times[label])
            print(f"  {label:>12}: {seconds:5.1f} s (x{reference / seconds:.2f}), "
                  f"{psnr(image, target):.2f} dB against TV, "
                  f"{psnr(image, sample.ground_truth):.2f} dB against the truth", flush=True)


if __name__ == "__main__":
    main()
