"""Does a dense Gauss-Newton mass matrix let NUTS move on the reference posterior?

    python analysis/reference_mass_matrix.py      # about 20 min on a 2-core CPU

One chain of ``models/hmc_reference.toml`` with a width-64, depth-1 ReLU network and the
exact TV (:data:`DEPTH1`) on validation phantom 0 of
``data/reference_64.nc`` from the MAP fit of seed 0, 100 warmup transitions and 40 kept
draws, for the adapted diagonal mass matrix and the dense Gauss-Newton one
(:mod:`bayes_inr.inference.mcmc.precondition`): with the recipe's TV factor and without it,
and from the recipe's MAP (2000 Adam steps) and one of 20000 steps (:data:`RUNS`).
For each: the adapted step size, the leapfrog steps per transition, the acceptance, the
log density ``lp`` at the start and over the first and last third of the draws (a chain at
stationarity keeps it level; draws above the start say the start is no mode), the
posterior-mean PSNR and the wall time (MAP fit and, for the dense matrix, its construction
included). Writes ``analysis/results/reference/mass_matrix.md``.
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
RUNS = [("diag", 15.0, 2000), ("gauss_newton", 15.0, 2000), ("gauss_newton", 0.0, 2000),
        ("diag", 15.0, 20000), ("gauss_newton", 15.0, 20000)]
"""(mass matrix, TV factor, Adam steps of the MAP start): the recipe's, and variants."""
WARMUP, DRAWS = 100, 40
DEPTH1 = {"depth": 1, "width": 64, "n_features": 0, "omega0": 2.0, "activation": "relu",
          "tv_smoothing": 0.0, "max_tree_depth": 7}
"""The network, exact TV and tree depth of the measured runs: the reference recipe's until
it became a depth-0 read-out with a smoothed TV (``models/hmc_reference.toml`` says why)."""


def probe(sample, mass: str, tv_weight: float, steps: int) -> dict:
    """One chain's statistics under ``mass`` and ``tv_weight`` from a MAP of ``steps``."""
    config = load_config("models/hmc_reference.toml", chains=1, workers=1, warmup=WARMUP,
                         draws=DRAWS, mass_matrix=mass, tv_weight=tv_weight, steps=steps,
                         threads=2, **DEPTH1)
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
    return {"step size": float(stats["step_size"].values[0, 0]),
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
    for mass, tv_weight, steps in RUNS:
        rows.append({"mass matrix": mass, "TV factor": tv_weight, "MAP steps": steps}
                    | probe(sample, mass, tv_weight, steps))
        print(rows[-1], flush=True)
    commit, dirty = git_state()
    keys = list(rows[0])
    lines = ["# Mass matrices on the reference posterior", "",
             f"Written by `python analysis/reference_mass_matrix.py` (commit {commit[:10]}"
             f"{', dirty tree' if dirty else ''}): one chain of `models/hmc_reference.toml` "
             f"from the MAP fit of seed 0, {WARMUP} warmup transitions, {DRAWS} draws, "
             "2 torch threads, tree depth at most 7.", "",
             "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        lines.append("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v)
                                       for v in row.values()) + " |")
    with atomic_path(OUT) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
