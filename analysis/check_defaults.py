"""Do the defaults serve a new user? The commands of a user who knows no configuration.

1. ``python -m bayes_inr.fit --inference nuts --size 32 --views 20 --warmup 50 --draws
   50``, timed (wall clock of the whole command). Target: at most 2 minutes here. It runs
   first, before the machine warms up with the long fits.
2. ``python -m bayes_inr.fit --inference mcd --image CT_small.dcm --views V`` with no
   ``--config`` (so the shipped configuration the CLI picks), for V = 10, 15, 20, 25, 30,
   against a 1000-iteration SIRT on the same simulated sinogram (noiseless, the fit's
   own simulation: ``simulate(image, V, seed=0)``). Target: the fit beats SIRT by at
   least 2 dB at every V. ``CT_small.dcm`` is pydicom's 128 x 128 CT test slice, test
   slice 2 of ``data/real_128.nc``, so nothing was chosen on it.

Every command runs as a subprocess, one at a time (do not run anything else meanwhile:
the NUTS time is a wall time). Writes ``analysis/results/defaults_check.csv`` and
``.md``::

    python analysis/check_defaults.py [--views 10 15 20 25 30] [--threads 2]
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pydicom.data import get_testdata_file

from bayes_inr import posterior
from bayes_inr.core.atomic import atomic_path
from bayes_inr.core.provenance import git_state
from bayes_inr.data.images import load_image
from bayes_inr.data.sample import simulate
from bayes_inr.evaluation.metrics import psnr, score
from bayes_inr.inference.baselines.classical import reconstruct

RESULTS = Path(__file__).resolve().parent / "results"
FIT = [sys.executable, "-m", "bayes_inr.fit", "--quiet"]


def run(command: list[str], threads: int) -> tuple[float, str]:
    """Run ``command``; its wall time and stdout (a failure stops the check)."""
    env = os.environ | {"OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    return seconds, done.stdout


def config_line(stdout: str) -> str:
    """The configuration the command line announced."""
    return next((line.removeprefix("config: ").split(" (")[0] for line in stdout.splitlines()
                 if line.startswith("config: ")), "?")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--views", type=int, nargs="+", default=[10, 15, 20, 25, 30])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    image_path = get_testdata_file("CT_small.dcm")
    truth = load_image(image_path)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "nuts.nc"
        command = [*FIT, "--inference", "nuts", "--size", "32", "--views", "20", "--warmup",
                   "50", "--draws", "50", "--threads", str(args.threads), "--out", str(out)]
        seconds, stdout = run(command, args.threads)
        idata = posterior.load(out)
        scores = score(idata)
        stats = idata.sample_stats
        rows.append({"check": "32x32 nuts 50+50", "views": 20, "config": config_line(stdout),
                     "psnr": scores["psnr"], "sirt_psnr": float("nan"), "gain_db": float("nan"),
                     "crps_object": scores["crps_object"],
                     "coverage_90_object": scores["coverage_90_object"], "seconds": seconds,
                     "divergences": int(stats["diverging"].sum()),
                     "mean_tree_depth": float(stats["tree_depth"].mean())})
        print(rows[-1], flush=True)
        for views in args.views:
            out = Path(tmp) / f"mcd_{views}.nc"
            command = [*FIT, "--inference", "mcd", "--image", image_path, "--views",
                       str(views), "--threads", str(args.threads), "--out", str(out)]
            seconds, stdout = run(command, args.threads)
            scores = score(posterior.load(out))
            sample = simulate(truth, views, seed=0)
            sirt = reconstruct("sirt", sample.sinogram, sample.geometry, iterations=1000)
            rows.append({"check": "CT_small mcd", "views": views, "config": config_line(stdout),
                         "psnr": scores["psnr"], "sirt_psnr": psnr(sirt, truth),
                         "gain_db": scores["psnr"] - psnr(sirt, truth),
                         "crps_object": scores["crps_object"],
                         "coverage_90_object": scores["coverage_90_object"],
                         "seconds": seconds})
            print(rows[-1], flush=True)
    commit, dirty = git_state()
    write(rows, args.threads, commit[:10] + (" with uncommitted changes" if dirty else ""))
    return 0


def write(rows: list[dict], threads: int, state: str) -> None:
    """Write the rows as ``defaults_check.csv`` and ``.md``; ``state`` names the code (commit)."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    RESULTS.mkdir(exist_ok=True)
    with atomic_path(RESULTS / "defaults_check.csv") as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)

    def num(value, form: str) -> str:
        value = float(value)
        return "-" if math.isnan(value) else format(value, form)

    lines = [f"# Defaults check (commit {state}, {threads} torch threads, "
             f"{time.strftime('%Y-%m-%d')})", "",
             "Written by `python analysis/check_defaults.py`; see its docstring. Target: every "
             "MCD row at least 2 dB above SIRT-1000, the NUTS row at most 120 s.", "",
             "| check | views | config picked | PSNR (dB) | SIRT-1000 (dB) | gain (dB) "
             "| CRPS object | cov90 object | wall (s) |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['check']} | {r['views']} | {r['config']} | {num(r['psnr'], '.2f')} | "
                     f"{num(r['sirt_psnr'], '.2f')} | {num(r['gain_db'], '+.2f')} | "
                     f"{num(r['crps_object'], '.4f')} | {num(r['coverage_90_object'], '.3f')} | "
                     f"{num(r['seconds'], '.0f')} |")
    nuts = [r for r in rows if "divergences" in r and r["divergences"] not in ("", None)]
    for r in nuts:
        lines += ["", f"NUTS: {int(float(r['divergences']))} divergences, mean tree depth "
                      f"{float(r['mean_tree_depth']):.1f} (the recipe's maximum: the "
                      "trajectories are cut short, as the command warns)."]
    with atomic_path(RESULTS / "defaults_check.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
