"""Benchmark: this package's Pyro HMC/NUTS against NumPyro on the identical INR posterior.

    pip install jax numpyro                       # the benchmark's extras (not runtime deps)
    python analysis/bench_hmc.py > analysis/results/bench_hmc.txt
    python analysis/bench_hmc.py --quick          # a smoke run of the whole script

The posterior: phantom 0 at 64 x 64, 20 views, noisy sinogram (SNR given below), an INR
of width 64 and depth 2 (ReLU, 32 Fourier frequencies, omega0 2), fan-in Normal prior
(tau 0.2), Gaussian likelihood with a fixed sigma: 8,385 parameters, float32, the
process pinned to one CPU core (torch with one thread; XLA single-threaded by flags, and
its own thread pool confined to that core). Both samplers start at the same MAP point, run
the same warmup (step size by dual averaging to a target acceptance of 0.8, a heuristic
step size at every window start, a regularised diagonal mass matrix in Stan's windows)
and the same number of draws of one chain. NumPyro gets the very same potential written
in JAX (the projection as a segment sum over the same CSR matrix; the script checks that
both potentials agree at the start).

Reported: the potential-plus-gradient micro-benchmark (the package's hand-written
gradient; twins of the same potential differentiated by torch autograd, by torch.compile of
that, and by JAX jit), a profile of where the time of one evaluation goes, and per sampler run:
gradient evaluations per CPU second of the sampling phase (CPU time of this process,
robust against other jobs on the machine; wall clock beside it), the median bulk ESS of 20 fixed
pixels (:func:`bayes_inr.posterior.representative_pixels`) and ESS per second.
NumPyro runs twice and its second run (compiled code cached) is reported.
"""

from __future__ import annotations

import os

# One core for both sides: XLA's CPU runtime keeps a thread pool of its own whatever the
# flags say, so the process is pinned to one CPU before torch and JAX start.
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                      "intra_op_parallelism_threads=1")

import argparse  # noqa: E402
import math  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from pyro.infer.mcmc import MCMC  # noqa: E402

from bayes_inr import posterior  # noqa: E402
from bayes_inr.data.sample import phantom_sample  # noqa: E402
from bayes_inr.inference import mcmc as hmc  # noqa: E402
from bayes_inr.inference.config import FitConfig  # noqa: E402
from bayes_inr.inference.single import build_model  # noqa: E402
from bayes_inr.physics.radon import projection_matrix, torch_csr  # noqa: E402

warnings.filterwarnings("ignore")
torch.set_num_threads(1)

SNR_DB = 30.0
CLOCK = time.process_time
"""CPU seconds of this process: robust against other jobs on the machine (wall clock is
reported beside it)."""
CONFIG = FitConfig(depth=2, width=64, omega0=2.0, prior="fan_in_normal:0.2", steps=1500,
                   lr=3e-3)


def ess_of_pixels(images: np.ndarray) -> np.ndarray:
    """Bulk ESS of the 20 fixed pixels of one chain of images (draws, N, N)."""
    import arviz as az

    ys, xs = posterior.representative_pixels(images.shape[1:])
    return az.ess(az.convert_to_dataset({"pixel": images[None, :, ys, xs]}))["pixel"].values


def time_it(fn, n: int) -> float:
    """Median seconds of ``n`` calls."""
    times = []
    for _ in range(n):
        start = CLOCK()
        fn()
        times.append(CLOCK() - start)
    return statistics.median(times)


# ----------------------------------------------------------------------------- twins


def twin_parts(potential: hmc.FlatPotential) -> dict:
    """What both twins of ``U`` need: the CSR matrix, data, prior and constants."""
    model = potential.model
    matrix = projection_matrix(model.operator.geometry, model.operator.projector)
    m = matrix.shape[0]
    return {"matrix": matrix, "embedding": model.inr.embedding.cpu().numpy(),
            "data": model.sinogram.reshape(-1).cpu().numpy(),
            "normal": [t if isinstance(t, float) else t.cpu().numpy() for t in potential._normal],
            "bounds": [int(b) for b in np.cumsum([0, *potential.sizes])],  # ints: no graph break
            "shapes": list(potential.shapes.values()),
            "inv_var": 1.0 / model.sigma ** 2,
            "constant": -m * math.log(model.sigma) - 0.5 * m * math.log(2 * math.pi)}


