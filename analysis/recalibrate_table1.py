"""Recalibrated Table-1 rows: a method calibrated on the validation split, scored on test.

    python analysis/recalibrate_table1.py [--method de2] [--dataset phantoms] [--views 20]

For one fitted row of ``analysis/table1.py`` (profile ``cpu``; ``--method`` is its job: ``de2``
for DE-2, ``btv`` for Bayesian TV, ``bbb`` for BBB, ``mcd_image`` for MCD with one mask per
draw): fits it on every validation image exactly as Table 1 fits
it on test (Table 1's own job, so the same config hash; run files are reused from ``RUNS``
when their config and data hashes match), calibrates it on those runs
(:func:`bayes_inr.evaluation.recalibration.calibrate`, split verified against the benchmark),
applies the calibration to each test run of Table 1 (which must be there: run
``analysis/table1.py`` first), and scores raw and recalibrated predictives, object first.
Nothing is chosen on test: the calibration sees validation images only, and each test image
is scored once per predictive.

Writes ``analysis/results/recalibration/METHOD_DATASET_Vv.json`` (the calibration) and
``.md`` (the table).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import table1  # noqa: E402  (this script reuses Table 1's configurations and cache)

from bayes_inr import posterior  # noqa: E402
from bayes_inr.core.atomic import atomic_path  # noqa: E402
from bayes_inr.core.provenance import git_state  # noqa: E402
from bayes_inr.data.benchmark import benchmark_ids, benchmark_sample, load_benchmark  # noqa: E402
from bayes_inr.evaluation.metrics import score  # noqa: E402
from bayes_inr.evaluation.recalibration import apply, calibrate, save_calibration  # noqa: E402

RUNS = Path("analysis/results/table1_cpu/runs")
OUT = Path("analysis/results/recalibration")
COLUMNS = (("psnr", "PSNR", ".2f"), ("crps_object", "CRPS obj", ".4f"),
           ("nll_object", "NLL obj", ".2f"), ("ece_object", "ECE obj", ".3f"),
           ("pit_error_object", "PIT err obj", ".3f"), ("coverage_50_object", "cov50 obj", ".2f"),
           ("coverage_90_object", "cov90 obj", ".2f"), ("below_90_object", "below", ".2f"),
           ("above_90_object", "above", ".2f"), ("ece_all", "ECE all", ".3f"))


METHODS = {"de2": "DE-2", "btv": "Bayesian TV", "bbb": "BBB",
           "mcd_image": table1.MCD_LABELS["image"]}
"""Table 1's job stem -> its row label."""


def job_runs(data, dataset: table1.DataSet, views: int, split: str, stem: str) -> list[Path]:
    """The run files of Table 1's job ``stem`` (:func:`table1.jobs`) on ``split``, reused
    from ``RUNS`` when their hashes match, else fitted there."""
    profile = table1.PROFILES["cpu"]
    members = table1.member_configs(views, 2, profile.overrides, dataset.data)
    paths = []
    for image_id in benchmark_ids(data, split):
        sample = benchmark_sample(data, image_id, views)
        (job,) = [job for job in table1.jobs(sample, dataset, views, profile, members, split)
                  if job.stem == stem]
        path = RUNS / f"{job.stem}_{dataset.key}_{views}v_{image_id}.nc"
        if split == "test" and not path.exists():
            raise SystemExit(f"{path} is missing: run analysis/table1.py first")
        _, reused = table1.cached(path, job.make, job.settings, sample)
        print(f"{split} image {image_id}: {'reused' if reused else 'fitted'} {path}", flush=True)
        paths.append(path)
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="de2", choices=sorted(METHODS),
                        help="Table 1's job: " + ", ".join(
                            f"{stem} ({label})" for stem, label in METHODS.items()))
    parser.add_argument("--dataset", default="phantoms", choices=("phantoms", "real CT"))
    parser.add_argument("--views", type=int, default=20)
    args = parser.parse_args()
    dataset = next(d for d in table1.PROFILES["cpu"].datasets if d.name == args.dataset)
    data = load_benchmark(dataset.path)
    RUNS.mkdir(parents=True, exist_ok=True)
    OUT.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    val = job_runs(data, dataset, args.views, "val", args.method)
    test = job_runs(data, dataset, args.views, "test", args.method)
    stem = OUT / f"{args.method}_{dataset.key}_{args.views}v"
    calibration = calibrate([posterior.load(p) for p in val], [p.name for p in val],
                            benchmark=data, dataset=dataset.path)
    save_calibration(calibration, stem.with_suffix(".json"))
    rows = {"raw": [], "recalibrated": []}
    for path in test:
        idata = posterior.load(path)
        rows["raw"].append(score(idata))
        rows["recalibrated"].append(score(apply(idata, stem.with_suffix(".json"))))
    commit, dirty = git_state()
    lines = [f"# {METHODS[args.method]} recalibrated on validation: {dataset.name}, "
             f"{args.views} views",
             "",
             f"Written by `python analysis/recalibrate_table1.py --method {args.method} "
             f"--dataset '{dataset.name}' --views {args.views}` (commit {commit[:10]}"
             f"{' with uncommitted changes' if dirty else ''}, "
             f"{time.perf_counter() - start:.0f} s). Calibration: "
             f"{calibration.n_pixels} object pixels of {calibration.n_images} validation "
             f"images; k_0.5 = {calibration.multiplier(0.5):.3f}, k_0.9 = "
             f"{calibration.multiplier(0.9):.3f} (pixel-pooled; the image-level k_0.9 with "
             f"{calibration.n_images} images is {calibration.multiplier(0.9, 'image'):.3f}). "
             f"Means over the test images {', '.join(p.stem.rpartition('_')[2] for p in test)}; "
             "the recalibrated predictive is m + s Z with Z the validation residuals "
             "(docs/guide/recalibration.md).",
             "",
             "| predictive | " + " | ".join(label for _, label, _ in COLUMNS) + " |",
             "|---|" + "---|" * len(COLUMNS)]
    for name, scores in rows.items():
        means = [float(np.mean([s[key] for s in scores])) for key, _, _ in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(format(m, form) for m, (_, _, form)
                                                 in zip(means, COLUMNS, strict=True)) + " |")
    with atomic_path(stem.with_suffix(".md")) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
