"""Can a calibration on validation meet issue 14's target on test? Read off validation alone.

    python analysis/recalibration_spread.py      # after analysis/recalibrate_table1.py

The target: after recalibration, object ECE at most 0.03 and 90 % coverage within [0.88,
0.92], means over the test images (five phantoms, or two real-CT slices). Every calibration
file of ``analysis/results/recalibration/`` holds, per validation image, the scores of that
image recalibrated on the other validation images (``held_out``: the validation-only
estimate of the recalibrated predictive on a new image like them;
:func:`bayes_inr.evaluation.recalibration.held_out_scores`). From those this lists, per
Table-1 row and form of the calibration:

- the held-out object ECE, mean and best image, and how many images reach 0.03: if images
  like the calibration ones do not, the test images will not either;
- the spread of the held-out 90 % coverage between images (standard deviation), and what it
  implies for the mean over the test images: its standard deviation ``sd / sqrt(n_test)``
  and the chance that it falls within [0.88, 0.92] if it were centred at 0.90 exactly (a
  normal approximation; an upper bound, since no calibration is centred exactly). Only where
  there are at least :data:`MIN_IMAGES` validation images: two slices give no spread worth
  the name.

No run is read and no test image is used. Files written before calibrations kept held-out
scores are skipped (and counted). Writes ``analysis/results/recalibration/spread.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from bayes_inr.core.atomic import atomic_path
from bayes_inr.core.errors import InputError
from bayes_inr.data.benchmark import benchmark_ids, load_benchmark

CALIBRATIONS = Path("analysis/results/recalibration")
OUT = CALIBRATIONS / "spread.md"
ECE_TARGET = 0.03
COVERAGE_WINDOW = (0.88, 0.92)
MIN_IMAGES = 5
"""The fewest validation images whose coverage spread is listed."""
FORMS = {"_symmetric": "symmetric, floor fitted", "_symmetric_nofloor": "symmetric, no floor"}
"""Calibration files' name suffix -> the form listed (the symmetric form keeps the image)."""


def window_chance(sd: float, n: int, window: tuple[float, float] = COVERAGE_WINDOW) -> float:
    """P(the mean of ``n`` images' coverages lies in ``window``) for coverages of standard
    deviation ``sd`` centred at the window's middle (normal approximation)."""
    half = (window[1] - window[0]) / 2
    if sd == 0:
        return 1.0
    return math.erf(half / (sd / math.sqrt(n)) / math.sqrt(2))


def row(calibration: dict, n_test: int) -> dict:
    """The summary of one calibration file's held-out scores (the coverage spread None
    with fewer than :data:`MIN_IMAGES` images)."""
    ece = np.array([h["ece"] for h in calibration["held_out"]])
    coverage = np.array([h["coverage_90"] for h in calibration["held_out"]])
    summary = {"ece_mean": float(ece.mean()), "ece_best": float(ece.min()),
               "ece_met": int((ece <= ECE_TARGET).sum()), "n": len(ece),
               "coverage_sd": None, "mean_sd": None, "chance": None}
    if len(coverage) >= MIN_IMAGES:
        sd = float(coverage.std(ddof=1))
        summary |= {"coverage_sd": sd, "mean_sd": sd / math.sqrt(n_test),
                    "chance": window_chance(sd, n_test)}
    return summary


def _cell(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    tables: dict[str, list[str]] = {form: [] for form in FORMS.values()}
    tests: dict[str, int] = {}
    counts = {form: [0, 0] for form in FORMS.values()}  # images at ECE <= 0.03, images
    skipped = 0
    for path in sorted(CALIBRATIONS.glob("*.json")):
        suffix = next((s for s in FORMS if path.stem.endswith(s)), None)
        if suffix is None:
            continue
        try:
            calibration = json.loads(path.read_text())
            if not calibration.get("held_out"):
                skipped += 1
                continue
            dataset = calibration["dataset"]
            if dataset not in tests:
                tests[dataset] = len(benchmark_ids(load_benchmark(dataset), "test"))
            r = row(calibration, tests[dataset])
        except (ValueError, KeyError, TypeError, AttributeError, InputError) as err:
            print(f"error: {path} is not a calibration file of this package "
                  f"({type(err).__name__}: {err})", file=sys.stderr)
            return 2
        form = FORMS[suffix]
        counts[form][0] += r["ece_met"]
        counts[form][1] += r["n"]
        tables[form].append(
            f"| {path.stem.removesuffix(suffix)} | "
            f"{r['ece_mean']:.3f} ({r['ece_best']:.3f}) | {r['ece_met']} of {r['n']} | "
            f"{_cell(r['coverage_sd'], '.3f')} | {tests[dataset]} | "
            f"{_cell(r['mean_sd'], '.3f')} | {_cell(r['chance'], '.2f')} |")
    if not any(tables.values()):
        print(f"error: no calibration file with held-out scores in {CALIBRATIONS}: run "
              "analysis/recalibrate_table1.py first", file=sys.stderr)
        return 2
    lines = ["# Issue 14's recalibration target, read off the validation images", "",
             "Written by `python analysis/recalibration_spread.py` from the calibration files "
             "of `analysis/results/recalibration/` (their held-out scores: each validation "
             "image recalibrated on the others). Per Table-1 row: the held-out object ECE, "
             "mean (best image), and the images at most "
             f"{ECE_TARGET}; the standard deviation of the held-out 90 % coverage between "
             "images; the number of test images the target averages over, the standard "
             "deviation of that mean, and the chance that it falls within "
             f"[{COVERAGE_WINDOW[0]}, {COVERAGE_WINDOW[1]}] were it centred at 0.90 "
             "(normal approximation; an upper bound), with at least "
             f"{MIN_IMAGES} validation images. No test image is used. Calibration files "
             f"without held-out scores (written before them), skipped: {skipped}.", ""]
    for form, table in tables.items():
        met, total = counts[form]
        lines += [f"## {form}", "",
                  f"Held-out images with object ECE at most {ECE_TARGET}: {met} of {total}.",
                  "", "| calibration | held-out ECE mean (best) | images at most "
                  f"{ECE_TARGET} | cov90 sd | test images | sd of their mean | "
                  "chance in window |", "|---|---|---|---|---|---|---|", *table, ""]
    with atomic_path(OUT) as tmp:
        Path(tmp).write_text("\n".join(lines))
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
