"""Where a run came from: code version, configuration hash, data hash.

Every run file records (as attributes, see :mod:`bayes_inr.posterior`):

- ``git_commit`` and ``git_dirty``: the commit of the package's checkout and whether
  its tracked files had uncommitted changes (``"unknown"`` outside a git checkout);
  files under ``analysis/results/`` (what runs write, not what they run) do not count;
- ``bayes_inr_version``: the package version;
- ``config_hash``: SHA-256 (first 16 hex digits) of the run's settings as canonical
  JSON, without the fields that only steer how a run is executed
  (:data:`RUN_CONTROL`: threads, workers, checkpoint interval);
- ``data_hash``: SHA-256 (first 16 hex digits) of the data the run saw: the measured
  sinogram, its angles and the ground truth when known (shapes and float64 values).

A cache of runs (``analysis/table1.py``) reruns any run whose hashes differ from the
ones it would produce now.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import subprocess
from collections.abc import Mapping
from pathlib import Path

import numpy as np

RUN_CONTROL = frozenset({"threads", "workers", "checkpoint_every"})
"""Settings that change how a run is executed, not what it computes: not hashed. The thread
count changes the rounding of sums, so MCMC draws differ bit for bit across thread counts while
sampling the same posterior (:data:`bayes_inr.inference.single.RESUME_MAY_CHANGE`)."""

HASHED_WHEN_SET = {"tv_units": "factor", "mass_matrix": "diag", "tv_smoothing": 0.0,
                   "member_tv_spread": 1.0, "start_tries": 1}
"""Settings added after runs were recorded, with their defaults. At its default such a
setting is left out of the hash: a run recorded before it existed computed what the default
computes, and keeps its hash."""

_DIGITS = 16


def _digest(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()[:_DIGITS]


def config_hash(settings) -> str:
    """Hash of a run's settings: a :class:`~bayes_inr.inference.config.FitConfig` or a mapping.

    Keys in :data:`RUN_CONTROL`, and those of :data:`HASHED_WHEN_SET` at their default,
    are left out; nested ``member_configs`` (ensembles)
    are hashed member by member the same way.
    """
    if dataclasses.is_dataclass(settings) and not isinstance(settings, type):
        settings = dataclasses.asdict(settings)
    if not isinstance(settings, Mapping):
        raise TypeError(f"settings must be a dataclass or a mapping, got {type(settings)}")
    kept = {k: v for k, v in settings.items() if k not in RUN_CONTROL
            and not (k in HASHED_WHEN_SET and v == HASHED_WHEN_SET[k])}
    if "member_configs" in kept:
        kept["member_configs"] = [config_hash(m) for m in kept["member_configs"]]
    return _digest(json.dumps(kept, sort_keys=True, default=str).encode())


def data_hash(*arrays) -> str:
    """Hash of arrays (``None`` entries count as absent): shape and float64 values, so
    that the hash does not depend on the dtype an array was handed in."""
    h = hashlib.sha256()
    for array in arrays:
        if array is None:
            h.update(b"none;")
            continue
        array = np.ascontiguousarray(array, dtype=np.float64)
        h.update(f"{array.shape};".encode())
        h.update(array.tobytes())
    return h.hexdigest()[:_DIGITS]


CHECKOUT = Path(__file__).resolve().parents[2]
"""The repository root when the package runs from its checkout (``models/``, ``analysis/``
and ``tests/`` beside ``bayes_inr/``)."""


@functools.lru_cache(maxsize=4)
def git_state(root: Path = CHECKOUT) -> tuple[str, bool | None]:
    """(commit, dirty) of the git checkout at ``root`` (default: the package's), read once
    per process, when this module is imported (so that a long run records the checkout its
    code was loaded from, not the one at its first save); ("unknown", None) outside one.
    Any tracked file changed anywhere in the checkout (code, ``models/``, ``analysis/``)
    makes it dirty, except under ``analysis/results/``."""

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", ".",
                         ":(exclude)analysis/results"))
    except (OSError, subprocess.SubprocessError):
        return "unknown", None
    return commit, dirty


git_state()  # at import: see the docstring


def record(settings, *arrays) -> dict:
    """The provenance attributes of one run: commit, dirty flag, version, hashes."""
    from .. import __version__

    commit, dirty = git_state()
    out = {"git_commit": commit, "bayes_inr_version": str(__version__),
           "config_hash": config_hash(settings), "data_hash": data_hash(*arrays)}
    if dirty is not None:
        out["git_dirty"] = int(dirty)  # netCDF attributes cannot be booleans
    return out
