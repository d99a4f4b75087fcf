"""Stacking on validation: the command line.

    python -m bayes_inr.stack fit --component DE-10 de10_val_0.nc de10_val_1.nc \
        --component "Bayesian TV" btv_val_0.nc btv_val_1.nc \
        --dataset data/benchmark_128.nc --out stack.json
    python -m bayes_inr.stack apply de10_test_5.nc btv_test_5.nc --stack stack.json \
        --out stacked_5.nc

The method is :mod:`bayes_inr.evaluation.stacking`; the mixture
:func:`bayes_inr.posterior.mix`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import posterior
from .core.errors import InputError, exit_status
from .core.outputs import check_output
from .data.benchmark import load_benchmark
from .evaluation import metrics
from .evaluation.stacking import STEP, apply_stack, fit_stack, load_stack, save_stack


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bayes_inr.stack",
                                description="Stacking on validation: a mixture of methods "
                                "whose weights minimise the validation object CRPS.")
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fit", help="a stack file from validation runs of two or more methods")
    f.add_argument("--component", nargs="+", action="append", required=True,
                   metavar=("LABEL", "RUN"), help="a method's label and its validation run "
                   "files (.nc), one per image; every component lists the same images in the "
                   "same order. Give --component once per method")
    f.add_argument("--out", type=Path, required=True, help="stack file (.json)")
    f.add_argument("--dataset", type=Path, help="the benchmark the runs were made from: "
                   "establishes each run's split (test runs are refused)")
    f.add_argument("--vouch-validation", action="store_true", help="take runs whose split "
                   "cannot be established as validation images (recorded as unverified)")
    f.add_argument("--step", type=float, default=STEP, help="the weight grid's step on the "
                   f"simplex (default {STEP})")
    f.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    a = sub.add_parser("apply", help="the stacked mixture of one new image's runs")
    a.add_argument("runs", type=Path, nargs="+", help="one run file (.nc) per component, in "
                   "the stack's order, all of one image")
    a.add_argument("--stack", type=Path, required=True, help="stack file (.json)")
    a.add_argument("--out", type=Path, required=True, help="mixture run file (.nc)")
    a.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    return p


def _fit_command(args) -> None:
    check_output(args.out, overwrite=args.overwrite, what="--out")
    short = [c for c in args.component if len(c) < 2]
    if short:
        raise InputError(f"--component {short[0][0]} names no run files")
    labels = [c[0] for c in args.component]
    files = [[Path(f) for f in c[1:]] for c in args.component]
    if len({len(f) for f in files}) != 1:
        raise InputError("every --component needs one run per validation image: got "
                         + ", ".join(f"{label} {len(f)}" for label, f in zip(labels, files,
                                                                            strict=True)))
    missing = [f for fs in files for f in fs if not f.is_file()]
    if missing:
        raise InputError(f"run file {missing[0]} not found")
    benchmark = None if args.dataset is None else load_benchmark(args.dataset)
    images = list(zip(*files, strict=True))
    stack = fit_stack([[posterior.load(f) for f in image] for image in images], labels,
                      [[str(f.resolve()) for f in image] for image in images],
                      benchmark=benchmark, vouch=args.vouch_validation, step=args.step,
                      dataset=None if args.dataset is None else str(args.dataset.resolve()))
    save_stack(stack, args.out)
    chosen = ", ".join(f"{label} {w:g}" for label, w in zip(stack.labels, stack.weights,
                                                            strict=True))
    print(f"wrote {args.out}: weights {chosen}, chosen on {stack.n_images} validation "
          "image(s) by object CRPS (PSNR second)")
    print("validation means over the grid (weights in the components' order):")
    for row in stack.grid:
        mark = " <- chosen" if tuple(row["weights"]) == stack.weights else ""
        print(f"  {' '.join(f'{w:.2f}' for w in row['weights'])}  CRPS obj "
              f"{row['crps_object']:.5f}  PSNR {row['psnr']:.2f}{mark}")
    alone = ", ".join(" ".join(f"{w:g}" for w in choice) for choice in stack.image_choices())
    print(f"weights each validation image alone would choose: {alone}")
    if not stack.split_verified:
        print("warning: the split of some runs is vouched for, not verified", file=sys.stderr)


def _apply_command(args) -> None:
    check_output(args.out, overwrite=args.overwrite, what="--out")
    stack, _ = load_stack(args.stack)
    missing = [f for f in args.runs if not f.is_file()]
    if missing:
        raise InputError(f"run file {missing[0]} not found")
    mixture = apply_stack(stack, [posterior.load(f) for f in args.runs],
                          [str(f) for f in args.runs])
    posterior.save(mixture, args.out)
    print(f"wrote {args.out} ({posterior.run_attrs(mixture)['method']})")
    constant = getattr(mixture, "constant_data", None)
    if constant is not None and "ground_truth" in constant:
        print(metrics.calibration_table(metrics.score(mixture)))


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    return exit_status(lambda: (_fit_command if args.command == "fit" else _apply_command)(args))


if __name__ == "__main__":
    sys.exit(main())
