"""Model selection from a validation sweep: rank its trials, write the best as model configs.

Trials rank by the mean validation scores of
:data:`~bayes_inr.evaluation.metrics.RANKING`: object CRPS (lower first), ties by PSNR
(higher first); a missing score ranks last. Failed trials are left out,
and configurations that differ only in ``seed`` or ``threads`` count once (their best
trial). Only sweeps on the validation split can be ranked: configurations are never
chosen on test images. Several sweeps of the same images (one grid refined by another) rank
as one pool.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from ..core.atomic import atomic_path
from ..core.errors import InputError
from ..evaluation.metrics import RANKING, SUMMARY, rank_key, score_table
from ..inference.config import FitConfig, load_config
from .results import read_settings, read_table

IGNORED = ("seed", "threads")
"""Fields that do not make a configuration different."""


def rank(directories, top: int | None = None) -> list[dict]:
    """The best ``top`` unique configurations of the validation sweeps in ``directories``
    (one directory or several of the same data), each row with its ``sweep`` directory."""
    directories = [directories] if isinstance(directories, (str, Path)) else directories
    first = read_settings(directories[0])
    for directory in directories:
        settings = read_settings(directory)
        if settings.get("split") != "val":
            raise InputError(f"{directory} is a sweep on {settings.get('split')!r} images; "
                             "only validation sweeps may select configurations")
        if settings != first:
            raise InputError(f"{directory} and {directories[0]} are sweeps of different data "
                             "(dataset, views or images); they cannot rank together")
    if top is not None and top < 1:
        raise InputError(f"--top must be >= 1, got {top}")
    rows = [row | {"sweep": Path(directory)} for directory in directories
            for row in read_table(directory)
            if row["status"] == "ok" and math.isfinite(row[RANKING[0]])]
    if not rows:
        raise InputError(f"{', '.join(map(str, directories))} has no finished trials to rank")
    rows.sort(key=rank_key)
    unique: dict = {}
    for row in rows:
        key = tuple(sorted((k, str(v)) for k, v in row["config"].items() if k not in IGNORED))
        unique.setdefault(key, row)
    return list(unique.values())[:top]


def ranking_table(rows: list[dict]) -> str:
    """The ranked rows as a text table: rank, trial, metrics and swept values."""
    columns = ["rank", "trial", *RANKING, *(c for c in SUMMARY[:5] if c not in RANKING),
               "seconds",
               *dict.fromkeys(name for row in rows for name in row["changes"])]
    return score_table([{"rank": k, "trial": row["trial_id"], **row, **row["changes"]}
                        for k, row in enumerate(rows, 1)], columns)


def toml_value(value) -> str:
    """``value`` (str, bool, int or float) as a TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (int, float)):
        return repr(value)
    raise InputError(f"cannot write {value!r} to a TOML config")


def write_configs(rows: list[dict], directory, sweeps) -> list[Path]:
    """Write ``rows`` (from :func:`rank` of ``sweeps``, one directory or several) as
    ``directory/SWEEP_topK.toml``, SWEEP the first sweep's name; the paths.

    Each file starts with a comment saying where it came from; every file is read back
    with :func:`bayes_inr.inference.config.load_config` before it is kept.
    """
    directory = Path(directory)
    sweeps = [Path(sweeps)] if isinstance(sweeps, (str, Path)) else [Path(s) for s in sweeps]
    if not directory.is_dir():
        raise InputError(f"--write-configs: directory {directory} does not exist")
    settings = read_settings(sweeps[0])
    paths = []
    for k, row in enumerate(rows, 1):
        path = directory / f"{sweeps[0].name}_top{k}.toml"
        header = (f"# Rank {k} of sweep{'s' * (len(sweeps) > 1)} "
                  f"{', '.join(map(str, sweeps))} (trial {row['trial_id']} of "
                  f"{row['sweep']}): mean validation "
                  f"object CRPS {row['crps_object']:.4g}, PSNR {row['psnr']:.2f} dB, object "
                  f"ECE {row['ece_object']:.3f} on "
                  f"{', '.join(settings['images'])} at {settings['views']} views.\n"
                  f"# Written by python -m bayes_inr.sweep --rank {' '.join(map(str, sweeps))} "
                  f"--write-configs {directory}\n")
        body = "".join(f"{f.name} = {toml_value(row['config'][f.name])}\n"
                       for f in dataclasses.fields(FitConfig) if f.name in row["config"])
        with atomic_path(path) as tmp:
            tmp.write_text(header + body)
            load_config(tmp)
        paths.append(path)
    return paths
