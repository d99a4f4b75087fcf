"""Recalibrated Table-1 rows: a method calibrated on the validation split, scored on test.

    python analysis/recalibrate_table1.py [--method de2] [--dataset phantoms] [--views 20]

For one fitted row of ``analysis/table1.py`` (profile ``cpu``; ``--method`` names it:
``btv`` Bayesian TV, ``bbb`` BBB, ``mcd_image`` and ``mcd_pixel`` the two MCD mask scopes,
``de2``, ``de5``, ``de10`` the deep ensembles of seeds, ``despread10`` DE-10 with its
members' TV weights spread, ``detop2`` and ``detop5`` those of the top configurations, the
last three where the dataset and view count have them): fits it on every validation image
exactly as
Table 1 fits it on test (Table 1's own job, so the same config hash; run files and ensemble
members are reused from ``RUNS`` when their config and data hashes match; per-pixel MCD and
DE-N are read off the job's ten-member ensemble, as in Table 1), calibrates it on those runs
(:func:`bayes_inr.evaluation.recalibration.calibrate`, split verified against the benchmark),
applies the calibration to each test run of Table 1 (which must be there: run
``analysis/table1.py`` first), and scores raw and recalibrated predictives, object first.
Nothing is chosen on test: the calibration sees validation images only, and each test image
is scored once per predictive.

Writes ``analysis/results/recalibration/METHOD_DATASET_Vv.json`` and ``..._symmetric.json``
(the calibrations, one per form of the recalibrated predictive, with the variance floor fitted),
the same with ``_nofloor`` (``--floor none``), and ``.md`` (the table, raw and all four).
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
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


METHODS = {"btv": "Bayesian TV", "bbb": "BBB",
           **{f"mcd_{scope}": label for scope, label in table1.MCD_LABELS.items()},
           **{f"de{n}": f"DE-{n}" for n in table1.ENSEMBLES},
           "despread10": "DE-10, TV spread {spread:g}",
           **{f"detop{n}": f"DE-{n}, top {n}" for n in table1.ENSEMBLES}}
"""``--method`` -> its Table-1 row. Per-pixel MCD and the DE-N rows are read off Table 1's
one ensemble job of seeds (its first member, its first N members), ``DE-N, top N`` off the
ensemble of the ranked configurations."""


PREDICTIVE_FILES = {"residuals": "", "symmetric": "_symmetric"}
"""Form of the recalibrated predictive -> suffix of its calibration file's name."""

FLOOR_FILES = {"fit": "", "none": "_nofloor"}
"""Variance floor of the calibration -> the further suffix of its file's name."""


def write_markdown(path: Path, lines: list[str]) -> None:
    """Write a results table atomically and print it."""
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def read_run(path: Path, select: Callable, air_level: float):
    """The part of the run at ``path`` that a row scores, with its image's air level (a run
    file may predate it)."""
    return select(posterior.with_air_level(posterior.load(path), air_level))


