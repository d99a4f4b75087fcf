"""A first look at Bayesian TV on one validation phantom: NUTS on the pixel grid under a TV prior.

    python analysis/explore_btv.py [--image-id 0] [--views 20] [--sigmas 0.01 0.002 0.001 0.0005]

The posterior is exp(-(||A x - p||^2 / 2 + w TV(x)) / sigma^2) on x = sigmoid(u), with a weak
Normal(0, 10) prior on the logits u: the pixel-grid model (``--model gop --head sigmoid``) with
likelihood sigma and TV factor lambda = w / sigma^2, so that its MAP is the TV baseline's
solution (w: TV's weight chosen on validation, ``models/baselines/tv.toml``). sigma is then a
temperature: it sets the width of the posterior but not its mode. Every chain starts at the TV
image (logits of the image clipped to [1e-3, 1 - 1e-3]) and runs NUTS (tree depth 6). Only
validation images are accepted. Writes ``analysis/results/btv_explore.md``.

This is an exploration, not a method of the package yet: the chains are short and single, and
one phantom is no selection.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bayes_inr import posterior
from bayes_inr.core.atomic import atomic_path
from bayes_inr.core.provenance import git_state
from bayes_inr.data.benchmark import benchmark_ids, benchmark_sample, load_benchmark
from bayes_inr.evaluation.metrics import score
from bayes_inr.inference import mcmc
from bayes_inr.inference.baselines.classical import reconstruct
from bayes_inr.inference.baselines.tv import tv_settings
from bayes_inr.inference.config import FitConfig
from bayes_inr.inference.single import build_model

DATASET = "data/benchmark_128.nc"
OUT = Path(__file__).resolve().parent / "results" / "btv_explore.md"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-id", type=int, default=0)
    parser.add_argument("--views", type=int, default=20)
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.01, 0.002, 0.001, 0.0005])
    parser.add_argument("--warmup", type=int, default=150)
    parser.add_argument("--draws", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    data = load_benchmark(DATASET)
    if args.image_id not in benchmark_ids(data, "val"):
        parser.exit(2, f"error: image {args.image_id} is not a validation image\n")
    torch.set_num_threads(args.threads)
    sample = benchmark_sample(data, args.image_id, args.views)
    tv = tv_settings(DATASET, args.views)
    start = time.perf_counter()
    image = reconstruct("tv", sample.sinogram, sample.geometry, iterations=tv.iterations,
                        weight=tv.weight)
    tv_scores = score(posterior.from_reconstruction(
        image, sinogram=sample.sinogram, angles=sample.geometry.angles, method="TV",
        ground_truth=sample.ground_truth))
    clipped = np.clip(image, 1e-3, 1 - 1e-3)
    start_point = torch.from_numpy(np.log(clipped / (1 - clipped)).astype(np.float32))
    rows = []
    for sigma in args.sigmas:
        t0 = time.perf_counter()
        config = FitConfig(inference="nuts", model="gop", head="sigmoid", prior="normal:10",
                           sigma=sigma, tv_weight=tv.weight / sigma**2, warmup=args.warmup,
                           draws=args.draws, max_tree_depth=6, init="prior")
        potential = mcmc.FlatPotential(build_model(sample, config))
        run = mcmc.MCMCRun(potential, mcmc.MCMCSettings.from_config(config, kernel="nuts"),
                           start_point.reshape(1, -1))
        run.run(progress=False)
        idata = run.inference_data(sinogram=sample.sinogram, angles=sample.geometry.angles,
                                   method="btv", config={}, ground_truth=sample.ground_truth)
        s, stats = score(idata), idata.sample_stats
        rows.append((sigma, s, float(stats["tree_depth"].mean()),
                     float(stats["step_size"].mean()), int(stats["diverging"].sum()),
                     time.perf_counter() - t0))
        print(f"sigma {sigma:g}: {s['psnr']:.2f} dB, object CRPS {s['crps_object']:.4f}",
              flush=True)
    commit, dirty = git_state()
    lines = [f"# Bayesian TV, a first look (validation phantom {args.image_id}, "
             f"{args.views} views)", "",
             f"Written by `python analysis/explore_btv.py` (commit {commit[:10]}"
             f"{' with uncommitted changes' if dirty else ''}, {args.threads} threads, "
             f"{time.perf_counter() - start:.0f} s); see its docstring. One chain of "
             f"{args.warmup} warmup + {args.draws} draws per sigma, started at the TV image. "
             f"TV itself: {tv_scores['psnr']:.2f} dB, object CRPS (its mean absolute error) "
             f"{tv_scores['crps_object']:.4f}.", "",
             "| sigma | lambda | mean PSNR | CRPS obj | ECE obj | cov90 obj (below / above) "
             "| tree depth | step | divergences | seconds |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for sigma, s, depth, step, div, seconds in rows:
        lines.append(f"| {sigma:g} | {tv.weight / sigma**2:.3g} | {s['psnr']:.2f} | "
                     f"{s['crps_object']:.4f} | {s['ece_object']:.3f} | "
                     f"{s['coverage_90_object']:.2f} ({s['below_90_object']:.2f} / "
                     f"{s['above_90_object']:.2f}) | {depth:.1f} | {step:.2e} | {div} | "
                     f"{seconds:.0f} |")
    with atomic_path(OUT) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
