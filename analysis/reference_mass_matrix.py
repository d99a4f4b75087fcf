"""What lets NUTS move on the reference posterior: network, TV and mass matrix, one at a time.

    python analysis/reference_mass_matrix.py      # about 30 min on a 2-core CPU

One chain on validation phantom 0 of ``data/reference_64.nc`` (:data:`RUNS`): the reference
recipe's former width-64, depth-1 ReLU network with the exact TV (:data:`DEPTH1`) under the
adapted diagonal and the dense Gauss-Newton mass matrix
(:mod:`bayes_inr.inference.mcmc.precondition`), without TV, from MAP starts of 2000 and
20000 Adam steps, and with tanh and a smoothed TV; then the recipe's depth-0 read-out with
the exact TV, without TV, and with the smoothed TV whose curvature the mass matrix holds
(``models/hmc_reference.toml``). Each from the MAP fit of seed 0, 100 warmup transitions
and 40 kept draws. For each: the tree depth, the adapted step size, the leapfrog steps per
transition, the acceptance, the log density ``lp`` at the start and over the first and last
third of the draws (a chain at stationarity keeps it level; draws above the start say the
start is no mode), the posterior-mean PSNR and the wall time (MAP fit and, for the dense
matrix, its construction included). Writes ``analysis/results/reference/mass_matrix.md``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from bayes_inr.core.atomic import atomic_path
from bayes_inr.core.provenance import git_state
from bayes_inr.data.benchmark import benchmark_ids, benchmark_sample, load_benchmark
from bayes_inr.evaluation.metrics import psnr
from bayes_inr.inference.config import load_config
from bayes_inr.inference.fit import fit
from bayes_inr.inference.mcmc import FlatPotential
from bayes_inr.inference.single import build_model

DATA = Path("data/reference_64.nc")
OUT = Path("analysis/results/reference/mass_matrix.md")
WARMUP, DRAWS = 100, 40
DEPTH1 = {"depth": 1, "width": 64, "n_features": 0, "omega0": 2.0, "activation": "relu",
          "tv_smoothing": 0.0, "max_tree_depth": 7}
"""The reference recipe's network, exact TV and tree depth until it became a depth-0
read-out with a smoothed TV (``models/hmc_reference.toml`` says why)."""
RUNS = [
    ("depth 1, diag", DEPTH1 | {"mass_matrix": "diag"}),
    ("depth 1, gauss_newton", DEPTH1),
    ("depth 1, gauss_newton, no TV", DEPTH1 | {"tv_weight": 0.0}),
    ("depth 1, diag, 20000-step MAP", DEPTH1 | {"mass_matrix": "diag", "steps": 20000}),
    ("depth 1, gauss_newton, 20000-step MAP", DEPTH1 | {"steps": 20000}),
    ("depth 1, tanh, gauss_newton, smoothed TV",
     DEPTH1 | {"activation": "tanh", "tv_smoothing": 0.01}),
    ("depth 0, gauss_newton, exact TV", {"tv_smoothing": 0.0}),
    ("depth 0, gauss_newton, no TV", {"tv_weight": 0.0}),
    ("depth 0, gauss_newton, smoothed TV (the recipe)", {}),
]
"""(label, changes to ``models/hmc_reference.toml``): the runs, in the order they were tried."""


def probe(sample, changes: dict) -> dict:
    """One chain's statistics under the reference recipe with ``changes``."""
    config = load_config("models/hmc_reference.toml", chains=1, workers=1, warmup=WARMUP,
                         draws=DRAWS, threads=2, **changes)
    start = time.perf_counter()
    idata = fit(sample, config, progress=False)
    seconds = time.perf_counter() - start
    stats = idata.sample_stats
    lp = stats["lp"].values[0]
    potential = FlatPotential(build_model(sample, config))
    start_value, _ = potential.value_and_grad(
        torch.from_numpy(idata.constant_data["mcmc_init"].values[0]).float(), with_grad=False)
    third = len(lp) // 3
    image = idata.posterior_predictive["image"].values[0]
    return {"tree depth": config.max_tree_depth,
            "step size": float(stats["step_size"].values[0, 0]),
            "leapfrog steps (median)": float(np.median(stats["n_steps"].values)),
            "acceptance": float(stats["acceptance_rate"].values.mean()),
            "lp at the start": -float(start_value),
            "lp, first third": float(lp[:third].mean()),
            "lp, last third": float(lp[-third:].mean()),
            "mean PSNR": psnr(image.mean(0), sample.ground_truth), "wall s": seconds}


def main() -> None:
    data = load_benchmark(DATA)
    sample = benchmark_sample(data, benchmark_ids(data, "val")[0], 20)
    rows = []
    for label, changes in RUNS:
        rows.append({"run": label} | probe(sample, changes))
        print(rows[-1], flush=True)
    commit, dirty = git_state()
    keys = list(rows[0])
    lines = ["# Mass matrices on the reference posterior", "",
             f"Written by `python analysis/reference_mass_matrix.py` (commit {commit[:10]}"
             f"{', dirty tree' if dirty else ''}): one chain of `models/hmc_reference.toml` "
             f"with the changes of each run, from the MAP fit of seed 0, {WARMUP} warmup "
             f"transitions, {DRAWS} draws, 2 torch threads. Depth 1: the recipe's former "
             "width-64 ReLU network with the exact TV; depth 0: its 2048-feature read-out; "
             "TV factor 15, smoothed by 0.01 where said; MAP of 2000 Adam steps unless "
             "said.", "",
             "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        lines.append("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v)
                                       for v in row.values()) + " |")
    with atomic_path(OUT) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
