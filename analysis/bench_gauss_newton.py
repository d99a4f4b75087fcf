"""Benchmark: the Gauss-Newton mass matrix as Pyro's dense mass matrix or as whitening.

    python analysis/bench_gauss_newton.py > analysis/results/bench_gauss_newton.txt

On the reference posterior (``models/hmc_reference.toml`` on validation phantom 0 of
``data/reference_64.nc``: 4,097 weights), from the start of a short MAP fit and with the
Gauss-Newton precision ``G`` there, Pyro's HMC runs transitions of a fixed number of
leapfrog steps and a fixed step size (no adaptation) two ways:

- ``dense``: on ``theta`` with Pyro's ``full_mass`` and ``G^{-1}`` as its inverse mass
  matrix (how the package ran it before): two float64 ``dim x dim`` mat-vecs per step;
- ``whitened``: on ``u = L^T (theta - theta0)`` with a unit mass matrix
  (:class:`bayes_inr.inference.mcmc.Whitened`, how it runs now): a triangular solve per
  potential evaluation and one in its gradient, in float32.

The two alternate in one process (one torch thread, as a chain in a worker process);
reported: the median over ``--repeats`` blocks of the wall time per leapfrog step (timed
from each block's first transition on, so the once-per-chain set-up is left out), beside
one potential-and-gradient evaluation alone. Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from pyro.infer.mcmc import HMC, MCMC

from bayes_inr.data.benchmark import benchmark_ids, benchmark_sample, load_benchmark
from bayes_inr.inference.config import load_config
from bayes_inr.inference.mcmc import SITE, FlatPotential, Whitened, gauss_newton_precision
from bayes_inr.inference.mcmc.init import initial_points
from bayes_inr.inference.single import build_model


def transitions(potential, start: torch.Tensor, inverse_mass: torch.Tensor | None,
                step_size: float, steps: int, count: int) -> float:
    """Seconds per leapfrog step of ``count`` HMC transitions on ``potential``, after a
    first one (the kernel's set-up, a Cholesky factor and inverse of the dense matrix, is
    once per chain)."""
    kernel = HMC(potential_fn=potential, step_size=step_size, num_steps=steps,
                 adapt_step_size=False, adapt_mass_matrix=False,
                 full_mass=inverse_mass is not None)
    if inverse_mass is not None:
        setup = kernel.setup

        def setup_with_mass(*args, **kwargs):
            setup(*args, **kwargs)
            kernel.mass_matrix_adapter.inverse_mass_matrix = {(SITE,): inverse_mass}

        kernel.setup = setup_with_mass
    stamps = []
    mcmc = MCMC(kernel, num_samples=count + 1, warmup_steps=0, initial_params={SITE: start},
                disable_progbar=True, hook_fn=lambda *_: stamps.append(time.perf_counter()))
    mcmc.run()
    return (stamps[-1] - stamps[0]) / (count * steps)  # after the first: no set-up


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--transitions", type=int, default=10)
    parser.add_argument("--steps", type=int, default=16, help="leapfrog steps per transition")
    parser.add_argument("--step-size", type=float, default=0.1,
                        help="near the recipe's adapted 0.15 (default %(default)s)")
    parser.add_argument("--map-steps", type=int, default=300)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    data = load_benchmark("data/reference_64.nc")
    sample = benchmark_sample(data, benchmark_ids(data, "val")[0], 20)
    config = load_config("models/hmc_reference.toml", steps=args.map_steps, threads=1)
    potential = FlatPotential(build_model(sample, config))
    (start,) = initial_points(potential, "map", 1, config.seed, steps=config.steps,
                              lr=config.lr, lr_final=config.lr_final, progress=False)
    start = start.double()
    precision = gauss_newton_precision(potential, start)
    inverse = torch.cholesky_inverse(torch.linalg.cholesky(precision))
    whitened = Whitened(potential, start, precision)
    variants = {
        "dense (Pyro full_mass)": lambda: transitions(potential, start, inverse,
                                                      args.step_size, args.steps,
                                                      args.transitions),
        "whitened (package)": lambda: transitions(whitened, torch.zeros_like(start), None,
                                                  args.step_size, args.steps,
                                                  args.transitions),
        "potential + gradient alone": lambda: _evaluations(potential, start, 50)}
    seconds = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, run in variants.items():
            seconds[name].append(run())
    print(f"Gauss-Newton mass matrix on the reference posterior ({potential.dim} parameters), "
          f"HMC with {args.steps} leapfrog steps of {args.step_size} per transition, one "
          f"thread; median of {args.repeats} blocks of {args.transitions} transitions")
    reference = statistics.median(seconds["dense (Pyro full_mass)"])
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"  {name:<28} {median * 1e3:7.2f} ms per step  "
              f"({median / reference:.2f} x dense)")
    return 0


def _evaluations(potential: FlatPotential, theta: torch.Tensor, count: int) -> float:
    """Seconds per potential-and-gradient evaluation."""
    begin = time.perf_counter()
    for _ in range(count):
        potential.value_and_grad(theta)
    return (time.perf_counter() - begin) / count


if __name__ == "__main__":
    raise SystemExit(main())
