"""Benchmark of one SVI fit: step time, achieved GFLOP/s, and validation accuracy.

    python analysis/bench_fit.py [--views 20 5] [--ids 0 1 2 3 4] [--repeats 3]

1. Training-step time of models/mcd_V.toml on a 128 x 128 phantom (median over
   ``--repeats`` runs of 50 steps) and the FLOP rate it achieves (dense layers,
   forward + backward = 3x the forward matmul FLOPs), against this CPU's measured
   float32 matmul peak (median of torch.mm on 2048 x 2048).
2. For every validation phantom: PSNR / ECE of the MCD fit against SIRT's PSNR, and
   the fit's wall time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bayes_inr.data.benchmark import benchmark_ids, benchmark_sample, load_benchmark
from bayes_inr.evaluation.metrics import psnr, score
from bayes_inr.inference.baselines.classical import reconstruct
from bayes_inr.inference.config import load_config
from bayes_inr.inference.fit import fit
from bayes_inr.inference.guides import DropoutGuide
from bayes_inr.inference.single import build_model
from bayes_inr.inference.svi import fit_svi


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / np.median(times) / 1e9


def step_flops(config, pixels: int) -> float:
    dense = sum(i * o for i, o in config.architecture().layer_sizes())
    return 3 * 2 * pixels * dense


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="data/benchmark_128.nc")
    parser.add_argument("--views", type=int, nargs="+", default=[20, 5])
    parser.add_argument("--ids", type=int, nargs="+",
                        help="image ids (default: the dataset's validation split)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    dataset = load_benchmark(args.dataset)
    args.ids = args.ids or benchmark_ids(dataset, "val")
    print(f"torch threads {torch.get_num_threads()}; float32 matmul peak "
          f"{matmul_peak():.1f} GFLOP/s")
    for views in args.views:
        config = load_config(f"models/mcd_{views}.toml")
        sample = benchmark_sample(dataset, args.ids[0], views)
        model = build_model(sample, config)
        per_step = []
        for _ in range(args.repeats):
            result = fit_svi(model, DropoutGuide(model, model.init_params(0)), steps=50,
                             lr=config.lr, progress=False)
            per_step.append(result.seconds_per_step)
        step = float(np.median(per_step))
        rate = step_flops(config, sample.geometry.size**2) / step / 1e9
        print(f"{views} views: {1e3 * step:.1f} ms/step (median of {args.repeats}), "
              f"{rate:.1f} GFLOP/s in the dense layers")
        rows = []
        for image_id in args.ids:
            sample = benchmark_sample(dataset, image_id, views)
            start = time.perf_counter()
            scores = score(fit(sample, config, progress=False))
            seconds = time.perf_counter() - start
            sirt = psnr(reconstruct("sirt", sample.sinogram, sample.geometry),
                        sample.ground_truth)
            rows.append((scores["psnr"], scores["ece_object"], sirt, seconds))
            print(f"  phantom {image_id}: MCD {scores['psnr']:.2f} dB (object ECE "
                  f"{scores['ece_object']:.3f}), "
                  f"SIRT {sirt:.2f} dB, fit {seconds:.0f} s", flush=True)
        mcd, ece, sirt, seconds = np.mean(rows, axis=0)
        print(f"{views} views mean: MCD {mcd:.2f} dB, SIRT {sirt:.2f} dB, "
              f"gain {mcd - sirt:+.2f} dB, object ECE {ece:.3f}, median fit "
              f"{np.median([r[3] for r in rows]):.0f} s")


if __name__ == "__main__":
    main()
