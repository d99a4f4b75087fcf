"""Reports of saved runs: the command line.

    python -m bayes_inr.report mcd.nc nuts.nc fbp.nc --out report/
    python -m bayes_inr.report mcd_test_5.nc --calibration mcd_20.json --out report/

The report itself is :mod:`bayes_inr.reports.report`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .core.errors import InputError
from .core.outputs import check_output_dir, output_lock
from .reports.report import report


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bayes_inr.report",
        description="Report one or more saved runs: Figure-2 panels, MCMC diagnostics "
                    "(R-hat, ESS, divergences, traces), a side-by-side comparison, and one "
                    "page as Markdown (report.md) and self-contained HTML (report.html).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN.nc",
                   help="InferenceData files written by bayes_inr (fit, demo, baselines)")
    p.add_argument("--out", type=Path, default=Path("report"),
                   help="output folder (created if missing; the report's files in it are "
                        "replaced)")
    p.add_argument("--label", action="append", dest="labels", metavar="NAME",
                   help="name of a run, once per run in order (default: the file stems)")
    p.add_argument("--title", help="page title")
    p.add_argument("--calibration", action="append", dest="calibrations", default=[],
                   type=Path, metavar="FILE",
                   help="a calibration file (python -m bayes_inr.recalibration fit): every run "
                        "it applies to is followed by its recalibrated predictive, scored side "
                        "by side (repeatable)")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        check_output_dir(args.out)
        args.out.parent.mkdir(parents=True, exist_ok=True)  # for the lock beside --out
        with output_lock(args.out):
            target = report(args.runs, args.out, labels=args.labels, title=args.title,
                            calibrations=args.calibrations)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {target} and {target.with_suffix('.md')} ({len(args.runs)} "
          f"run{'s' if len(args.runs) > 1 else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
