"""GPU check: does ``--device cuda`` work, how fast is it, and is the GPU kept busy?

    python analysis/gpu_check.py [--out DIR]                     # on a machine with CUDA
    python analysis/gpu_check.py --device cpu --size 32 --steps 20 --nuts-warmup 10 \\
        --nuts-draws 10 --nuts-map-steps 20 --cpu-steps 10 --out /tmp/check   # CPU smoke test

Parts, each timed on its own and caught on its own (a failing part records its error,
one line and the last traceback lines, and the others still run):

- ``env``: device name, compute capability, memory, driver; torch, CUDA, cuDNN, Pyro.
- ``mcd``: one MCD fit of ``models/mcd_20.toml`` (phantom 0 of
  :func:`bayes_inr.data.sample.phantom_sample`, 128 x 128, 20 views) on the device through
  :func:`bayes_inr.inference.fit.fit`, after a short untimed warm-up fit (CUDA context, cuBLAS and
  cuSPARSE handles, astra's projection matrix): wall time, seconds per step (the fit's
  ``seconds_per_step``), PSNR, SSIM and object ECE (:func:`bayes_inr.evaluation.metrics.score`).
- ``nuts``: one NUTS chain of ``models/hmc_20.toml``'s model (depth 2, width 64, TV;
  NUTS instead of HMC, maximum tree depth 6, MAP start of 500 steps) on the device:
  MAP, warmup and sampling times, gradient evaluations per second (all of them: the
  potential's call count over the chain's time; the sampling phase's: ``n_steps`` of
  the kept draws after the first over the time between the first and the last kept
  draw), mean tree depth, step size, acceptance, divergences, PSNR.
- ``mcd_cpu``: the first ``--cpu-steps`` steps of the same MCD fit on this machine's CPU
  (threads stated), for the seconds-per-step comparison.

During each timed part a thread reads the GPU utilisation with ``nvidia-smi
--query-gpu=utilization.gpu`` every ``--interval`` seconds; its mean and median answer
"is the GPU kept busy?" (the driver's figure: the share of its last sample period in
which a kernel ran). Results go to ``gpu_check.json`` and ``gpu_check.txt`` in ``--out``
(default ``analysis/results/``), written atomically after every part, so that a run cut
short keeps what it measured. Without CUDA the script exits 2 with one line before any
work, unless ``--device cpu`` is given. Exit status 1 when a part failed.

On the device machine the package's missing dependencies travel as wheels:
``analysis/gpu_device.sh`` prepares them here and runs the tests and this check there.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
NVIDIA_SMI = ("nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits")


# ----------------------------------------------------------------------------- utilisation


class UtilisationSampler:
    """Reads the GPU utilisation (percent) with ``command`` every ``interval`` seconds in a
    background thread while the ``with`` block runs.

    ``command`` prints one integer per GPU, one a line; ``gpu`` picks the line. A failing
    command ends the sampling and leaves its message in ``error``.
    """

    def __init__(self, command=NVIDIA_SMI, interval: float = 0.2, gpu: int = 0,
                 enabled: bool = True):
        self.command, self.interval, self.gpu = list(command), interval, gpu
        self.enabled = enabled
        self.samples: list[float] = []
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _read(self) -> float:
        out = subprocess.run(self.command, capture_output=True, text=True, timeout=10,
                             check=True).stdout.split()
        return float(out[self.gpu if self.gpu < len(out) else 0])

    def _loop(self) -> None:
        while not self._stop.is_set():
            start = time.monotonic()
            try:
                self.samples.append(self._read())
            except (OSError, subprocess.SubprocessError, ValueError, IndexError) as err:
                self.error = f"{type(err).__name__}: {err}".splitlines()[0]
                return
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - start)))

    def __enter__(self) -> UtilisationSampler:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=15)

    def summary(self) -> dict:
        if not self.enabled:
            return {"sampled": False, "why": "not a CUDA device"}
        out: dict = {"sampled": bool(self.samples), "samples": len(self.samples),
                     "interval_s": self.interval}
        if self.samples:
            values = sorted(self.samples)
            out |= {"mean_pct": statistics.fmean(values),
                    "median_pct": statistics.median(values),
                    "p10_pct": values[len(values) // 10],
                    "p90_pct": values[(9 * len(values)) // 10],
                    "max_pct": values[-1],
                    "zero_share": sum(v == 0 for v in values) / len(values)}
        if self.error:
            out["error"] = self.error
        return out


# ----------------------------------------------------------------------------- helpers


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def error_record(err: BaseException, lines: int = 12) -> dict:
    """One line for the error, and the traceback's last ``lines`` lines."""
    message = f"{type(err).__name__}: {err}".strip().splitlines()
    tail = traceback.format_exc().rstrip().splitlines()[-lines:]
    return {"ok": False, "error": message[0] if message else type(err).__name__,
            "traceback": tail}


