"""Stacked Table-1 rows: a mixture of two fitted methods, its weights chosen on validation.

    python analysis/stack_table1.py [--methods de10 btv] [--dataset phantoms] [--views 20]

For two (or more) fitted rows of ``analysis/table1.py`` (profile ``cpu``; ``--methods`` names
them as ``analysis/recalibrate_table1.py --method`` does: ``de10`` the deep ensemble of ten
seeds, ``btv`` Bayesian TV, ...; and ``tv``, TV's point estimate), reads or fits their runs
of every validation image exactly as Table 1 does, chooses the mixture weights on those runs
(:func:`bayes_inr.evaluation.stacking.fit_stack`: object CRPS first, PSNR second, on a grid
of step 0.1), applies them to each test run of Table 1 (which must be there: run
``analysis/table1.py`` first), calibrates the stacked mixture on the validation images
(both recalibrated predictives, :mod:`bayes_inr.evaluation.recalibration`) and scores on
test the components, the mixture raw and recalibrated, object first. Nothing is chosen on
test: the weights and calibrations see validation images only, and each test image is
scored once per predictive.

Writes ``analysis/results/stacking/A+B_DATASET_Vv.json`` (the stack, with the validation
scores of its whole grid), ``..._residuals.json`` and ``..._symmetric.json`` (the
calibrations of the mixture) and ``.md`` (the tables).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import recalibrate_table1 as recal  # noqa: E402  (Table 1's jobs, runs and columns)
import table1  # noqa: E402

from bayes_inr import posterior  # noqa: E402
from bayes_inr.core.provenance import git_state  # noqa: E402
from bayes_inr.data.benchmark import load_benchmark  # noqa: E402
from bayes_inr.evaluation.metrics import score  # noqa: E402
from bayes_inr.evaluation.recalibration import apply, calibrate, save_calibration  # noqa: E402
from bayes_inr.evaluation.stacking import apply_stack, fit_stack, save_stack  # noqa: E402

OUT = Path("analysis/results/stacking")
METHODS = recal.METHODS | {"tv": "TV"}
"""``--methods`` -> its Table-1 row: the probabilistic rows of the recalibration script, and
TV's point estimate (a one-draw component: mixing it tests whether a gain comes from the
images or from the draws)."""
COLUMNS = (*recal.COLUMNS[:1], ("ssim", "SSIM", ".3f"), *recal.COLUMNS[1:])
"""The recalibration tables' columns, with SSIM after PSNR."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=["de10", "btv"],
                        choices=sorted(METHODS), metavar="METHOD",
                        help="Table 1's jobs to stack (at least two): " + ", ".join(
                            f"{stem} ({label})" for stem, label in METHODS.items()))
    parser.add_argument("--dataset", default="phantoms", choices=("phantoms", "real CT"))
    parser.add_argument("--views", type=int, default=20)
    args = parser.parse_args()
    if len(set(args.methods)) < 2:
        parser.exit(2, "error: --methods needs at least two different Table-1 jobs\n")
    profile = table1.PROFILES["cpu"]
    dataset = next(d for d in profile.datasets if d.name == args.dataset)
    if args.views not in dataset.views:
        parser.exit(2, f"error: --views {args.views}: {dataset.name} has "
                       f"{', '.join(map(str, dataset.views))} in profile cpu\n")
    try:
        ranked = table1.ranked_configs(dataset, args.views, profile.members, profile.overrides)
    except table1.InputError as err:
        parser.exit(2, f"error: {err}\n")
    for method in args.methods:
        if method.startswith("detop") and len(ranked or ()) < int(method[5:]):
            parser.exit(2, f"error: {method}: {dataset.name} at {args.views} views has "
                           f"{len(ranked or ())} ranked configurations in profile cpu\n")
    data = load_benchmark(dataset.path)
    OUT.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    labels = [METHODS[m] for m in args.methods]
    runs = {split: [recal.job_runs(data, dataset, args.views, split, label, ranked)
                    for label in labels] for split in ("val", "test")}

    def image_runs(split: str) -> tuple[list[list], list[list[str]]]:
        """Per image, each component's run (the row's selection) and its file name."""
        per_image = list(zip(*runs[split], strict=True))
        return ([[read() for _, read in image] for image in per_image],
                [[p.name for p, _ in image] for image in per_image])

    val, val_names = image_runs("val")
    stack = fit_stack(val, labels, val_names, benchmark=data, dataset=dataset.path)
    stem = OUT / f"{'+'.join(args.methods)}_{dataset.key}_{args.views}v"
    save_stack(stack, stem.with_suffix(".json"))
    # the validation images' own mixtures, which the calibration is fitted on
    val_mixed = [posterior.mix(image, stack.weights, labels) for image in val]
    del val
    files = {}
    for form in recal.PREDICTIVE_FILES:
        calibration = calibrate(val_mixed, [names[0] for names in val_names], benchmark=data,
                                dataset=dataset.path, predictive=form)
        files[f"stacked, recalibrated ({form})"] = save_calibration(
            calibration, stem.with_name(f"{stem.name}_{form}.json"))
    del val_mixed
    rows = {label: [] for label in labels} | {"stacked": []} | {name: [] for name in files}
    test, test_names = image_runs("test")
    for image in test:
        for label, idata in zip(labels, image, strict=True):
            rows[label].append(score(idata))
        mixed = apply_stack(stack, image)
        rows["stacked"].append(score(mixed))
        for name, file in files.items():
            rows[name].append(score(apply(mixed, file)))
    chosen = ", ".join(f"{label} {w:g}" for label, w in zip(labels, stack.weights, strict=True))
    commit, dirty = git_state()
    lines = [f"# Stacked {' + '.join(labels)}: {dataset.name}, {args.views} views", "",
             f"Written by `python analysis/stack_table1.py --methods {' '.join(args.methods)} "
             f"--dataset '{dataset.name}' --views {args.views}` (commit {commit[:10]}"
             f"{' with uncommitted changes' if dirty else ''}, "
             f"{time.perf_counter() - start:.0f} s). Weights chosen on the "
             f"{stack.n_images} validation images by object CRPS (PSNR second): **{chosen}**. "
             "Validation means over the grid (the chosen row in bold):", "",
             "| " + " | ".join(f"w {label}" for label in labels) + " | CRPS obj | PSNR |",
             "|" + "---|" * (len(labels) + 2)]
    for row in stack.grid:
        bold = "**" if tuple(row["weights"]) == stack.weights else ""
        lines.append("| " + " | ".join(f"{bold}{w:.1f}{bold}" for w in row["weights"])
                     + f" | {row['crps_object']:.5f} | {row['psnr']:.2f} |")
    alone = "; ".join(", ".join(f"{w:g}" for w in choice) for choice in stack.image_choices())
    lines += ["", f"Weights each validation image alone would choose: {alone}.", "",
              "Test images " + ", ".join(n[0].rpartition("_")[2].removesuffix(".nc")
                                             for n in test_names)
              + " (means); each component as in Table 1, the stacked mixture raw and "
              "recalibrated on the validation images (docs/guide/stacking.md):", "",
              "| predictive | " + " | ".join(label for _, label, _ in COLUMNS) + " |",
              "|---|" + "---|" * len(COLUMNS)]
    for name, scores in rows.items():
        # a one-draw component (TV) has no NLL, ECE or coverage: its cells stay empty
        means = [float(np.mean([s.get(key, np.nan) for s in scores])) for key, _, _ in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(
            "" if np.isnan(m) else format(m, form)
            for m, (_, _, form) in zip(means, COLUMNS, strict=True)) + " |")
    psnrs = ", ".join(f"{s['psnr']:.2f}" for s in rows["stacked"])
    lines += ["", f"Stacked PSNR per test image: {psnrs}."]
    recal.write_markdown(stem.with_suffix(".md"), lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
