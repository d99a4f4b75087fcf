"""Hyperparameter sweeps: every trial of a grid fitted to every image of a split.

Every trial (a grid point, :mod:`bayes_inr.experiments.grid`) fits every image of the split and
records the mean metrics in the sweep's table (:mod:`bayes_inr.experiments.results`), rewritten
after each trial (atomically). Rerunning the command resumes: trials already in the table
(finished or failed) are not run again. A failing trial is recorded with its error and
the sweep goes on. Ctrl-C or SIGTERM stops the workers and exits 130 with one line saying
how to continue. Arguments and ``--out`` (an existing directory's new or sweep
subdirectory) are checked before anything is written; a sweep holds a lock beside its
directory while it runs.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from pathlib import Path

import numpy as np

from .. import posterior
from ..core.errors import InputError
from ..core.outputs import output_lock
from ..core.workers import check_run_settings, run_tasks
from ..data.benchmark import (
    DEFAULT_BENCHMARK,
    SPLITS,
    benchmark_ids,
    benchmark_sample,
    load_benchmark,
)
from ..data.sample import Sample, phantom_sample
from ..evaluation.metrics import score
from ..inference.fit import fit
from .grid import Trial, load_grid
from .results import (
    METRICS,
    SETTINGS,
    read_table,
    write_settings,
    write_table,
)

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
