"""The command line that writes the benchmarks: ``python -m bayes_inr.data``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.errors import InputError
from ..core.outputs import check_output, output_lock
from ..physics.resources import check_memory
from .benchmark import build_benchmark, build_real_benchmark, write_dataset
from .sample import PROTOCOLS


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bayes_inr.data",
        description="Write the phantom benchmark (ids 0-4 validation, 5-9 test) or, with "
                    "--real, the real-CT benchmark as netCDF.")
    parser.add_argument("--real", action="store_true",
                        help="real CT slices from pydicom and pydicom-data instead of phantoms "
                             "(defaults: views 20 60, 40 dB noise, data/real_SIZE.nc)")
    parser.add_argument("--out", type=Path,
                        help="output file (default data/benchmark_SIZE.nc or data/real_SIZE.nc)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out file (refused otherwise)")
    parser.add_argument("--size", type=int, default=128, help="image side N (default 128)")
    parser.add_argument("--views", type=int, nargs="+", default=None,
                        help="view counts to simulate (default 5 20; --real: 20 60)")
    parser.add_argument("--phantoms", type=int, default=None,
                        help="number of phantoms (10; not with --real)")
    parser.add_argument("--seed", type=int, default=0, help="phantom and noise seed (0)")
    parser.add_argument("--protocol", default="fine", choices=PROTOCOLS,
                        help="fine: project a finer grid (default); same: the paper's protocol")
    parser.add_argument("--supersample", type=int, default=2,
                        help="fine-grid factor for --protocol fine (default 2)")
    parser.add_argument("--noise-snr", type=float, default=None,
                        help="Gaussian noise at this SNR in dB (default: noiseless; --real: 40)")
    args = parser.parse_args(argv)
    views = args.views or ([20, 60] if args.real else [5, 20])
    try:
        if any(v <= 0 for v in views) or args.size <= 0 or args.supersample < 2:
            raise InputError("--size and --views must be positive and --supersample >= 2")
        if args.real and args.phantoms is not None:
            raise InputError("--phantoms does not apply to --real")
        stem = "real" if args.real else "benchmark"
        out = check_output(args.out or Path(f"data/{stem}_{args.size}.nc"),
                           overwrite=args.overwrite, what="--out")
        check_memory(args.size, max(views) if args.protocol == "same" else 0,
                     points=2 * args.supersample)
        with output_lock(out):
            if args.real:
                snr = 40.0 if args.noise_snr is None else args.noise_snr
                dataset = build_real_benchmark(args.size, tuple(views), args.seed,
                                               args.supersample, snr, protocol=args.protocol)
                what = f"{dataset.sizes['phantom']} real CT slices"
            else:
                n = 10 if args.phantoms is None else args.phantoms
                dataset = build_benchmark(args.size, tuple(views), n, args.seed,
                                          args.supersample, protocol=args.protocol,
                                          snr_db=args.noise_snr)
                what = f"{n} phantoms"
            write_dataset(dataset, out)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}: {what} at {args.size} x {args.size}, views {views}, "
          f"protocol {args.protocol}")
    return 0