def twin_energy(parts: dict, xp, relu, project):
    """``U(theta)`` in array library ``xp`` (the same formula for torch and JAX)."""
    loc, inv_scale, constant = parts["normal"]
    weights_of = list(zip(parts["bounds"][:-1], parts["bounds"][1:], parts["shapes"],
                          strict=True))

    def energy(theta):
        weights = [theta[a:b].reshape(shape) for a, b, shape in weights_of]
        h = parts["embedding"]
        for i in range(0, len(weights), 2):
            h = h @ weights[i].T + weights[i + 1]
            if i + 2 < len(weights):
                h = relu(h)
        residual = project(h[:, 0]) - parts["data"]
        z = (theta - loc) * inv_scale
        return -(constant - 0.5 * xp.dot(z, z) - 0.5 * parts["inv_var"] * xp.dot(residual, residual)
                 + parts["constant"])

    return energy


def jax_potential(potential: hmc.FlatPotential):
    """The same ``U(theta)`` in JAX (float32): projection as a segment sum over the CSR."""
    import jax
    import jax.numpy as jnp

    parts = twin_parts(potential)
    matrix = parts["matrix"]
    rows = jnp.asarray(np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr)), jnp.int32)
    cols, vals = jnp.asarray(matrix.indices, jnp.int32), jnp.asarray(matrix.data)
    parts = {k: jnp.asarray(v) if isinstance(v, np.ndarray) and k in ("embedding", "data")
             else v for k, v in parts.items()}
    parts["normal"] = [v if isinstance(v, float) else jnp.asarray(v) for v in parts["normal"]]

    def project(image):
        return jax.ops.segment_sum(vals * image[cols], rows, num_segments=matrix.shape[0])

    return twin_energy(parts, jnp, jax.nn.relu, project)


def autograd_potential(potential: hmc.FlatPotential):
    """The same ``U(theta)`` in torch, differentiated by autograd (the package's potential
    before its gradient was written by hand), the projection as a CSR mat-vec."""
    parts = twin_parts(potential)
    a, at = (torch_csr(m) for m in (parts["matrix"], parts["matrix"].T.tocsr()))

    # custom ops, so that torch.compile traces the sparse products without a graph break
    @torch.library.custom_op("bench_hmc::back_project", mutates_args=())
    def back_project(r: torch.Tensor) -> torch.Tensor:
        return at @ r

    @torch.library.custom_op("bench_hmc::project", mutates_args=())
    def project(x: torch.Tensor) -> torch.Tensor:
        return a @ x

    back_project.register_fake(lambda r: r.new_empty(at.shape[0]))
    project.register_fake(lambda x: x.new_empty(a.shape[0]))
    project.register_autograd(lambda ctx, grad: back_project(grad))

    parts = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) and k in ("embedding", "data")
             else v for k, v in parts.items()}
    parts["normal"] = [v if isinstance(v, float) else torch.from_numpy(v) for v in parts["normal"]]
    return twin_energy(parts, torch, torch.relu, project)


def torch_value_and_grad(energy):
    def value_and_grad(theta):
        theta = theta.detach().requires_grad_(True)
        value = energy(theta)
        return value.detach(), torch.autograd.grad(value, theta)[0]

    return value_and_grad


# ----------------------------------------------------------------------------- runs


