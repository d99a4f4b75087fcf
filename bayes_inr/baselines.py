"""Score the classical reconstructions on a benchmark: the command line.

Command line::

    python -m bayes_inr.baselines --dataset data/benchmark_128.nc --views 20 --split val

The methods are in :mod:`bayes_inr.inference.baselines`.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .core.errors import InputError, check_choice
from .core.outputs import check_output, output_lock
from .inference.baselines.evaluate import CSV_COLUMNS, evaluate, write_csv
from .inference.baselines.methods import DEFAULT_ITERATIONS, ITERATIVE, METHODS, check_iterations
from .inference.baselines.tv import check_weight
from .physics.radon import PROJECTORS


def _parse_methods(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    if not methods:
        raise InputError("--methods is empty")
    for method in methods:
        check_choice("method", method, METHODS)
    return methods


def _parse_iterations(text: str | None) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep:
            raise InputError(f"--iterations item {item!r} is not METHOD=COUNT")
        check_choice("iterative method", name, ITERATIVE)
        try:
            count = int(value)
        except ValueError:
            raise InputError(f"--iterations {name}: {value!r} is not an integer") from None
        counts[name] = check_iterations(name, count)
    return counts


def _table(rows: list[dict], methods: Sequence[str]) -> str:
    lines = [f"{'method':<8}{'iterations':>11}{'weight':>9}{'PSNR':>9}{'SSIM':>9}{'images':>8}"
             f"{'s/image':>9}"]
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        if not mine:
            continue
        lines.append(
            f"{method:<8}{mine[0]['iterations'] or '-':>11}"
            f"{'-' if mine[0]['weight'] == '' else format(mine[0]['weight'], 'g'):>9}"
            f"{np.mean([r['psnr'] for r in mine]):>9.2f}"
            f"{np.mean([r['ssim'] for r in mine]):>9.4f}{len(mine):>8d}"
            f"{np.mean([r['seconds'] for r in mine]):>9.3f}"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``python -m bayes_inr.baselines``."""
    parser = argparse.ArgumentParser(
        prog="python -m bayes_inr.baselines",
        description="Score classical reconstructions (FBP, CGLS, EM, SART, SIRT, TV) on the "
                    "benchmark dataset: mean PSNR and SSIM per method.",
    )
    parser.add_argument("--dataset", required=True,
                        help="benchmark netCDF file (for example data/benchmark_128.nc)")
    parser.add_argument("--views", type=int, default=20,
                        help="number of projection views of the sinograms to use (default 20)")
    parser.add_argument("--split", default="val", choices=("val", "test", "all"),
                        help="which split to reconstruct (default val)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="comma-separated methods among " + ", ".join(METHODS)
                             + " (default all)")
    parser.add_argument("--iterations", default=None,
                        help="iteration counts overriding the defaults, e.g. sirt=200,em=50 "
                             "(defaults: " + ",".join(f"{k}={v}" for k, v in
                                                      DEFAULT_ITERATIONS.items()) + ")")
    parser.add_argument("--tv-weight", type=float, default=None,
                        help="TV weight (default: the value chosen on validation for this "
                             "dataset and view count, models/baselines/tv.toml; see tv_settings)")
    parser.add_argument("--projector", default="linear", choices=PROJECTORS,
                        help="astra projector for the reconstructions (default linear)")
    parser.add_argument("--out", default=None,
                        help="CSV file for one row per (method, image): " + ", ".join(CSV_COLUMNS))
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out file (refused otherwise)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 on bad input)."""
    args = build_parser().parse_args(argv)
    try:
        out = args.out and check_output(args.out, overwrite=args.overwrite, what="--out")
        methods = _parse_methods(args.methods)
        iterations = _parse_iterations(args.iterations)
        if args.views <= 0:
            raise InputError(f"--views must be a positive integer, got {args.views}")
        if args.tv_weight is not None:
            if "tv" not in methods:
                raise InputError("--tv-weight is given but tv is not among --methods")
            check_weight("tv", args.tv_weight)
        from .data.benchmark import load_benchmark

        with output_lock(out) if out else contextlib.nullcontext():
            dataset = load_benchmark(args.dataset)
            rows = evaluate(dataset, methods, args.views, args.split, iterations,
                            args.projector, args.tv_weight, Path(args.dataset).name)
            if out:
                write_csv(out, rows, CSV_COLUMNS)
    except (InputError, FileNotFoundError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    print(f"{args.split} split, {args.views} views, projector {args.projector}")
    print(_table(rows, methods))
    if out:
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
