"""Benchmark: HMC/NUTS chains in turn against chains in worker processes, and the most that
vectorising the chains over one potential evaluation could gain.

    python analysis/bench_chains.py > analysis/results/bench_chains.txt
    python analysis/bench_chains.py --quick       # a smoke run of the whole script

The posterior is ``--config``'s (default the reference recipe, ``models/hmc_reference.toml``)
on validation phantom 0 of the 64 x 64, 40 dB dataset that
``analysis/reference_posterior.py`` writes. The recorded results
(``analysis/results/bench_chains.txt``) are of the recipe's former width-64, depth-1 ReLU
network.

1. **Processes.** The same ``--chains`` chains (short runs: ``--warmup`` + ``--draws``
   transitions from the same start points, the network's initialisations, tree depth
   ``--max-tree-depth``) run in turn in one process with all the cores'
   threads, and at once in worker processes of one thread each
   (:func:`bayes_inr.core.workers.run_tasks`). The two variants alternate, ``--repeats``
   times; medians of the wall time of the sampling (start points are computed once, before).
2. **Vectorised, an upper bound.** One evaluation of the potential and its gradient (torch
   autograd through the network and the projector) for a batch of C parameter vectors,
   against C evaluations of one vector, in one process with all threads, and against one
   vector per process on one thread (what the processes do). NUTS builds a different
   tree in every chain, so a vectorised sampler would also wait for the longest tree of
   the batch at every transition: the batch's gain per evaluation bounds its gain.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import torch

from bayes_inr.data.benchmark import benchmark_sample, load_benchmark
from bayes_inr.inference import mcmc
from bayes_inr.inference.config import load_config
from bayes_inr.inference.single import build_model

warnings.filterwarnings("ignore")


def sample_chains(potential, settings, inits, workers: int, threads: int) -> float:
    """Wall seconds of running ``inits`` chains with ``workers`` processes."""
    torch.set_num_threads(threads)
    run = mcmc.MCMCRun(potential, settings, inits.clone())
    start = time.perf_counter()
    run.run(progress=False, workers=workers, threads=threads)
    return time.perf_counter() - start


def autograd_seconds(potential, thetas: torch.Tensor, repeats: int) -> float:
    """Median seconds of one value-and-gradient pass of the potential's likelihood and
    network for the batch ``thetas`` (C, dim), by torch autograd."""
    model = potential.model
    a, _ = model.operator.matrices
    data = model.sinogram.reshape(-1, 1)
    times = []
    for _ in range(repeats + 1):  # the first pass warms up and is not counted
        theta = thetas.clone().requires_grad_()
        start = time.perf_counter()
        images = model.inr.render(potential.unflatten(theta))
        residual = a @ images.reshape(len(thetas), -1).T - data
        (0.5 * residual.square().sum() / model.sigma**2).backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def by_hand_seconds(potential, theta: torch.Tensor, repeats: int) -> float:
    """Median seconds of the sampler's own value-and-gradient (written by hand)."""
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        potential.value_and_grad(theta)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="data/reference_64.nc")
    parser.add_argument("--config", default="hmc_reference")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--draws", type=int, default=50)
    parser.add_argument("--max-tree-depth", type=int, default=5,
                        help="NUTS tree depth cap (the recipe's 7 makes the benchmark long)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.warmup, args.draws, args.repeats = 5, 5, 1
    cores = os.cpu_count() or 1
    config = load_config(args.config, chains=args.chains, warmup=args.warmup,
                         draws=args.draws, max_tree_depth=args.max_tree_depth)
    sample = benchmark_sample(load_benchmark(args.dataset), 0, 20)
    potential = mcmc.FlatPotential(build_model(sample, config))
    settings = mcmc.MCMCSettings.from_config(config, kernel=config.inference)
    torch.set_num_threads(cores)
    inits = torch.stack([potential.initial(config.seed + k) for k in range(args.chains)])
    print(f"# {args.config} on {args.dataset} phantom 0: {potential.dim} parameters, "
          f"{args.chains} chains of {args.warmup} warmup + {args.draws} draws "
          f"({config.inference}, tree depth <= {config.max_tree_depth}), {cores} cores, "
          f"torch {torch.__version__}")

    print("\n== 1. chains in turn (1 process, all threads) vs in worker processes "
          "(1 thread each); alternating, wall s ==")
    variants = {"in turn": (1, cores), f"{min(cores, args.chains)} workers": (
        min(cores, args.chains), 1)}
    seconds = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, (workers, threads) in variants.items():
            seconds[name].append(sample_chains(potential, settings, inits, workers, threads))
    for name, values in seconds.items():
        print(f"  {name:<12} median {statistics.median(values):7.1f} s  "
              f"({', '.join(f'{v:.1f}' for v in values)})")
    serial, parallel = (statistics.median(v) for v in seconds.values())
    print(f"  speed-up of the workers: {serial / parallel:.2f}x")

    print("\n== 2. one potential + gradient evaluation by autograd, per parameter vector "
          "(median of 20) ==")
    reps = 3 if args.quick else 20
    torch.set_num_threads(1)
    by_hand = by_hand_seconds(potential, inits[0], reps)
    one_thread = autograd_seconds(potential, inits[:1], reps)
    torch.set_num_threads(cores)
    one = autograd_seconds(potential, inits[:1], reps)
    print(f"  1 vector, 1 thread          {1e3 * one_thread:7.2f} ms; {cores} processes "
          f"at once: {1e3 * one_thread / cores:.2f} ms per vector")
    print(f"  1 vector, {cores} threads         {1e3 * one:7.2f} ms")
    best = 0.0
    for batch in (2, 4, 8):
        thetas = inits[torch.arange(batch) % len(inits)]
        per = autograd_seconds(potential, thetas, reps) / batch
        best = max(best, one_thread / cores / per)
        print(f"  batch of {batch}, {cores} threads    {1e3 * per:7.2f} ms per vector "
              f"({one_thread / cores / per:.2f}x the processes' rate)")
    print(f"  the sampler's gradient (by hand), 1 vector, 1 thread: {1e3 * by_hand:.2f} ms; "
          f"{cores} processes at once: {1e3 * by_hand / cores:.2f} ms per vector")
    print(f"  a vectorised sampler would need a batched hand-written gradient; if batching "
          f"gained it what it gains autograd ({best:.2f}x at best), it would beat the "
          f"processes by at most {best:.2f}x, before waiting for the longest tree of the batch "
          "at every transition")


if __name__ == "__main__":
    main()
