"""Deep ensembles (the paper's DE-N): a mixture of independent fits.

Each member is an independent MAP, BBB or MCD fit (MCD by default) with its own seed,
so its own Fourier matrix and initial weights; members may have different
configurations (for example the top N of a sweep, :mod:`bayes_inr.experiments.ranking`). Members
run on :mod:`bayes_inr.core.workers` processes. The InferenceData stores member k as chain
k, with coordinates ``member`` (its label) and ``member_config`` (its configuration as
JSON) on the chain dimension; a deterministic member (MAP) is one draw, not copies of
one draw. Metrics score the equally weighted mixture: every member weighs 1/K whatever its
draw count (:func:`bayes_inr.posterior.draw_weights`).

Finished work is kept: the CLI (``python -m bayes_inr.fit --inference ensemble --out
OUT``) writes every member to ``OUT.members/`` as it finishes (:func:`members_dir`); an
interrupted run (Ctrl-C, SIGTERM) exits 130 with one line saying how to continue, which
is the same command: it reuses the stored members whose configuration and data hashes
match, fits the others, writes OUT and removes ``OUT.members/``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np

from .. import posterior
from ..core import provenance
from ..core.errors import InputError
from ..core.workers import run_tasks, threads_per_worker
from ..data.sample import Sample
from ..evaluation.metrics import score
from .config import FitConfig
from .method import InferenceMethod, get_method, method_names


class Ensemble(InferenceMethod):
    """The paper's DE-N: an equally weighted mixture of ``config.members`` independent
    fits of ``config.member_inference`` (see :func:`fit_ensemble`)."""

    name = "ensemble"
    summary = "a deep ensemble (the paper's DE-N), an equally weighted mixture of fits"
    family = "mixture"

    def shipped_names(self, overrides: Mapping[str, Any]) -> tuple[str, ...]:
        # seeds of the member method's configuration
        return (overrides.get("member_inference", FitConfig.member_inference),)

    def fit(self, sample: Sample, config: FitConfig, *, prior=None, progress: bool = True,
            out: Path | None = None, resume=None) -> az.InferenceData:
        """The ensemble of ``config`` without a member store (the command line keeps one
        in ``OUT.members/`` and calls :func:`fit_ensemble` itself)."""
        if prior is not None:
            raise InputError("ensemble members take their priors from their configs, "
                             "not a Python prior")
        if resume is not None:
            raise InputError("an ensemble resumes by rerunning its command (the finished "
                             "members wait in OUT.members/)")
        return fit_ensemble(sample, config, progress=progress)


def member_configs(config: FitConfig, members: Sequence[FitConfig] | None = None
                   ) -> list[FitConfig]:
    """The configurations of the members of the ensemble ``config``.

    Without ``members``: ``config.members`` copies of ``config`` with inference
    ``config.member_inference``. Member k gets seed ``config.seed + k`` in both cases, and
    its TV weight times ``config.member_tv_spread ** u_k`` (:func:`spread_exponents`).
    """
    if members is None:
        members = [config.replace(inference=config.member_inference, member_tv_spread=1.0)
                   ] * config.members
    if not members:
        raise InputError("an ensemble needs at least one member")
    for member in members:
        if not get_method(member.inference).member:
            raise InputError(f"ensemble members are {', '.join(method_names(member=True))} "
                             f"fits, not {member.inference}")
    spread = np.log(config.member_tv_spread) * spread_exponents(len(members))
    return [member.replace(seed=config.seed + k, tv_weight=member.tv_weight * float(np.exp(u)))
            for k, (member, u) in enumerate(zip(members, spread, strict=True))]


def spread_exponents(n: int) -> np.ndarray:
    """Exponents u_0..u_{n-1} in [-1, 1) of the members' TV-weight factors: the base-2
    van der Corput sequence shifted by 1/2, so that u_0 = 0 (the configuration's own weight),
    u_1 = -1, u_2 = 1/2, u_3 = -1/2, ..., and the first N members of any ensemble cover
    [-1, 1) evenly (a DE-N read off a larger ensemble samples the same hyperprior)."""
    points = np.zeros(n)
    for k in range(n):
        digits, base = k, 0.5
        while digits:
            points[k] += base * (digits & 1)
            digits, base = digits >> 1, base / 2
    return 2.0 * ((points + 0.5) % 1.0) - 1.0


def settings(config: FitConfig, members: Sequence[FitConfig] | None = None) -> dict:
    """What the ensemble's ``config_hash`` covers: its settings and every member's
    (:mod:`bayes_inr.core.provenance`)."""
    configs = member_configs(config, members)
    return dataclasses.asdict(config) | {
        "members": len(configs),
        "member_configs": [dataclasses.asdict(member) for member in configs]}


def members_dir(out) -> Path:
    """Where the CLI keeps the finished members of the ensemble file ``out``:
    ``OUT.members/`` beside it, until the ensemble file is written."""
    out = Path(out)
    return out.with_name(out.name + ".members")


def member_path(store: Path, k: int) -> Path:
    """Where an ensemble's member store keeps member ``k``."""
    return store / f"member{k}.nc"


def stored_member(path: Path, member: FitConfig, data: str) -> az.InferenceData | None:
    """The fit at ``path`` if it is a fit of ``member`` to data of hash ``data`` (its
    ``config_hash`` and ``data_hash``, :mod:`bayes_inr.core.provenance`), else None."""
    if not path.is_file():
        return None
    try:
        idata = posterior.load(path)
    except InputError:
        return None
    attrs = posterior.run_attrs(idata)
    same = (attrs.get("config_hash") == provenance.config_hash(member)
            and attrs.get("data_hash") == data)
    return idata if same else None


def fit_ensemble(sample: Sample, config: FitConfig, members: Sequence[FitConfig] | None = None,
                 progress: bool = True, store: Path | None = None,
                 rerun: str = "call again with the same store", log=print
                 ) -> az.InferenceData:
    """Fit the members of the ensemble ``config`` (see :func:`member_configs`) to ``sample``.

    ``config.workers`` members run at once, each with ``config.threads`` torch threads
    (0: the cores shared evenly); progress bars only when they run in this process.

    With ``store`` (a directory), every member is written there (atomically,
    ``member{k}.nc``) as soon as it finishes, and a member already there is reused when
    it is a fit of the same member configuration to the same data (its config and data
    hashes); others are fitted again. ``log`` receives one line saying how many members
    were reused. On KeyboardInterrupt one line to stderr says how many members are kept
    in ``store`` and ends with ``rerun`` (how to continue), and the interrupt is re-raised.
    The caller removes ``store`` once the ensemble is saved.
    """
    start = time.perf_counter()
    configs = member_configs(config, members)
    threads = threads_per_worker(config.workers, config.threads)
    configs = [member.replace(threads=threads, workers=1) for member in configs]
    fits: list = [None] * len(configs)
    try:
        if store is not None:
            _load_members(store, sample, configs, fits, log)
        todo = [k for k, idata in enumerate(fits) if idata is None]
        _fit_members(sample, configs, todo, fits, store, threads,
                     workers=max(1, min(config.workers, len(todo))), progress=progress)
    except KeyboardInterrupt:
        if store is not None:
            kept = sum(idata is not None for idata in fits)
            print(f"interrupted: {kept} of {len(configs)} members are saved in {store}; "
                  f"{rerun}", file=sys.stderr)
        raise
    return _assemble(sample, config, configs, fits, members, threads,
                     reused=len(configs) - len(todo), seconds=time.perf_counter() - start)


def _load_members(store: Path, sample: Sample, configs: list[FitConfig], fits: list,
                  log) -> None:
    """Put the reusable members of ``store`` into ``fits`` (see :func:`stored_member`)."""
    data = provenance.data_hash(sample.sinogram, sample.geometry.angles, sample.ground_truth)
    stale = 0
    for k, member in enumerate(configs):
        fits[k] = stored_member(member_path(store, k), member, data)
        stale += fits[k] is None and member_path(store, k).is_file()
    store.mkdir(exist_ok=True)
    reused = sum(idata is not None for idata in fits)
    log(f"ensemble: {reused} of {len(configs)} members already fitted in {store}"
        + (f" ({stale} stored of another configuration or data: refitted)" if stale else ""))


def method_label(members: int) -> str:
    """The ``method`` a run of ``members`` members records: ``DE-N``."""
    return f"DE-{members}"


def fit_member(sample: Sample, config: FitConfig, progress: bool = True) -> az.InferenceData:
    """One member's fit: its own method's (a module-level function, so that worker
    processes can receive it)."""
    return get_method(config.inference).fit(sample, config, progress=progress)


def _fit_members(sample: Sample, configs: list[FitConfig], todo: list[int], fits: list,
                 store: Path | None, threads: int, workers: int, progress: bool) -> None:
    """Fit the members ``todo`` into ``fits``, each saved to ``store`` as it finishes."""
    job = functools.partial(fit_member, sample, progress=progress and workers == 1)
    with contextlib.closing(run_tasks(job, [configs[k] for k in todo], workers=workers,
                                      threads=threads)) as results:
        for i, idata in results:
            fits[todo[i]] = idata
            if store is not None:
                posterior.save(idata, member_path(store, todo[i]))


def _assemble(sample: Sample, config: FitConfig, configs: list[FitConfig], fits: list,
              members: Sequence[FitConfig] | None, threads: int, reused: int,
              seconds: float) -> az.InferenceData:
    """The ensemble's InferenceData from its members' fits (member k as chain k)."""
    labels = [f"member{k}-{member.inference}" for k, member in enumerate(configs)]
    stored = [posterior.config(idata) for idata in fits]
    record = dataclasses.asdict(config) | {"members": len(configs), "threads_used": threads,
                                           "members_reused": reused,
                                           "member_configs": stored}
    idata = posterior.build(
        [posterior.image_draws(member) for member in fits], sinogram=sample.sinogram,
        angles=sample.geometry.angles, method=method_label(len(configs)), config=record,
        ground_truth=sample.ground_truth, air_level=sample.air_level, seed=config.seed,
        wall_time=seconds,
        device=config.device, chain_labels=labels, settings=settings(config, members))
    member_json = np.array([json.dumps(c, sort_keys=True) for c in stored], dtype=object)
    idata.posterior_predictive = idata.posterior_predictive.assign_coords(
        member_config=("chain", member_json))
    return idata


def member_scores(idata: az.InferenceData) -> list[dict]:
    """:func:`bayes_inr.evaluation.metrics.score` of every member (chain) alone, method = its
    label."""
    labels = idata.posterior_predictive["member"].values
    return [score(idata.isel(chain=[k])) | {"method": str(label)}
            for k, label in enumerate(labels)]
