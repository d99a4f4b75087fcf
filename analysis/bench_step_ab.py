"""A/B benchmark: MCD training-step time of this tree against another checkout.

    git worktree add /tmp/base <revision>
    python analysis/bench_step_ab.py /tmp/base [--views 20] [--rounds 5] [--steps 40]

Each round runs one subprocess per tree, alternating (so that both see the same machine
load), on validation phantom 0 of ``data/benchmark_128.nc`` with ``models/mcd_V.toml``
of *this* tree: a few warm-up steps, then ``--steps`` timed steps of
:func:`~bayes_inr.inference.svi.fit_svi`. Reported: per-tree medians over the rounds and
their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
CHILD = """
import warnings, torch
warnings.filterwarnings("ignore")
torch.set_num_threads({threads})
from bayes_inr.inference.config import load_config
from bayes_inr.data import benchmark_sample, load_benchmark
from bayes_inr.inference.guides import DropoutGuide
from bayes_inr.inference.single import build_model
from bayes_inr.inference.svi import fit_svi
config = load_config({config!r})
model = build_model(benchmark_sample(load_benchmark({data!r}), 0, {views}), config)
fit_svi(model, DropoutGuide(model, model.init_params(0)), steps=3, lr=config.lr,
        progress=False)
result = fit_svi(model, DropoutGuide(model, model.init_params(0)), steps={steps},
                 lr=config.lr, progress=False)
print(result.seconds_per_step)
"""


def step_seconds(tree: Path, code: str) -> float:
    """Seconds per step of one child process importing ``bayes_inr`` from ``tree``."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, check=True,
                         capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", type=Path, help="the other checkout (the reference)")
    parser.add_argument("--views", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if not (args.base / "bayes_inr" / "__init__.py").is_file():
        parser.error(f"{args.base} is not a checkout of this project (no bayes_inr/ package)")
    code = CHILD.format(threads=args.threads, views=args.views, steps=args.steps,
                        config=str(HERE / f"models/mcd_{args.views}.toml"),
                        data=str(HERE / "data/benchmark_128.nc"))
    trees = {"this tree": HERE, "reference": args.base.resolve()}
    times = {name: [] for name in trees}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            times[name].append(step_seconds(tree, code))
    print(f"MCD step, models/mcd_{args.views}.toml, 128 x 128, {args.threads} threads, "
          f"{args.rounds} alternating rounds of {args.steps} steps")
    for name, values in times.items():
        print(f"  {name:<10} median {1e3 * statistics.median(values):6.1f} ms/step  "
              f"({', '.join(f'{1e3 * v:.1f}' for v in values)})")
    ratio = statistics.median(times["this tree"]) / statistics.median(times["reference"])
    print(f"  ratio this / reference {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
