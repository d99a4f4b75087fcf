"""Recalibration on validation: the command line.

    python -m bayes_inr.recalibration fit val_0.nc val_1.nc ... --dataset data/benchmark_128.nc \
        --out mcd_20.json
    python -m bayes_inr.recalibration apply test_5.nc --calibration mcd_20.json \
        --out test_5_recal.nc

The method is :mod:`bayes_inr.evaluation.recalibration`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from . import posterior
from .core.errors import exit_status
from .core.outputs import check_output
from .data.benchmark import load_benchmark
from .evaluation import metrics
from .evaluation.recalibration import (
    DRAWS,
    FLOORS,
    PREDICTIVES,
    Calibration,
    _truth,
    apply,
    calibrate,
    interval,
    load_calibration,
    run_moments,
    save_calibration,
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bayes_inr.recalibration",
                                description="Recalibration on validation: split-conformal "
                                "intervals and a recalibrated predictive.")
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fit", help="a calibration file from validation runs")
    f.add_argument("runs", type=Path, nargs="+", help="validation run files (.nc) of one "
                   "method, configuration and view count")
    f.add_argument("--out", type=Path, required=True, help="calibration file (.json)")
    f.add_argument("--dataset", type=Path, help="the benchmark the runs were made from: "
                   "establishes each run's split (test runs are refused)")
    f.add_argument("--vouch-validation", action="store_true", help="take runs whose split "
                   "cannot be established as validation images (recorded as unverified)")
    f.add_argument("--predictive", choices=PREDICTIVES, default="residuals",
                   help="the recalibrated predictive m + s Z: Z shaped as the validation "
                   "residuals (default; may move the image), or symmetric with the conformal "
                   "multipliers (keeps the image; its central intervals are the conformal "
                   "ones)")
    f.add_argument("--floor", choices=FLOORS, default="fit",
                   help="variance floor tau^2 of s = sqrt(s_draws^2 + tau^2): fitted on the "
                   "runs by Gaussian likelihood (default), or none (1e-6; the conformal bound "
                   "then holds exactly)")
    f.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    a = sub.add_parser("apply", help="a run's recalibrated predictive")
    a.add_argument("run", type=Path, help="run file (.nc), not one of the calibration runs")
    a.add_argument("--calibration", type=Path, required=True, help="calibration file (.json)")
    a.add_argument("--out", type=Path, required=True, help="recalibrated run file (.nc)")
    a.add_argument("--draws", type=int, default=DRAWS, help="draws of the recalibrated "
                   "predictive")
    a.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    return p


def _fit_command(args) -> None:
    check_output(args.out, overwrite=args.overwrite, what="--out")
    benchmark = None if args.dataset is None else load_benchmark(args.dataset)
    cal = calibrate([posterior.load(path) for path in args.runs],
                    [str(path.resolve()) for path in args.runs],
                    benchmark=benchmark, dataset=None if args.dataset is None
                    else str(args.dataset.resolve()), vouch=args.vouch_validation,
                    predictive=args.predictive, floor=args.floor)
    save_calibration(cal, args.out)
    ks = ", ".join(f"k_{q:g} = {cal.multiplier(q):.3f} (image units: "
                   f"{cal.multiplier(q, 'image'):.3f})" for q in (0.5, 0.9))
    print(f"wrote {args.out}: {cal.method}, {cal.views} views, {cal.predictive} predictive, "
          f"variance floor {cal.floor:.3g} (sd {np.sqrt(cal.floor):.3g}), {cal.n_pixels} "
          f"object pixels of {cal.n_images} validation image(s) ({cal.n_zero_sd} with "
          f"s_draws = 0); {ks}")
    if cal.held_out:
        print(held_out_line(cal))
    if not cal.split_verified:
        print("warning: the split of some runs is vouched for, not verified", file=sys.stderr)


def held_out_line(cal: Calibration) -> str:
    """One line: each calibration image scored under the calibration of the others."""
    mean = cal.held_out_mean()
    per = ", ".join(f"{h['ece']:.3f}/{h['coverage_90']:.2f}" for h in cal.held_out)
    return (f"each validation image held out (calibrated on the others): object ECE "
            f"{mean['ece']:.3f}, 90 % coverage {mean['coverage_90']:.2f} (per image: {per}); "
            "expect this on new images only if they are like the validation images")


def _coverage_line(idata, calibration: Calibration) -> str:
    """Object coverage of the run's conformal intervals at 0.5 and 0.9."""
    truth = _truth(idata, "the run")
    mean, sd = run_moments(idata, calibration.floor)
    obj = metrics.support_masks(truth, posterior.air_level(idata))["object"]
    parts = []
    for q in (0.5, 0.9):
        lo, hi = interval(mean, sd, calibration, q)
        parts.append(f"{q:g}: {np.mean(((truth >= lo) & (truth <= hi))[obj]):.3f}")
    return "conformal interval m +/- k_q s, object coverage at " + ", ".join(parts)


def _apply_command(args) -> None:
    check_output(args.out, overwrite=args.overwrite, what="--out")
    idata = posterior.load(args.run)
    recal = apply(idata, args.calibration, args.draws)
    posterior.save(recal, args.out)
    print(f"wrote {args.out} ({posterior.run_attrs(recal)['method']}, {args.draws} draws)")
    constant = getattr(idata, "constant_data", None)
    if constant is None or "ground_truth" not in constant:
        print("no ground truth in the run: nothing to score")
        return
    print("\ncalibration by pixel set, raw predictive:")
    print(metrics.calibration_table(metrics.score(idata)))
    print("\nrecalibrated predictive (its guarantee covers the object pixels only):")
    print(metrics.calibration_table(metrics.score(recal)))
    print("\n" + _coverage_line(idata, load_calibration(args.calibration)[0]))


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    return exit_status(lambda: (_fit_command if args.command == "fit" else _apply_command)(args))


if __name__ == "__main__":
    sys.exit(main())
