"""Can the sinogram tell the error that a method's draws miss? Read off Table 1's runs.

Recalibration fits a variance floor tau^2 on the validation truth
(:func:`bayes_inr.evaluation.recalibration.fit_floor`). If the error it stands for were
visible in the data, a fit could estimate it from its own sinogram, with no truth and no
validation images. Under the predictive x ~ (m, Sigma_draws + tau^2 I) and noise sigma, the
misfit r = y - A m has

    E ||r||^2 = n sigma^2 + tr(A Sigma_draws A^T) + tau^2 tr(A^T A),

so tau^2 = (||r||^2 - n sigma^2 - tr(A Sigma_draws A^T)) / tr(A^T A) is what the data say.
For every image of Table 1's run files of the given rows this writes ||r||^2 / (n sigma^2),
tr(A Sigma_draws A^T) / (n sigma^2), that data-implied tau (signed: -sqrt(-tau^2) when the
draws already spread more than the misfit leaves), the RMS error of the posterior mean on
the object, and the floor fitted on the validation truth (the calibration files of
``analysis/recalibrate_table1.py``, where present)::

    python analysis/data_floor.py --dataset "real CT" --views 20 60
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import table1  # noqa: E402  (the runs' file names and datasets)

from bayes_inr import posterior  # noqa: E402
from bayes_inr.core.atomic import atomic_path  # noqa: E402
from bayes_inr.core.provenance import git_state  # noqa: E402
from bayes_inr.data.benchmark import benchmark_ids, benchmark_sample, load_benchmark  # noqa: E402
from bayes_inr.evaluation import metrics  # noqa: E402
from bayes_inr.physics.radon import projection_matrix  # noqa: E402

RUNS = Path("analysis/results/table1_cpu/runs")
CALIBRATIONS = Path("analysis/results/recalibration")
OUT = CALIBRATIONS
ROWS = {"de10": "DE-10", "bbb": "BBB", "mcd_image": "MCD, one mask", "btv": "Bayesian TV"}
"""Run file stem -> its Table-1 row."""


def data_terms(idata, sample) -> dict[str, float]:
    """The misfit and draw-spread energies over the noise energy, the data-implied floor and
    the object RMS error of one run of ``sample``."""
    matrix = projection_matrix(sample.geometry)
    draws = posterior.image_draws(idata).reshape(-1, matrix.shape[1]).astype(np.float64)
    weights = posterior.draw_weights(idata)
    mean = weights @ draws
    y = np.asarray(sample.sinogram, dtype=np.float64).ravel()
    noise = y.size * sample.noise_sigma**2
    misfit = float(np.sum((y - matrix @ mean) ** 2))
    spread = float(weights @ np.sum((matrix @ (draws - mean).T) ** 2, axis=0))
    tau2 = (misfit - noise - spread) / float(matrix.multiply(matrix).sum())
    truth = np.asarray(sample.ground_truth, dtype=np.float64)
    obj = metrics.support_masks(truth, sample.air_level)["object"]
    error = truth - mean.reshape(truth.shape)
    return {"misfit": misfit / noise, "spread": spread / noise,
            "tau_data": float(np.sign(tau2) * np.sqrt(abs(tau2))),
            "rms_object": float(np.sqrt(np.mean(error[obj] ** 2)))}


def fitted_floor(stem: str, key: str, views: int) -> float | None:
    """The sd of the floor fitted on validation for the row, or None without its file."""
    path = CALIBRATIONS / f"{stem}_{key}_{views}v.json"
    if not path.is_file():
        return None
    return float(np.sqrt(json.loads(path.read_text()).get("floor", 1e-6)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="real CT", choices=("phantoms", "real CT"))
    parser.add_argument("--views", type=int, nargs="+", default=[20, 60])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    args = parser.parse_args()
    dataset = next(d for d in table1.PROFILES["cpu"].datasets if d.name == args.dataset)
    data = load_benchmark(dataset.path)
    images = benchmark_ids(data, "all")
    split = {i: "val" for i in benchmark_ids(data, "val")}
    paths = [table1.run_path(RUNS, stem, dataset, v, i) for v in args.views
             for stem in args.rows for i in images]
    missing = [path for path in paths if not path.is_file()]
    if missing:
        parser.exit(2, f"error: {missing[0]} is missing ({len(missing)} run files): run "
                       "analysis/table1.py first\n")
    commit, dirty = git_state()
    lines = [f"# What the sinogram says of the error the draws miss: {dataset.name}", "",
             f"Written by `python analysis/data_floor.py --dataset '{dataset.name}' --views "
             f"{' '.join(map(str, args.views))}` (commit {commit[:10]}"
             f"{' with uncommitted changes' if dirty else ''}) from Table 1's run files. "
             "Energies over the noise energy n sigma^2: the posterior mean's misfit "
             "||y - A m||^2 and the draws' spread tr(A Sigma A^T); tau from the data: "
             "sqrt of (misfit - noise - spread) / tr(A^T A), negative when the draws already "
             "spread more than the misfit leaves; beside it the object RMS error of m and the "
             "floor fitted on the validation truth (sd; `analysis/recalibrate_table1.py`).",
             "", "| views | row | image (split) | misfit | spread | tau from data | RMS error, "
             "object | floor fitted on validation |", "|---|---|---|---|---|---|---|---|"]
    for views in args.views:
        for stem in args.rows:
            floor = fitted_floor(stem, dataset.key, views)
            for image_id in images:
                sample = benchmark_sample(data, image_id, views)
                run = posterior.load(table1.run_path(RUNS, stem, dataset, views, image_id))
                t = data_terms(run, sample)
                lines.append(f"| {views} | {ROWS[stem]} | {image_id} "
                             f"({split.get(image_id, 'test')}) | "
                             f"{t['misfit']:.2f} | {t['spread']:.2f} | {t['tau_data']:+.4f} | "
                             f"{t['rms_object']:.4f} | "
                             f"{'-' if floor is None else format(floor, '.4f')} |")
    path = OUT / f"data_floor_{dataset.key}.md"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
