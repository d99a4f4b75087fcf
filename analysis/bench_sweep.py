"""Sweep throughput: local backend with 1 and 2 workers, and the Ray backend with 2 workers.

    python analysis/bench_sweep.py --repeats 2      # writes analysis/results/bench_sweep.txt

A grid of 8 small MCD trials (one validation phantom each, 48 x 48, 20 views, a few hundred
steps) runs on the local backend with K = 1 and K = 2 worker processes of one torch thread
each, and on a local Ray instance with 2 workers of one thread. Reported: wall time per
configuration (median over repeats), the trial-throughput ratio K=2 / K=1 (target >= 1.6 on
2 cores) and the Ray per-trial overhead against the local backend with 2 workers (target
<= 10 %). Ray's start (``ray.init``, before each Ray run) is timed separately and not
counted per trial; worker start-up (spawning processes, importing torch) is counted in both
backends. The machine's load average is recorded before every run: other work on the 2
cores distorts the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from bayes_inr.core.atomic import atomic_path
from bayes_inr.experiments.sweep import run_sweep

GRID = """[base]
inference = "mcd"
depth = 2
width = 64
omega0 = 4.0
head = "sigmoid"
tv_weight = 2.0
lr = 1e-2
steps = {steps}
draws = 20
dropout_scope = "image"

[grid]
activation = ["relu", "silu", "tanh", "softplus"]
dropout = [0.05, 0.1]
"""

RUNS = {"local K=1": ("local", 1), "local K=2": ("local", 2), "ray K=2": ("ray", 2)}


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--no-ray", action="store_true", help="the local backend only")
    parser.add_argument("--out", type=Path, default=Path("analysis/results/bench_sweep.txt"))
    args = parser.parse_args()
    runs = {name: run for name, run in RUNS.items() if not (args.no_ray and run[0] == "ray")}
    if not args.no_ray:
        import ray

    lines = [f"# python analysis/bench_sweep.py --repeats {args.repeats} --size {args.size} "
             f"--steps {args.steps}{' --no-ray' if args.no_ray else ''}",
             f"# {len(os.sched_getaffinity(0))} usable CPUs, 1 torch thread per worker"]
    walls: dict[str, list[float]] = {name: [] for name in runs}
    trial_seconds: dict[str, list[float]] = {name: [] for name in runs}
    with tempfile.TemporaryDirectory() as tmp:
        grid = Path(tmp) / "bench.toml"
        grid.write_text(GRID.format(steps=args.steps))
        for repeat in range(args.repeats):
            for name, (backend, workers) in runs.items():
                if backend == "ray":  # started just before its run, not counted per trial
                    start = time.perf_counter()
                    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
                    lines.append(f"repeat {repeat} ray.init: {time.perf_counter() - start:.1f} s")
                before = load()
                start = time.perf_counter()
                rows = run_sweep(grid, Path(tmp) / f"{name}-{repeat}".replace(" ", "_"),
                                 views=20, ids=[0], size=args.size, backend=backend,
                                 workers=workers, threads=1, log=lambda _: None)
                wall = time.perf_counter() - start
                assert all(row["status"] == "ok" for row in rows), rows
                if backend == "ray":
                    ray.shutdown()
                walls[name].append(wall)
                trial_seconds[name].append(sum(row["seconds"] for row in rows) / len(rows))
                line = (f"repeat {repeat} {name}: {wall:.1f} s for {len(rows)} trials "
                        f"(mean trial {trial_seconds[name][-1]:.2f} s); load before {before}")
                print(line, flush=True)
                lines.append(line)
    wall = {name: statistics.median(values) for name, values in walls.items()}
    n = len(rows)
    lines += ["", "median wall time (s) and trial throughput (trials/min):"]
    lines += [f"  {name:10s} {wall[name]:7.1f} s  {60 * n / wall[name]:6.2f} trials/min"
              for name in runs]
    ratio = wall["local K=1"] / wall["local K=2"]
    lines += ["", f"throughput ratio local K=2 / K=1: {ratio:.2f} (target >= 1.6)"]
    if "ray K=2" in wall:
        overhead = (wall["ray K=2"] - wall["local K=2"]) / n
        lines.append(f"Ray overhead per trial vs local K=2: {overhead:+.2f} s = "
                     f"{100 * overhead / (wall['local K=2'] / n):+.1f} % of local's "
                     f"{wall['local K=2'] / n:.2f} s per trial (target <= 10 %)")
    lines.append(f"load average at the end: {load()}")
    with atomic_path(args.out) as tmp_out:
        tmp_out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[-8:]))


if __name__ == "__main__":
    main()
