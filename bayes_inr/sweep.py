"""Hyperparameter sweeps on local processes or a Ray cluster; ranking; boxplots.

    python -m bayes_inr.sweep --grid models/sweeps/mcd_cpu.toml --views 20 --split val \\
        --backend local --workers 2 --out sweeps/mcd_cpu
    python -m bayes_inr.sweep --grid models/sweeps/mcd_paper.toml --backend ray \\
        --address auto --out sweeps/mcd_paper                      # an existing Ray cluster
    python -m bayes_inr.sweep --rank sweeps/mcd_cpu --top 3 --write-configs models/
    python -m bayes_inr.sweep --plot sweeps/mcd_cpu                # boxplots_psnr.png

What a trial is, how a rerun resumes, how Ctrl-C or SIGTERM stops the workers and what is
checked before anything is written: :mod:`bayes_inr.experiments.sweep`.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from .core.errors import InputError
from .core.workers import BACKENDS, raise_interrupt, rerun_command
from .data.benchmark import (
    DEFAULT_BENCHMARK,
    SPLITS,
)
from .experiments.ranking import rank, ranking_table, write_configs
from .experiments.results import (
    TABLE,
    read_settings,
    read_table,
)
from .experiments.sweep import BOXPLOT, run_sweep
from .plots.boxplots import boxplot_figure


def _interrupted(out: Path | None, argv) -> str:
    """The line an interrupted command prints: what is kept, how to continue."""
    if out is None:
        return "interrupted"
    return (f"interrupted: {len(read_table(out))} finished trial(s) are in {out / TABLE}; "
            f"continue with: {rerun_command('bayes_inr.sweep', argv)}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bayes_inr.sweep",
                                description=__doc__.split("\n\n")[0].strip(),
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--grid", type=Path, help="run the grid file (models/sweeps/NAME.toml)")
    mode.add_argument("--rank", type=Path, nargs="+", metavar="DIR",
                      help="rank the finished validation trials of sweep directories of the "
                           "same data, pooled (by object CRPS, then PSNR)")
    mode.add_argument("--plot", type=Path, metavar="DIR",
                      help=f"write DIR/{BOXPLOT} from a sweep's table")
    run = p.add_argument_group("running a grid")
    run.add_argument("--out", type=Path, help="sweep directory, new or a sweep's, in an "
                     "existing directory (default sweeps/GRIDNAME; sweeps/ is created)")
    run.add_argument("--views", type=int, default=20, help="views per sinogram")
    run.add_argument("--split", default="val", choices=tuple(SPLITS),
                     help="images to fit (configurations are chosen on val only)")
    run.add_argument("--ids", type=int, nargs="+", help="a subset of the split's image ids")
    run.add_argument("--size", type=int,
                     help="simulate the split's phantoms at this size instead of --dataset")
    run.add_argument("--dataset", type=Path, default=DEFAULT_BENCHMARK, help="benchmark file")
    run.add_argument("--backend", default="local", choices=BACKENDS,
                     help="local processes or Ray tasks")
    run.add_argument("--workers", type=int, default=1,
                     help="trials at once: local processes, or Ray tasks (a local Ray "
                          "instance gets workers x threads CPUs)")
    run.add_argument("--threads", type=int, default=1, help="torch threads per trial")
    run.add_argument("--address", help="ray: address of an existing cluster (e.g. auto)")
    sel = p.add_argument_group("ranking")
    sel.add_argument("--top", type=int, default=5, help="how many configurations")
    sel.add_argument("--write-configs", type=Path, metavar="DIR",
                     help="write the top configurations as DIR/SWEEP_topK.toml")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    out = (args.out or Path("sweeps") / args.grid.stem) if args.grid else None
    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        if args.write_configs and not args.rank:
            raise InputError("--write-configs goes with --rank")
        if args.grid:
            if args.out is None:
                out.parent.mkdir(exist_ok=True)
            rows = run_sweep(args.grid, out, views=args.views, split=args.split, ids=args.ids,
                             size=args.size, dataset=args.dataset, backend=args.backend,
                             workers=args.workers, threads=args.threads, address=args.address)
            failed = sum(row["status"] == "failed" for row in rows)
            print(f"wrote {out / 'results.csv'} ({len(rows)} trials, {failed} failed)")
            if len(rows) > failed:
                print(f"wrote {boxplot_figure(rows, out / BOXPLOT)}")
        elif args.plot:
            read_settings(args.plot)
            print(f"wrote {boxplot_figure(read_table(args.plot), args.plot / BOXPLOT)}")
        else:
            ranked = rank(args.rank, args.top)
            print(ranking_table(ranked))
            if args.write_configs:
                for path in write_configs(ranked, args.write_configs, args.rank):
                    print(f"wrote {path}")
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(_interrupted(out, argv), file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
