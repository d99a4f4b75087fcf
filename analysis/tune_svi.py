"""Small validation sweep for the SVI methods (MAP, MCD, BBB).

    python analysis/tune_svi.py --views 20 --ids 0 1 2 3 4 --grid '{"dropout": [0.02, 0.05]}' \
        --base models/mcd_20.toml

Every combination of the grid (JSON: field -> list of values, applied on top of the
base config) is fitted to the chosen validation phantoms; mean PSNR, NLL, ECE and
seconds per fit are printed and appended to analysis/results/tune_svi.csv. Only the
validation split (ids 0-4) is accepted: configurations are never chosen on test.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import time
from pathlib import Path

import numpy as np

from bayes_inr.data.benchmark import benchmark_ids, benchmark_sample, load_benchmark
from bayes_inr.evaluation.metrics import score
from bayes_inr.inference.config import FitConfig, load_config
from bayes_inr.inference.fit import fit

KEYS = ("psnr", "ssim", "crps_object", "nll_object", "ece_object", "coverage_90_object",
        "ece_all")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="data/benchmark_128.nc")
    parser.add_argument("--views", type=int, default=20)
    parser.add_argument("--ids", type=int, nargs="+",
                        help="validation image ids (default: the dataset's whole val split)")
    parser.add_argument("--base", type=Path, help="base TOML config")
    parser.add_argument("--grid", default="{}", help="JSON: field -> list of values")
    parser.add_argument("--out", type=Path, default=Path("analysis/results/tune_svi.csv"))
    args = parser.parse_args()
    dataset = load_benchmark(args.dataset)
    val = benchmark_ids(dataset, "val")
    args.ids = args.ids or val
    if not set(args.ids) <= set(val):
        parser.error(f"tune on validation images (ids {val}) only")
    base = load_config(args.base) if args.base else FitConfig()
    grid = json.loads(args.grid)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    new = not args.out.exists()
    with args.out.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, ["views", "ids", "config", *KEYS, "seconds"])
        if new:
            writer.writeheader()
        for values in itertools.product(*grid.values()):
            changes = dict(zip(grid, values, strict=True))
            config = base.replace(**changes)
            rows, seconds = [], []
            for image_id in args.ids:
                start = time.perf_counter()
                rows.append(score(fit(benchmark_sample(dataset, image_id, args.views), config,
                                      progress=False)))
                seconds.append(time.perf_counter() - start)
            means = {k: float(np.mean([r.get(k, np.nan) for r in rows])) for k in KEYS}
            record = {"views": args.views, "ids": " ".join(map(str, args.ids)),
                      "config": json.dumps(changes or {"base": str(args.base)}),
                      **means, "seconds": float(np.mean(seconds))}
            writer.writerow(record)
            handle.flush()
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