def job_runs(data, dataset: table1.DataSet, views: int, split: str, label: str,
             ranked: list | None) -> list[tuple[Path, Callable]]:
    """The run files of the Table-1 job that scores row ``label`` (:func:`table1.jobs`, with
    the ``ranked`` configurations of the dataset and view count) on ``split``, each with
    the function that reads the part the row scores (:func:`read_run`); reused from
    ``RUNS`` (ensemble members from their store) when their hashes match, else fitted
    there."""
    profile = table1.PROFILES["cpu"]
    members, ranked = table1.image_configs(profile, dataset, views, profile.members, ranked)
    runs = []
    for image_id in benchmark_ids(data, split):
        sample = benchmark_sample(data, image_id, views)
        store = table1.run_path(RUNS, "members", dataset, views, image_id).with_suffix("")
        ((job, select),) = [(job, select) for job in table1.jobs(
            sample, dataset, views, profile, members, split, store, ranked)
            for name, select in job.rows if name == label]
        path = table1.run_path(RUNS, job.stem, dataset, views, image_id)
        if split == "test" and not path.exists():
            raise SystemExit(f"{path} is missing: run analysis/table1.py first")
        _, reused = table1.cached(path, job.make, job.settings, sample)
        print(f"{split} image {image_id}: {'reused' if reused else 'fitted'} {path}", flush=True)
        runs.append((path, functools.partial(read_run, path, select, sample.air_level)))
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="de2", choices=sorted(METHODS),
                        help="Table 1's job: " + ", ".join(
                            f"{stem} ({label})" for stem, label in METHODS.items()))
    parser.add_argument("--dataset", default="phantoms", choices=("phantoms", "real CT"))
    parser.add_argument("--views", type=int, default=20)
    args = parser.parse_args()
    profile = table1.PROFILES["cpu"]
    dataset = next(d for d in profile.datasets if d.name == args.dataset)
    try:
        ranked = table1.ranked_configs(dataset, args.views, profile.members, profile.overrides)
    except table1.InputError as err:
        parser.exit(2, f"error: {err}\n")
    if args.method.startswith("detop") and len(ranked or ()) < int(args.method[5:]):
        parser.exit(2, f"error: --method {args.method}: {dataset.name} at {args.views} views "
                       f"has {len(ranked or ())} ranked configurations in profile cpu\n")
    label = METHODS[args.method]
    if args.method == "despread10":
        spread = dict(dataset.tv_spread).get(args.views)
        if spread is None:
            parser.exit(2, f"error: --method despread10: {dataset.name} at {args.views} views "
                           "has no TV-spread ensemble in profile cpu\n")
        label = label.format(spread=spread)
    data = load_benchmark(dataset.path)
    RUNS.mkdir(parents=True, exist_ok=True)
    OUT.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    val = job_runs(data, dataset, args.views, "val", label, ranked)
    test = job_runs(data, dataset, args.views, "test", label, ranked)
    stem = OUT / f"{args.method}_{dataset.key}_{args.views}v"
    runs = [read() for _, read in val]
    files, held_out, floors = {}, [], {}  # row name -> calibration file, per form and floor
    for floor, floor_suffix in FLOOR_FILES.items():
        for form, suffix in PREDICTIVE_FILES.items():
            calibration = calibrate(runs, [p.name for p, _ in val], benchmark=data,
                                    dataset=dataset.path, predictive=form, floor=floor)
            name = f"{form}{'' if floor == 'fit' else ', no floor'}"
            files[f"recalibrated, {name}"] = save_calibration(
                calibration, stem.with_name(stem.name + suffix + floor_suffix + ".json"))
            floors[floor] = calibration.floor
            mean = calibration.held_out_mean()
            held_out.append(f"{name} ECE {mean['ece']:.3f}, cov90 {mean['coverage_90']:.2f} ("
                            + ", ".join(f"{h['ece']:.3f} / {h['coverage_90']:.2f}"
                                        for h in calibration.held_out) + ")")
    rows = {"raw": []} | {name: [] for name in files}
    for _, read in test:
        idata = read()
        rows["raw"].append(score(idata))
        for name, file in files.items():
            rows[name].append(score(apply(idata, file)))
    commit, dirty = git_state()
    lines = [f"# {label} recalibrated on validation: {dataset.name}, "
             f"{args.views} views",
             "",
             f"Written by `python analysis/recalibrate_table1.py --method {args.method} "
             f"--dataset '{dataset.name}' --views {args.views}` (commit {commit[:10]}"
             f"{' with uncommitted changes' if dirty else ''}, "
             f"{time.perf_counter() - start:.0f} s). Calibration: "
             f"{calibration.n_pixels} object pixels of {calibration.n_images} validation "
             f"images; fitted variance floor {floors['fit']:.3g} (sd "
             f"{np.sqrt(floors['fit']):.3g}; no floor: {floors['none']:g}); without it, "
             f"k_0.5 = {calibration.multiplier(0.5):.3f}, k_0.9 = "
             f"{calibration.multiplier(0.9):.3f} (pixel-pooled; the image-level k_0.9 with "
             f"{calibration.n_images} images is {calibration.multiplier(0.9, 'image'):.3f}). "
             "Means over the test images "
             f"{', '.join(p.stem.rpartition('_')[2] for p, _ in test)}; "
             "the recalibrated predictive is m + s Z, s = sqrt(s_draws^2 + floor), with Z "
             "shaped as the validation residuals, or symmetric with the conformal "
             "multipliers (the image unchanged; docs/guide/recalibration.md).",
             "",
             "Each validation image held out, calibrated on the others (object, mean and per "
             "image, the validation-only estimate of the recalibrated rows): "
             + "; ".join(held_out) + ".",
             "",
             "| predictive | " + " | ".join(label for _, label, _ in COLUMNS) + " |",
             "|---|" + "---|" * len(COLUMNS)]
    for name, scores in rows.items():
        means = [float(np.mean([s[key] for s in scores])) for key, _, _ in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(format(m, form) for m, (_, _, form)
                                                 in zip(means, COLUMNS, strict=True)) + " |")
    write_markdown(stem.with_suffix(".md"), lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
