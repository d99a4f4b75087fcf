"""Hyperparameter sweeps on local processes or a Ray cluster; ranking; boxplots.

    python -m bayes_inr.sweep --grid models/sweeps/mcd_cpu.toml --views 20 --split val \\
        --backend local --workers 2 --out sweeps/mcd_cpu
    python -m bayes_inr.sweep --grid models/sweeps/mcd_paper.toml --backend ray \\
        --address auto --out sweeps/mcd_paper                      # an existing Ray cluster
    python -m bayes_inr.sweep --rank sweeps/mcd_cpu --top 3 --write-configs models/
    python -m bayes_inr.sweep --plot sweeps/mcd_cpu                # boxplots_psnr.png

Every trial (a grid point, :mod:`bayes_inr.grid`) fits every image of the split and
records the mean metrics in the sweep's table (:mod:`bayes_inr.results`), rewritten
after each trial (atomically). Rerunning the command resumes: trials already in the table
(finished or failed) are not run again. A failing trial is recorded with its error and
the sweep goes on. Ctrl-C or SIGTERM stops the workers and exits 130 with one line saying
how to continue. Arguments and ``--out`` (an existing directory's new or sweep
subdirectory) are checked before anything is written; a sweep holds a lock beside its
directory while it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

from . import posterior
from .boxplots import boxplot_figure
from .data import (
    DEFAULT_BENCHMARK,
    SPLITS,
    Sample,
    benchmark_ids,
    benchmark_sample,
    load_benchmark,
    phantom_sample,
)
from .errors import InputError
from .fit import fit
from .grid import Trial, load_grid
from .metrics import score
from .outputs import output_lock
from .ranking import rank, ranking_table, write_configs
from .results import (
    METRICS,
    SETTINGS,
    TABLE,
    read_settings,
    read_table,
    write_settings,
    write_table,
)
from .workers import BACKENDS, check_run_settings, raise_interrupt, rerun_command, run_tasks

BOXPLOT = "boxplots_psnr.png"


def split_samples(split: str, views: int, ids: list[int] | None = None, size: int | None = None,
                  dataset=DEFAULT_BENCHMARK) -> list[Sample]:
    """The images of ``split`` (or its subset ``ids``) at ``views`` views: entries of the
    benchmark file ``dataset``, or with ``size`` the same phantoms simulated at that size."""
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    bench = None if size else load_benchmark(dataset)
    members = list(SPLITS[split]) if size else benchmark_ids(bench, split)
    ids = members if ids is None else ids
    outside = sorted(set(ids) - set(members))
    if outside or not ids:
        raise InputError(f"--ids must be {split} ids ({', '.join(map(str, members))}), "
                         f"got {', '.join(map(str, ids)) or 'none'}")
    if size:
        return [phantom_sample(i, views, size) for i in ids]
    return [benchmark_sample(bench, i, views) for i in ids]


def run_trial(trial: Trial, samples: list[Sample]) -> dict:
    """Fit ``trial`` to every sample; its table row (a failure is a row with its error)."""
    start = time.perf_counter()
    row = {"trial_id": trial.id, "changes": trial.changes, "config": trial.values,
           "n_images": len(samples), "diverged": 0, "error": ""} | dict.fromkeys(METRICS,
                                                                                math.nan)
    try:
        config = trial.config()
        scores = []
        for sample in samples:
            idata = fit(sample, config, progress=False)
            row["diverged"] += "diverged_at_step" in posterior.config(idata)
            scores.append(score(idata))
    except Exception as err:  # any failure of one trial is recorded; the sweep goes on
        message = (str(err).splitlines() or [""])[0]
        return row | {"status": "failed", "error": f"{type(err).__name__}: {message}",
                      "seconds": time.perf_counter() - start, "n_images": 0}
    means = {name: float(np.mean([s.get(name, math.nan) for s in scores])) for name in METRICS}
    return row | means | {"status": "ok", "seconds": time.perf_counter() - start}


def run_sweep(grid_path, out, *, views: int = 20, split: str = "val",
              ids: list[int] | None = None, size: int | None = None,
              dataset=DEFAULT_BENCHMARK, backend: str = "local", workers: int = 1,
              threads: int = 1, address: str | None = None, log=print) -> list[dict]:
    """Run the trials of the grid file ``grid_path`` not yet in ``out``'s table.

    Returns the table's rows: the grid's trials in grid order, then rows of earlier
    trials no longer in the grid. ``log`` receives one line per finished trial.
    """
    check_run_settings(workers, threads, backend, address)
    trials = load_grid(grid_path).trials()
    samples = split_samples(split, views, ids, size, dataset)
    out = check_sweep_dir(out)
    with output_lock(out):
        out.mkdir(exist_ok=True)
        write_settings(out, {"views": views, "split": split, "size": size,
                             "images": [sample.name for sample in samples],
                             "dataset": None if size else str(dataset)})
        return _run_trials(trials, samples, out, backend, workers, threads, address, log,
                           f"{split} images at {views} views")


def check_sweep_dir(out) -> Path:
    """Raise :class:`InputError` unless ``out`` can be a sweep directory: a sweep's, an
    empty one, or a new one in an existing directory; every one of them writable."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; a sweep writes a directory")
    if not out.parent.is_dir():
        raise InputError(f"--out {out}: directory {out.parent} does not exist")
    if out.is_dir() and any(out.iterdir()) and not (out / SETTINGS).is_file():
        raise InputError(f"--out {out} is a directory but not a sweep's (no {SETTINGS}); "
                         "choose a new or sweep directory")
    for directory in (out.parent, out):
        if directory.exists() and not os.access(directory, os.W_OK | os.X_OK):
            raise InputError(f"--out {out}: directory {directory} is not writable")
    return out


def _run_trials(trials: list[Trial], samples: list[Sample], out: Path, backend: str,
                workers: int, threads: int, address: str | None, log, data: str
                ) -> list[dict]:
    """Run the ``trials`` not yet in ``out``'s table; write the table after each one."""
    done = {row["trial_id"]: row for row in read_table(out)}
    todo = [trial for trial in trials if trial.id not in done]
    order = list(dict.fromkeys([trial.id for trial in trials] + list(done)))
    log(f"{len(trials)} trials, {len(trials) - len(todo)} already in {out}; running "
        f"{len(todo)} on {backend} ({workers} worker(s) x {threads} thread(s)), "
        f"{len(samples)} {data} each")
    job = functools.partial(run_trial, samples=samples)
    with contextlib.closing(run_tasks(job, todo, workers=workers, threads=threads,
                                      backend=backend, address=address)) as results:
        for count, (k, row) in enumerate(results, 1):
            done[row["trial_id"]] = row
            write_table(out, [done[i] for i in order if i in done])
            log(f"[{count}/{len(todo)}] {_summary(todo[k], row)}")
    return [done[i] for i in order if i in done]


def _summary(trial: Trial, row: dict) -> str:
    changes = " ".join(f"{name}={value}" for name, value in trial.changes.items())
    if row["status"] == "failed":
        return f"{trial.id} FAILED ({row['error']}) {changes}"
    return (f"{trial.id} PSNR {row['psnr']:.2f} dB, object CRPS {row['crps_object']:.4f}, "
            f"{row['seconds']:.1f} s  {changes}")


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
    mode.add_argument("--rank", type=Path, metavar="DIR",
                      help="rank the finished validation trials of a sweep directory")
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