def run_pyro(potential, kernel: str, start: torch.Tensor, warmup: int, draws: int, **kw):
    """One chain of our sampler; timings of warmup and sampling, draws as images."""
    settings = hmc.MCMCSettings(kernel=kernel, draws=draws, warmup=warmup, **kw)
    pyro_kernel = hmc.make_kernel(settings, potential)
    marks, thetas, stats = {}, [], []

    def hook(kernel, params, stage, i):
        if stage.startswith("Warmup") and i == warmup - 1:
            marks["warmup"] = (CLOCK(), time.perf_counter(), potential.evaluations)
        if stage.startswith("Sample"):
            thetas.append(params[hmc.SITE].clone())
            stats.append(kernel.stats)
            if i == draws - 1:
                marks["state"] = hmc.ChainState.capture(params[hmc.SITE], kernel)

    import pyro

    pyro.set_rng_seed(hmc.chain_seed(0, 0))
    potential.evaluations = 0
    mcmc = MCMC(pyro_kernel, num_samples=draws, warmup_steps=warmup, hook_fn=hook,
                initial_params={hmc.SITE: start}, disable_progbar=True, save_params=[])
    begin = CLOCK()
    mcmc.run()
    end, wall, evals = CLOCK(), time.perf_counter(), potential.evaluations
    t_warm, wall_warm, e_warm = marks["warmup"]
    return {"warmup_s": t_warm - begin, "sample_s": end - t_warm, "wall_s": wall - wall_warm,
            "evals": evals - e_warm,
            "images": potential.images(torch.stack(thetas)),
            "accept": np.mean([s["acceptance_rate"] for s in stats]),
            "step_size": stats[-1]["step_size"],
            "steps": np.mean([s["n_steps"] for s in stats]),
            "divergent": int(sum(s["diverging"] for s in stats)),
            "state": marks["state"]}


def run_numpyro(energy, potential, kernel: str, start: torch.Tensor, warmup: int, draws: int,
                num_steps: int, max_tree_depth: int):
    """One chain of NumPyro with the same settings, run twice: the second run's times
    (XLA's compiled code cached) are reported."""
    import jax
    from numpyro.infer import HMC, MCMC, NUTS

    def sampler():
        if kernel == "nuts":
            return NUTS(potential_fn=energy, max_tree_depth=max_tree_depth,
                        find_heuristic_step_size=True, target_accept_prob=0.8)
        return HMC(potential_fn=energy, num_steps=num_steps, trajectory_length=None,
                   find_heuristic_step_size=True, target_accept_prob=0.8)

    init = jax.numpy.asarray(start.cpu().numpy())
    fields = ("num_steps", "accept_prob", "diverging", "adapt_state.step_size")

    def timed(n_warm, n_draws):
        mcmc = MCMC(sampler(), num_warmup=n_warm, num_samples=n_draws, progress_bar=False)
        t0 = CLOCK()
        mcmc.warmup(jax.random.PRNGKey(0), init_params=init, extra_fields=("num_steps",))
        jax.block_until_ready(mcmc.post_warmup_state)
        t1, wall = CLOCK(), time.perf_counter()
        mcmc.run(mcmc.post_warmup_state.rng_key, extra_fields=fields)
        jax.block_until_ready(mcmc.get_samples())
        return mcmc, t1 - t0, CLOCK() - t1, time.perf_counter() - wall

    _, first_warm, first_run, _ = timed(warmup, draws)  # compiles; the rerun hits JAX's cache
    mcmc, warm_s, sample_s, wall_s = timed(warmup, draws)
    extra = mcmc.get_extra_fields()
    thetas = torch.from_numpy(np.asarray(mcmc.get_samples()))
    return {"warmup_s": warm_s, "sample_s": sample_s, "wall_s": wall_s,
            "first_run_s": first_warm + first_run,
            "evals": int(np.asarray(extra["num_steps"]).sum()),
            "images": potential.images(thetas),
            "accept": float(np.mean(extra["accept_prob"])),
            "step_size": float(np.asarray(extra["adapt_state.step_size"])[-1]),
            "steps": float(np.mean(extra["num_steps"])),
            "divergent": int(np.sum(extra["diverging"]))}


