"""A sweep's directory: its data settings (``sweep.json``) and results table (``results.csv``).

The table has one row per trial: ``trial_id``, ``status`` (``ok`` or ``failed``), the
mean over the split's images of :data:`METRICS`, ``seconds`` (the trial's wall time),
``n_images``, ``diverged`` (fits that diverged), ``error`` (a failed trial's message), one
column per swept field, then ``changes`` (the swept values) and ``config`` (the full
configuration), both JSON. Both files are rewritten atomically, so an interruption
leaves the previous complete table.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from ..core.atomic import atomic_path
from ..core.errors import InputError
from ..evaluation.metrics import SUMMARY

SETTINGS = "sweep.json"
TABLE = "results.csv"
METRICS = SUMMARY
COLUMNS = ("trial_id", "status", *METRICS, "seconds", "n_images", "diverged", "error")
FLOATS = (*METRICS, "seconds")
INTS = ("n_images", "diverged")


def write_settings(directory, settings: dict) -> None:
    """Write ``sweep.json``, or check that an existing one has the same ``settings``."""
    path = Path(directory) / SETTINGS
    if path.is_file():
        stored = read_settings(directory)
        differ = sorted(k for k in settings.keys() | stored.keys()
                        if stored.get(k) != settings.get(k))
        if differ:
            raise InputError(f"{directory} is a sweep with other data settings ("
                             + ", ".join(f"{k} {stored.get(k)!r} there, {settings.get(k)!r} now"
                                         for k in differ) + "): use another --out")
        return
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")


def read_settings(directory) -> dict:
    """The data settings of the sweep in ``directory``."""
    path = Path(directory) / SETTINGS
    if not path.is_file():
        raise InputError(f"{directory} is not a sweep directory (no {SETTINGS})")
    return json.loads(path.read_text())


def write_table(directory, rows: list[dict]) -> Path:
    """Write ``rows`` (dicts with the :data:`COLUMNS`, ``changes`` and ``config``) atomically."""
    path = Path(directory) / TABLE
    params = list(dict.fromkeys(name for row in rows for name in row["changes"]))
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, [*COLUMNS, *params, "changes", "config"])
        writer.writeheader()
        for row in rows:
            writer.writerow({name: row[name] for name in COLUMNS}
                            | {name: row["changes"].get(name, "") for name in params}
                            | {"changes": json.dumps(row["changes"]),
                               "config": json.dumps(row["config"], sort_keys=True)})
    return path


def read_table(directory) -> list[dict]:
    """The rows of ``results.csv`` in ``directory`` ([] when there is none yet)."""
    path = Path(directory) / TABLE
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and not {*COLUMNS, "changes", "config"} <= rows[0].keys():
        raise InputError(f"{path} is not a sweep results table")
    return [{name: row[name] for name in COLUMNS}
            | {name: float(row[name]) if row[name] else math.nan for name in FLOATS}
            | {name: int(row[name]) for name in INTS}
            | {"changes": json.loads(row["changes"]), "config": json.loads(row["config"])}
            for row in rows]