def memory_record(device: str) -> dict:
    if not device.startswith("cuda"):
        return {}
    return {"peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30}


def reset_memory(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)


def nvidia_smi(query: str) -> str | None:
    try:
        return subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict:
    out = {"python": platform.python_version(), "torch": torch.__version__,
           "torch_cuda": torch.version.cuda}
    try:
        out["cudnn"] = torch.backends.cudnn.version()
    except Exception:  # noqa: BLE001 - a version probe must not fail the check
        out["cudnn"] = None
    for name in ("pyro", "numpy", "scipy", "arviz", "astra"):
        try:
            out[name] = getattr(__import__(name), "__version__", "?")
        except Exception as err:  # noqa: BLE001
            out[name] = f"not importable ({type(err).__name__}: {err})".splitlines()[0]
    return out


# ----------------------------------------------------------------------------- parts


def part_env(args, out: dict) -> None:
    from bayes_inr.core.provenance import git_state

    commit, dirty = git_state()
    out |= {"device": args.device, "versions": versions(),
           "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
           "git_commit": commit, "git_dirty": dirty,
           "created_at": datetime.now(UTC).isoformat(timespec="seconds")}
    if args.device.startswith("cuda"):
        index = torch.device(args.device).index or 0
        props = torch.cuda.get_device_properties(index)
        out |= {"name": props.name, "capability": f"sm_{props.major}{props.minor}",
                "multiprocessors": props.multi_processor_count,
                "memory_gib": props.total_memory / 2**30,
                "nvidia_smi": nvidia_smi("name,driver_version,memory.total,clocks.max.sm")}
    else:
        out["name"] = platform.processor() or platform.machine()


def part_mcd(args, out: dict, sampler_factory) -> None:
    from bayes_inr.data.sample import phantom_sample
    from bayes_inr.evaluation.metrics import score
    from bayes_inr.inference.config import load_config
    from bayes_inr.inference.fit import fit
    from bayes_inr.posterior.read import config as stored_config

    overrides = {"device": args.device}
    if args.steps:
        overrides["steps"] = args.steps
    if args.draws:
        overrides["draws"] = args.draws
    config = load_config(args.config, **overrides)
    sample = phantom_sample(args.phantom, args.views, args.size)
    out |= {"config": str(args.config), "size": args.size, "views": args.views,
           "steps": config.steps, "draws": config.draws, "device": args.device}
    # untimed warm-up: CUDA context, library handles, astra's projection matrix (cached)
    start = time.perf_counter()
    fit(sample, config.replace(steps=min(10, config.steps), draws=2), progress=False)
    synchronize(args.device)
    out["warmup_fit_s"] = time.perf_counter() - start
    reset_memory(args.device)
    with sampler_factory() as sampler:
        start = time.perf_counter()
        idata = fit(sample, config, progress=False)
        synchronize(args.device)
        wall = time.perf_counter() - start
    record = stored_config(idata)
    scores = score(idata)
    out |= {"wall_s": wall, "train_s": record["train_seconds"],
            "seconds_per_step": record["seconds_per_step"], "steps_done": record["steps_done"],
            "diverged_at_step": record.get("diverged_at_step"),
            "threads_used": record.get("threads_used"),
            "psnr": scores["psnr"], "ssim": scores["ssim"],
            "ece_object": scores.get("ece_object"), "n_draws": scores["n_draws"],
            "utilisation": sampler.summary(), **memory_record(args.device)}


def part_nuts(args, out: dict, sampler_factory) -> None:
    import numpy as np
    import pyro

    from bayes_inr.data.sample import phantom_sample
    from bayes_inr.evaluation.metrics import score
    from bayes_inr.inference import mcmc as hmc
    from bayes_inr.inference.config import load_config
    from bayes_inr.inference.single import build_model

    config = load_config(args.nuts_config, inference="nuts", warmup=args.nuts_warmup,
                         draws=args.nuts_draws, chains=1, steps=args.nuts_map_steps,
                         max_tree_depth=args.nuts_tree_depth, checkpoint_every=1,
                         device=args.device)
    sample = phantom_sample(args.phantom, args.views, args.size)
    out |= {"size": args.size, "views": args.views,
           "config_file": str(args.nuts_config),
           "config": {k: getattr(config, k) for k in
                      ("depth", "width", "omega0", "head", "prior", "tv_weight", "warmup",
                       "draws", "steps", "lr", "max_tree_depth", "target_accept")}}
    reset_memory(args.device)
    marks: list[tuple[float, int]] = []  # (time, potential evaluations) at every kept draw
    with sampler_factory() as sampler:
        start = time.perf_counter()
        pyro.set_rng_seed(config.seed)
        model = build_model(sample, config)
        potential = hmc.FlatPotential(model)
        inits = hmc.initial_points(potential, "map", 1, config.seed, steps=config.steps,
                                   lr=config.lr, lr_final=config.lr_final, progress=False)
        synchronize(args.device)
        begin = time.perf_counter()
        run = hmc.MCMCRun(potential, hmc.MCMCSettings.from_config(config, config.inference), inits)
        run.run(progress=False, checkpoint=lambda run: marks.append(
            (time.perf_counter(), potential.evaluations)))
        synchronize(args.device)
        end = time.perf_counter()
        wall = end - start
    out["parameters"] = potential.dim
    idata = run.inference_data(
        sinogram=sample.sinogram, angles=sample.geometry.angles, method="nuts",
        config=dataclasses.asdict(config), ground_truth=sample.ground_truth,
        air_level=sample.air_level, seed=config.seed,
        device=args.device, wall_time=wall, settings=dataclasses.asdict(config))
    stats = idata.sample_stats
    n_steps = np.asarray(stats["n_steps"].values).ravel()
    step_size = np.asarray(stats["step_size"].values).ravel()
    first, last = marks[0], marks[-1]
    sampling_s = last[0] - first[0]
    scores = score(idata)
    out |= {"wall_s": wall, "map_s": begin - start, "mcmc_s": end - begin,
            "warmup_s": first[0] - begin, "sampling_s": sampling_s,
            "grad_evals": potential.evaluations,
            "grad_evals_per_s": potential.evaluations / (end - begin),
            "grad_evals_sampling": int(n_steps[1:].sum()),
            "grad_evals_per_s_sampling": (float(n_steps[1:].sum()) / sampling_s
                                          if sampling_s > 0 else None),
            "mean_n_steps": float(n_steps.mean()),
            "mean_tree_depth": float(np.asarray(stats["tree_depth"].values).mean()),
            "max_tree_depth_hits": int((np.asarray(stats["tree_depth"].values)
                                        >= config.max_tree_depth).sum()),
            "step_size": float(step_size[-1]),
            "acceptance": float(np.asarray(stats["acceptance_rate"].values).mean()),
            "divergences": int(np.asarray(stats["diverging"].values).sum()),
            "draws_kept": int(n_steps.size),
            "psnr": scores["psnr"], "ece_object": scores.get("ece_object"),
            "utilisation": sampler.summary(), **memory_record(args.device)}


def part_mcd_cpu(args, out: dict) -> None:
    from bayes_inr.data.sample import phantom_sample
    from bayes_inr.inference.config import load_config
    from bayes_inr.inference.fit import fit
    from bayes_inr.posterior.read import config as stored_config

    config = load_config(args.config, device="cpu", steps=args.cpu_steps, draws=2,
                         threads=args.cpu_threads)
    sample = phantom_sample(args.phantom, args.views, args.size)
    start = time.perf_counter()
    idata = fit(sample, config, progress=False)
    record = stored_config(idata)
    out |= {"device": "cpu", "steps": config.steps,
            "threads_used": record["threads_used"], "cpu_count": os.cpu_count(),
            "wall_s": time.perf_counter() - start, "train_s": record["train_seconds"],
            "seconds_per_step": record["seconds_per_step"]}


# ----------------------------------------------------------------------------- report


def _f(value, spec: str = ".3g", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def _util(util: dict | None) -> str:
    if not util:
        return "n/a"
    if not util.get("sampled"):
        return f"not sampled ({util.get('why') or util.get('error', 'no samples')})"
    text = (f"mean {util['mean_pct']:.0f} %, median {util['median_pct']:.0f} % "
            f"(p10 {util['p10_pct']:.0f}, p90 {util['p90_pct']:.0f}, {util['samples']} samples "
            f"every {util['interval_s']} s, {100 * util['zero_share']:.0f} % at zero)")
    return text + (f"; sampler stopped: {util['error']}" if util.get("error") else "")


def _env_lines(env: dict, results: dict) -> list[str]:
    v = env["versions"]
    return [f"gpu_check {env['created_at']}, commit {env['git_commit'][:10]}"
            f"{' (dirty)' if env.get('git_dirty') else ''}",
            f"device    {env['device']}: {env['name']}"
            + (f", {env['capability']}, {env['multiprocessors']} SMs, "
               f"{env['memory_gib']:.1f} GiB; nvidia-smi: {env.get('nvidia_smi')}"
               if "capability" in env else ""),
            f"software  torch {v['torch']} (CUDA {v['torch_cuda']}, cuDNN {v['cudnn']}), "
            f"pyro {v['pyro']}, astra {v['astra']}, Python {v['python']}; "
            f"{env['cpu_count']} CPUs, torch threads {env['torch_threads']}"]


def _mcd_lines(mcd: dict, results: dict) -> list[str]:
    return [f"MCD fit ({mcd['config']}, {mcd['size']} x {mcd['size']}, {mcd['views']} views, "
            f"{mcd['steps']} steps, {mcd['draws']} draws) on {mcd['device']}",
            f"  wall {mcd['wall_s']:.1f} s: training {mcd['train_s']:.1f} s = "
            f"{1e3 * mcd['seconds_per_step']:.2f} ms/step ({mcd['steps_done']} steps), "
            f"draws + storing {mcd['wall_s'] - mcd['train_s']:.1f} s"
            + (f"; DIVERGED at step {mcd['diverged_at_step']}"
               if mcd.get("diverged_at_step") is not None else ""),
            f"  PSNR {mcd['psnr']:.2f} dB, SSIM {mcd['ssim']:.3f}, object ECE "
            f"{_f(mcd['ece_object'])} ({mcd['n_draws']} draws)",
            f"  GPU utilisation: {_util(mcd['utilisation'])}",
            f"  warm-up fit (10 steps; context, handles, astra matrix) "
            f"{mcd['warmup_fit_s']:.1f} s; peak memory "
            f"{_f(mcd.get('peak_memory_gib'), '.2f', ' GiB')}"]


def _nuts_lines(nuts: dict, results: dict) -> list[str]:
    c = nuts["config"]
    return [f"NUTS chain ({nuts['config_file']} as nuts: depth {c['depth']}, width "
            f"{c['width']}, {c['prior']}, TV {c['tv_weight']}; {nuts['size']} x "
            f"{nuts['size']}, {nuts['views']} views; MAP {c['steps']} steps, warmup "
            f"{c['warmup']}, {c['draws']} draws, max tree depth {c['max_tree_depth']})",
            f"  wall {nuts['wall_s']:.1f} s: MAP {nuts['map_s']:.1f} s, warmup "
            f"{nuts['warmup_s']:.1f} s, sampling {nuts['sampling_s']:.1f} s "
            f"({nuts['parameters']} parameters)",
            f"  gradient evaluations: {nuts['grad_evals']} in {nuts['mcmc_s']:.1f} s"
            f" = {nuts['grad_evals_per_s']:.0f}/s (warmup + sampling); sampling phase "
            f"{_f(nuts['grad_evals_per_s_sampling'], '.0f')}/s "
            f"({nuts['grad_evals_sampling']} evals from sample_stats.n_steps)",
            f"  mean tree depth {nuts['mean_tree_depth']:.2f} (mean "
            f"{nuts['mean_n_steps']:.1f} evals/draw), step size "
            f"{nuts['step_size']:.3g}, acceptance {nuts['acceptance']:.3f}, "
            f"divergences {nuts['divergences']} of {nuts['draws_kept']}, "
            f"{nuts['max_tree_depth_hits']} draws at the maximum depth",
            f"  PSNR {nuts['psnr']:.2f} dB, object ECE {_f(nuts['ece_object'])}; "
            f"peak memory {_f(nuts.get('peak_memory_gib'), '.2f', ' GiB')}",
            f"  GPU utilisation: {_util(nuts['utilisation'])}"]


def _cpu_lines(cpu: dict, results: dict) -> list[str]:
    lines = [f"MCD on the CPU, first {cpu['steps']} steps, {cpu['threads_used']} "
             f"torch threads of {cpu['cpu_count']} CPUs",
             f"  {1e3 * cpu['seconds_per_step']:.2f} ms/step (training "
             f"{cpu['train_s']:.1f} s; wall {cpu['wall_s']:.1f} s)"]
    mcd = results.get("mcd") or {}
    if mcd.get("ok"):
        lines.append(f"  {results['device']} over CPU per step: "
                     f"{cpu['seconds_per_step'] / mcd['seconds_per_step']:.1f}x faster")
    return lines


SECTIONS = {"env": _env_lines, "mcd": _mcd_lines, "nuts": _nuts_lines, "mcd_cpu": _cpu_lines}


def report_text(results: dict) -> str:
    """The readable report; a failed part shows its error and traceback tail."""
    lines: list[str] = []
    for name, section in SECTIONS.items():
        part = results.get(name)
        if part is None:
            continue
        if lines:
            lines.append("")
        if not part.get("ok"):
            lines += [f"{name}: FAILED: {part.get('error')}",
                      *("    " + line for line in part.get("traceback", []))]
            continue
        try:
            lines += section(part, results)
        except Exception as err:  # noqa: BLE001 - the JSON file holds the figures anyway
            lines.append(f"{name}: (cannot report: {type(err).__name__}: {err})")
    return "\n".join(lines) + "\n"


def write(results: dict, out: Path) -> None:
    from bayes_inr.core.atomic import atomic_path

    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "gpu_check.json") as tmp:
        tmp.write_text(json.dumps(results, indent=2, default=str) + "\n")
    with atomic_path(out / "gpu_check.txt") as tmp:
        tmp.write_text(report_text(results))


# ----------------------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "analysis" / "results")
    p.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (smoke test)")
    p.add_argument("--parts", nargs="+", default=["mcd", "nuts", "mcd_cpu"],
                   choices=["mcd", "nuts", "mcd_cpu"])
    p.add_argument("--config", type=Path, default=ROOT / "models" / "mcd_20.toml")
    p.add_argument("--phantom", type=int, default=0)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--views", type=int, default=20)
    p.add_argument("--steps", type=int, default=0, help="MCD steps; 0: the config's")
    p.add_argument("--draws", type=int, default=0, help="MCD draws; 0: the config's")
    p.add_argument("--nuts-config", type=Path, default=ROOT / "models" / "hmc_20.toml",
                   help="the NUTS part's model (its inference becomes nuts)")
    p.add_argument("--nuts-warmup", type=int, default=100)
    p.add_argument("--nuts-draws", type=int, default=100)
    p.add_argument("--nuts-map-steps", type=int, default=500)
    p.add_argument("--nuts-tree-depth", type=int, default=6)
    p.add_argument("--cpu-steps", type=int, default=100)
    p.add_argument("--cpu-threads", type=int, default=0, help="0: torch's default")
    p.add_argument("--interval", type=float, default=0.2, help="utilisation sampling period")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"no CUDA device: torch {torch.__version__} (CUDA {torch.version.cuda}) sees none;"
              f" use --device cpu for a CPU smoke test", file=sys.stderr)
        return 2
    if args.device != "cpu" and not args.device.startswith("cuda"):
        print(f"unknown device {args.device!r}: use cuda, cuda:N or cpu", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    cuda = args.device.startswith("cuda")
    gpu = (torch.device(args.device).index or 0) if cuda else 0

    def sampler_factory():
        return UtilisationSampler(interval=args.interval, gpu=gpu, enabled=cuda)

    results: dict = {"device": args.device,
                     "argv": list(sys.argv[1:] if argv is None else argv)}
    parts = {"env": lambda out: part_env(args, out),
             "mcd": lambda out: part_mcd(args, out, sampler_factory),
             "nuts": lambda out: part_nuts(args, out, sampler_factory),
             "mcd_cpu": lambda out: part_mcd_cpu(args, out)}
    names = ["env"] + [name for name in ("mcd", "nuts", "mcd_cpu") if name in args.parts
                       and not (name == "mcd_cpu" and args.cpu_steps <= 0)]
    for name in names:
        print(f"[gpu_check] {name} ...", file=sys.stderr, flush=True)
        out = results[name] = {"ok": False}
        start = time.perf_counter()
        try:
            parts[name](out)
            out["ok"] = True
        except Exception as err:  # noqa: BLE001 - one failing part must not stop the others
            out |= error_record(err)
            print(f"[gpu_check] {name} FAILED: {out['error']}", file=sys.stderr, flush=True)
        out["part_s"] = time.perf_counter() - start
        write(results, args.out)
    text = report_text(results)
    print(text, end="")
    return 0 if all(results[name]["ok"] for name in names) else 1


if __name__ == "__main__":
    sys.exit(main())