def throughput(potential, energy, start: torch.Tensor, kernel: str, state: hmc.ChainState,
               blocks: int, transitions: int, num_steps: int, max_tree_depth: int
               ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Gradient evaluations per CPU second of ``kernel`` transitions from ``start`` with the
    step size and diagonal inverse mass matrix that our long run adapted (``state``), no
    adaptation, in blocks alternating between the two samplers (robust against other jobs
    on the machine), and page faults per evaluation. Both kernels are set up once, outside
    the timing, and every block repeats the same transitions from the same start. A third
    block evaluates our bare potential and gradient, for the sampler's overhead."""
    import jax
    import pyro
    from numpyro.infer import HMC, NUTS

    settings = hmc.MCMCSettings(kernel=kernel, warmup=0, draws=transitions,
                                num_steps=num_steps, max_tree_depth=max_tree_depth)
    ours = hmc.make_kernel(settings, potential, state)
    ours.initial_params = {hmc.SITE: start}
    ours.setup(0)
    at_start = ours._fetch_from_cache()  # position, potential and gradient at the start
    common = {"potential_fn": energy, "step_size": state.step_size, "adapt_step_size": False,
              "adapt_mass_matrix": False,
              "inverse_mass_matrix": jax.numpy.asarray(state.inverse_mass.cpu().numpy())}
    theirs = (NUTS(max_tree_depth=max_tree_depth, **common) if kernel == "nuts" else
              HMC(num_steps=num_steps, trajectory_length=None, **common))
    initial = theirs.init(jax.random.PRNGKey(0), 0, jax.numpy.asarray(start.cpu().numpy()),
                          (), {})

    # NumPyro at its best: the whole block of transitions is one compiled XLA loop, which
    # also counts the gradient evaluations
    def body(i, carry):
        new = theirs.sample(carry[0], (), {})
        return new, carry[1] + new.num_steps

    loop = jax.jit(lambda state: jax.lax.fori_loop(0, transitions, body, (state, 0)))

    def numpyro_block() -> int:
        return int(jax.block_until_ready(loop(initial))[1])

    def pyro_block() -> int:
        pyro.set_rng_seed(0)
        ours._cache(*at_start)  # else the kernel continues from its last state
        potential.evaluations = 0
        params = {hmc.SITE: start}
        for _ in range(transitions):
            params = ours.sample(params)
        return potential.evaluations

    def bare_block() -> int:  # our potential alone: what the sampler adds to it
        for _ in range(100):
            potential.value_and_grad(start)
        return 100

    numpyro_block()  # compiles
    candidates = {"pyro (ours)": pyro_block, "numpyro": numpyro_block, "bare (ours)": bare_block}
    rates = {name: [] for name in candidates}
    faults = {name: [] for name in rates}
    for _ in range(blocks):
        for name, block in candidates.items():
            begin, faults_before = CLOCK(), page_faults()
            evals = block()
            rates[name].append(evals / (CLOCK() - begin))
            faults[name].append((page_faults() - faults_before) / evals)
    return rates, faults


def page_faults() -> int:
    """Minor page faults of this process so far (fresh memory pages touched)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


# ----------------------------------------------------------------------------- report


def profile_table(potential, theta, rows: int = 12) -> str:
    from torch.profiler import ProfilerActivity, profile

    for _ in range(5):
        potential.value_and_grad(theta)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(50):
            potential.value_and_grad(theta)
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events)
    lines = [f"  {'op':<34} {'calls':>6} {'self ms/eval':>12} {'share':>6}"]
    for e in events[:rows]:
        lines.append(f"  {e.key[:34]:<34} {e.count // 50:>6} "
                     f"{e.self_cpu_time_total / 50 / 1e3:>12.3f} "
                     f"{e.self_cpu_time_total / total:>6.1%}")
    lines.append(f"  {'total (profiled)':<34} {'':>6} {total / 50 / 1e3:>12.3f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny runs (smoke test)")
    parser.add_argument("--sigma", type=float, default=0.0,
                        help="likelihood sigma (default: the added noise's)")
    args = parser.parse_args(argv)
    quick = (10, 10, 10, 5)
    warmup, draws, nuts_warmup, nuts_draws = quick if args.quick else (500, 1000, 150, 300)
    num_steps, depth = 20, 6

    import jax

    sample = phantom_sample(0, 20, 64, snr_db=SNR_DB)
    config = CONFIG.replace(sigma=args.sigma, steps=50 if args.quick else CONFIG.steps)
    model = build_model(sample, config)
    potential = hmc.FlatPotential(model)
    print(f"posterior: 64 x 64, 20 views, SNR {SNR_DB} dB, sigma {model.sigma:.4g}, "
          f"{potential.dim} parameters, torch {torch.__version__} "
          f"({torch.get_num_threads()} thread), jax {jax.__version__} "
          f"(XLA_FLAGS={os.environ['XLA_FLAGS']!r}), pinned to CPU "
          f"{sorted(os.sched_getaffinity(0))}")
    start_time = time.perf_counter()
    start = hmc.initial_points(potential, "map", 1, 0, steps=config.steps, lr=config.lr,
                               progress=False)[0]
    print(f"MAP start: {config.steps} Adam steps in {time.perf_counter() - start_time:.1f} s, "
          f"U = {float(potential.energy(start)):.1f}")

    energy = jax_potential(potential)
    jax_value_and_grad = jax.jit(jax.value_and_grad(energy))
    start_jax = jax.numpy.asarray(start.numpy())
    twin = autograd_potential(potential)
    autograd = torch_value_and_grad(twin)
    compiled = torch_value_and_grad(torch.compile(twin, dynamic=False))
    t0 = time.perf_counter()
    compiled(start)
    compile_s = time.perf_counter() - t0
    want = potential.value_and_grad(start)
    for name, got in (("autograd", autograd(start)), ("torch.compile", compiled(start)),
                      ("jax", [torch.from_numpy(np.asarray(v))
                               for v in jax_value_and_grad(start_jax)])):
        assert abs(float(got[0] - want[0])) <= 1e-4 * abs(float(want[0])), (name, got[0], want[0])
        torch.testing.assert_close(got[1], want[1], rtol=1e-3, atol=1e-2 * float(
            want[1].abs().max()), msg=name)

    print("\n== potential + gradient, one evaluation (CPU time; best of 3 medians of 100, "
          "interleaved; all four agree at the start) ==")
    candidates = {"ours (by hand)": lambda: potential.value_and_grad(start),
                  "torch autograd": lambda: autograd(start),
                  "torch.compile": lambda: compiled(start),
                  "jax jit": lambda: jax.block_until_ready(jax_value_and_grad(start_jax))}
    timings = {name: [] for name in candidates}
    for _ in range(3):
        for name, fn in candidates.items():
            timings[name].append(time_it(fn, 100))
    best = {name: min(values) for name, values in timings.items()}
    for name, value in best.items():
        print(f"  {name:<15} {value * 1e3:7.3f} ms  ({1 / value:6.0f} / s)")
    print(f"  torch.compile (of the autograd twin): first call (compilation, wall clock; "
          f"inductor caches on disk) {compile_s:.1f} s")

    print("\n== where one evaluation goes (ours, profiler) ==")
    print(profile_table(potential, start))

    print("\n== sampler runs (1 chain, same start, same settings) ==")
    runs = []
    for kernel, w, d in (("hmc", warmup, draws), ("nuts", nuts_warmup, nuts_draws)):
        extra = {"num_steps": num_steps} if kernel == "hmc" else {"max_tree_depth": depth}
        label = f"{kernel} ({num_steps} steps)" if kernel == "hmc" else f"nuts (depth {depth})"
        ours_run = run_pyro(potential, kernel, start, w, d, **extra)
        theirs = run_numpyro(energy, potential, kernel, start, w, d, num_steps, depth)
        for name, result in (("pyro (ours)", ours_run), ("numpyro", theirs)):
            ess = ess_of_pixels(result["images"])
            result.update(label=label, name=name, ess=float(np.median(ess)),
                          ess_s=float(np.median(ess)) / result["sample_s"],
                          evals_s=result["evals"] / result["sample_s"])
            runs.append(result)
        print(f"  {label}: done", file=sys.stderr, flush=True)
    header = (f"  {'kernel':<16} {'sampler':<12} {'warmup s':>8} {'sample s':>8} {'wall s':>7} "
              f"{'evals':>7} "
              f"{'evals/s':>8} {'steps':>6} {'accept':>6} {'eps':>8} {'div':>4} {'ESS med':>7} "
              f"{'ESS/s':>7}")
    print(f"  warmup {warmup} + {draws} draws (hmc), {nuts_warmup} + {nuts_draws} (nuts); "
          "seconds are CPU seconds of this process (wall: the sampling phase's wall clock); "
          "ESS: median bulk ESS of 20 fixed pixels; evals/s and ESS/s per CPU second of the "
          "sampling phase")
    print(header)
    for r in runs:
        print(f"  {r['label']:<16} {r['name']:<12} {r['warmup_s']:8.1f} {r['sample_s']:8.1f} "
              f"{r['wall_s']:7.1f} {r['evals']:7d} {r['evals_s']:8.1f} {r['steps']:6.1f} "
              f"{r['accept']:6.3f} {r['step_size']:8.2e} {r['divergent']:4d} {r['ess']:7.1f} "
              f"{r['ess_s']:7.3f}")
    print("  numpyro runs twice, the second is reported; CPU s of the first run (with XLA "
          "compilation) against the second: " + ", ".join(
              f"{r['label']} {r['first_run_s']:.1f} vs {r['warmup_s'] + r['sample_s']:.1f}"
              for r in runs if "first_run_s" in r))
    blocks, transitions = (2, 2) if args.quick else (15, 20)
    ratios = {}
    for kernel, run in (("hmc", runs[0]), ("nuts", runs[2])):
        rates, faults = throughput(potential, energy, start, kernel, run["state"], blocks,
                                   transitions, num_steps, depth)
        print(f"\n== throughput, {kernel}: {blocks} alternating blocks of {transitions} "
              f"transitions ({run['label']}, the step size and diagonal mass matrix adapted in "
              "our run above, no adaptation), gradient evals per CPU s ==")
        for name, values in rates.items():
            print(f"  {name:<12} median {statistics.median(values):6.1f}  "
                  f"(blocks: {', '.join(f'{v:.0f}' for v in values)}; page faults per eval "
                  f"{statistics.median(faults[name]):.1f})")
        ratios[kernel] = sorted(ours / theirs for ours, theirs in
                                zip(rates["pyro (ours)"], rates["numpyro"], strict=True))
        overhead = statistics.median(bare / ours - 1 for ours, bare in
                                     zip(rates["pyro (ours)"], rates["bare (ours)"], strict=True))
        print(f"  our sampler's time per gradient evaluation over the bare potential's: "
              f"+{overhead:.0%} (median of the block pairs)")
    print("\n== ratios ours / numpyro ==")
    for kernel, paired in ratios.items():
        quartiles = statistics.quantiles(paired, n=4)
        print(f"  throughput {kernel} (alternating blocks, the robust figure): gradient evals/s "
              f"{statistics.median(paired):.2f} (median of the {len(paired)} block pairs; "
              f"quartiles {quartiles[0]:.2f}-{quartiles[2]:.2f}, range "
              f"{paired[0]:.2f}-{paired[-1]:.2f})")
    for i in range(0, len(runs), 2):
        a, b = runs[i], runs[i + 1]
        print(f"  {a['label']:<16} long runs: gradient evals/s {a['evals_s'] / b['evals_s']:.2f}, "
              f"ESS/s {a['ess_s'] / b['ess_s']:.2f} (ESS {a['ess']:.1f} vs {b['ess']:.1f})")
    print("  Both sides run the same algorithm, so the expected ESS per draw is the same and the "
          "expected ESS/s ratio is the throughput ratio; single-chain ESS of a few units (this "
          "posterior) is too noisy to resolve a ratio near 1.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
