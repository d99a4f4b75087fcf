"""Reproduce the paper's Table 1, with TV, two MCD posteriors, object-first calibration
and a real-CT table beside it.

    python analysis/table1.py --profile cpu --out analysis/results/table1_cpu
    python analysis/table1.py --profile cpu --splits val --out analysis/results/table1_cpu
    python analysis/table1.py --profile cpu --datasets phantoms --views 20 --splits val
    python analysis/table1.py --profile paper --out results/table1_paper   # GPU / cluster
    python analysis/table1.py --profile reference --out analysis/results/table1_reference
    python analysis/table1.py --profile paper5 --out analysis/results/table1_paper5
    python analysis/table1.py --datasets phantoms --views 20 --calibration CAL.json

For each dataset of the profile (the phantoms, and for ``cpu`` the real CT slices of
``data/real_128.nc``), its view counts, the chosen splits and every image, the script
runs the classical baselines (FBP, CGLS, EM, SART, SIRT and TV), Bayesian TV (NUTS under
TV's own objective: TV's validated weight and iterations for the dataset and view count, the
temperature sigma of ``models/btv_V.toml``, or of ``models/btv_real_V.toml`` on real CT), BBB,
MCD with per-pixel
masks (the authors' ``F.dropout`` noise injection; the member of the deep ensemble),
MCD with one mask per draw (the Gal and Ghahramani posterior; ``models/mcd_image_V.toml``,
the per-pixel configuration at a dropout rate swept for one mask), a deep ensemble of
``--members`` per-pixel MCD learners (DE-N for N in 2, 5, 10 up to that; members are
``models/mcd_V.toml`` with seeds seed + k; where a dataset names ranked configurations for
a view count, also the top N distinct configurations of a validation sweep, one seed each:
``models/de_phantoms_20/`` and ``models/de_real_20/`` at 20 views in profile ``cpu``,
``models/de_reference/`` in profile ``reference``; on real CT at 20 views also DE-10 with
its members' TV weights spread, ``DE-10, TV spread 3``) and, where
the profile says so, HMC (test split; profile ``reference``: ``models/hmc_reference.toml`` on
the 64 x 64, 40 dB phantoms of ``data/reference_64.nc``). Profile ``paper5`` answers the
5-view question on the paper's protocol (256 x 256, ``data/benchmark_256.nc``).
Configurations come from ``models/`` (the
validated view count nearest to V; on real CT a method's ``models/METHOD_real_V.toml``
where it has one, as the fit command picks them) and were chosen on the validation split
only; the test split is scored once, here.

Every run is saved under ``OUT/runs/`` with its provenance (:mod:`bayes_inr.core.provenance`),
and every ensemble member under ``OUT/runs/members_DATA_Vv_ID/`` (a DE-10 run reuses the
members of an earlier DE-5 run of the image, so the table can grow over sittings),
and every row of ``OUT/table1.csv`` carries the hashes of its run. On a rerun a row is
kept, or a run file read back, only if its configuration hash and data hash equal the ones
the run would have now; otherwise the run is made again. An interrupted table resumes, also
from the committed CSV alone (the run files are not committed); an interrupted HMC run
resumes from the draws it had saved (its run file is its checkpoint).

With ``--calibration FILE`` (repeatable; a file of :mod:`bayes_inr.evaluation.recalibration`,
fitted on validation runs) every row the file applies to (the same configuration, view count
and ensemble member count; not one of its calibration images) is followed by the row of its
recalibrated predictive, ``LABEL, recalibrated (FORM)``, scored once like the raw one.

Writes, after every image, ``OUT/table1.csv`` (one row per dataset, split, views,
method and image, every score and the run's commit) and ``OUT/table1.md`` (means over
the images done, the paper's numbers beside ours, footnotes).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bayes_inr import posterior
from bayes_inr.core.atomic import atomic_path
from bayes_inr.core.errors import InputError
from bayes_inr.core.outputs import check_output_dir
from bayes_inr.core.provenance import config_hash, data_hash
from bayes_inr.core.workers import raise_interrupt
from bayes_inr.data.benchmark import benchmark_ids, benchmark_sample, load_benchmark
from bayes_inr.data.sample import Sample
from bayes_inr.evaluation.convergence import pixel_convergence
from bayes_inr.evaluation.metrics import paper_delta_ece, score
from bayes_inr.evaluation.recalibration import Calibration, apply, load_calibration
from bayes_inr.inference.baselines.classical import reconstruct
from bayes_inr.inference.baselines.methods import ITERATIVE, check_iterations
from bayes_inr.inference.baselines.methods import METHODS as BASELINES
from bayes_inr.inference.baselines.tv import tv_settings
from bayes_inr.inference.config import FitConfig, load_config
from bayes_inr.inference.ensemble import fit_ensemble, member_path
from bayes_inr.inference.ensemble import settings as ensemble_settings
from bayes_inr.inference.fit import fit
from bayes_inr.inference.method import family_of
from bayes_inr.model.catalog import validated

PAPER = Path(__file__).with_name("reference") / "table1_paper.csv"
MODELS = Path(__file__).resolve().parents[1] / "models"
ENSEMBLES = (2, 5, 10)


@dataclass(frozen=True)
class DataSet:
    """One benchmark file of a profile and what to run on it."""

    path: str
    name: str
    key: str
    """Prefix of its run files."""
    views: tuple[int, ...]
    protocol: str
    """The data protocol the profile requires: ``fine`` (no inverse crime) or ``same``."""
    data: str | None = None
    """The kind of data whose own shipped configurations (``models/METHOD_DATA_V.toml``,
    chosen on validation data of that kind) it takes where a method has them
    (:func:`bayes_inr.model.catalog.validated`): ``"real"`` for real CT."""
    hmc: bool = False
    ranked: tuple[tuple[int, str], ...] = ()
    """(views, directory under ``models/``) pairs: a validation sweep's ranked configurations
    for that view count (``python -m bayes_inr.sweep --rank DIR --write-configs``:
    ``NAME_top1.toml``, ...). Where set, the per-pixel MCD row and DE-N of seeds take the
    rank-1 configuration, and rows ``DE-N, top N`` ensemble ranks 1 to N, one member each."""
    tv_spread: tuple[tuple[int, float], ...] = ()
    """(views, spread) pairs: where set, a row ``DE-N, TV spread S`` for the largest N, the
    ensemble of seeds with ``member_tv_spread`` S (member k's TV weight times S ** u_k,
    :func:`bayes_inr.inference.ensemble.spread_exponents`), S chosen on validation."""


@dataclass(frozen=True)
class Profile:
    """Data and budgets of one Table-1 run."""

    datasets: tuple[DataSet, ...]
    splits: tuple[str, ...] = ("val", "test")
    members: int = max(ENSEMBLES)
    overrides: dict = field(default_factory=dict)
    hmc_overrides: dict = field(default_factory=dict)
    hmc_config: str | None = None
    """The configuration of the HMC row; None: the shipped ``models/hmc_V.toml``."""
    workers: int = 2
    tv_per_dataset: bool = False
    """Whether an INR configuration that takes TV's own weight (``tv_units`` objective: its
    TV start and TV factor) takes TV's weight validated on the profile's dataset and view
    count (``models/baselines/tv.toml``) instead of the one written in it, which was
    validated on the data the configuration was chosen on."""


PROFILES = {
    # 128 x 128 on a 2-core CPU: the models/ budgets, the test split, ten ensemble members
    # (DE-2, DE-5, DE-10), two fitted side by side; phantoms at 5 and 20 views (noiseless,
    # sinograms from a 2x finer grid) and the real CT test slices at 20 and 60 views (40 dB).
    # HMC waits for a converging recipe (the old one-chain transient is not a reference).
    # At 20 views both also get DE-2 and DE-5 of the top 5 distinct configurations of the
    # Fourier-scale sweeps of their MCD (models/de_phantoms_20/ and de_real_20/; rank 1 is
    # mcd_20 and mcd_real_20).
    "cpu": Profile((DataSet("data/benchmark_128.nc", "phantoms", "phantom", (20, 5), "fine",
                            ranked=((20, "de_phantoms_20"),)),
                    DataSet("data/real_128.nc", "real CT", "real", (20, 60), "fine",
                            data="real", ranked=((20, "de_real_20"),),
                            tv_spread=((20, 3.0),))),
                   splits=("test",), members=10),
    # the paper's protocol: 256 x 256, sinograms made with the reconstruction operator,
    # no noise (python -m bayes_inr.data --size 256 --protocol same); longer training
    "paper": Profile((DataSet("data/benchmark_256.nc", "phantoms", "phantom", (20, 5), "same",
                             hmc=True),),
                     overrides={"steps": 10000, "device": "cuda"},
                     hmc_overrides={"width": 256, "depth": 3, "activation": "relu",
                                    "omega0": 10.0, "draws": 1000, "warmup": 1000},
                     workers=1),
    # the reference posterior's data (64 x 64, 20 views, 40 dB; data/reference_64.nc) with
    # an HMC row from the recipe that converges there (models/hmc_reference.toml), beside
    # the baselines, Bayesian TV, BBB and one-mask MCD of the 128 x 128 configurations, and
    # per-pixel MCD ensembles of a sweep on its validation phantoms: DE-2 and DE-5 of the
    # best configuration's seeds and of the top 2 and top 5 configurations
    "reference": Profile((DataSet("data/reference_64.nc", "phantoms 64", "phantom64", (20,),
                                  "fine", hmc=True, ranked=((20, "de_reference"),)),),
                         splits=("test",), members=5, hmc_config="hmc_reference"),
    # the paper's 5-view protocol on this CPU (issue 14's 5-view question): 256 x 256
    # phantoms rendered at 512 and block-averaged, sinograms made with the reconstruction
    # operator, no noise (python -m bayes_inr.data --size 256 --views 5 20 --protocol same);
    # TV validated there, the INR configurations of 128 x 128 at TV's weight for these data
    "paper5": Profile((DataSet("data/benchmark_256.nc", "phantoms 256", "phantom256", (5,),
                               "same"),),
                      splits=("test",), members=1, tv_per_dataset=True),
}


def model_config(kind: str, views: int, overrides: dict, data: str | None = None
                 ) -> FitConfig:
    """The shipped ``KIND`` configuration the fit command picks for ``views`` views of
    ``data`` (:func:`bayes_inr.model.catalog.validated`)."""
    return load_config(validated(kind, views, data), **overrides)


def dataset_tv(config: FitConfig, dataset: DataSet, views: int, profile: Profile
               ) -> FitConfig:
    """``config`` at TV's weight validated on ``dataset`` at ``views`` where ``profile``
    asks for it (:attr:`Profile.tv_per_dataset`) and ``config`` takes TV's own weight."""
    if profile.tv_per_dataset and config.tv_units == "objective" and config.tv_weight:
        return config.replace(tv_weight=tv_settings(dataset.path, views).weight)
    return config


def member_configs(views: int, members: int, overrides: dict, data: str | None = None,
                   base: FitConfig | None = None) -> list[FitConfig]:
    """``members`` copies of ``base`` or else of the MCD config :func:`model_config` picks
    (each member gets its own seed)."""
    return [base or model_config("mcd", views, overrides, data)] * members


def image_configs(profile: Profile, dataset: DataSet, views: int, members: int,
                  top: list[FitConfig] | None = None
                  ) -> tuple[list[FitConfig], list[FitConfig] | None]:
    """The ensemble members of one dataset and view count (:func:`member_configs`, seeds of
    ``top[0]`` when the profile has ranked configurations ``top``) and those ranked
    configurations, each at the TV weight the profile gives them (:func:`dataset_tv`)."""
    seeds = member_configs(views, members, profile.overrides, dataset.data, top and top[0])
    return ([dataset_tv(config, dataset, views, profile) for config in seeds],
            top and [dataset_tv(config, dataset, views, profile) for config in top])


def ranked_configs(dataset: DataSet, views: int, members: int, overrides: dict
                   ) -> list[FitConfig] | None:
    """The configs of ranks 1 to ``members`` (or as many as there are, at least
    ``min(ENSEMBLES)``) in the directory :attr:`DataSet.ranked` names for ``views``
    (``NAME_topK.toml``, as ``python -m bayes_inr.sweep --rank --write-configs`` writes
    them); None where it names none."""
    directory = dict(dataset.ranked).get(views)
    if directory is None:
        return None
    paths = sorted((MODELS / directory).glob("*_top*.toml"),
                   key=lambda p: int(p.stem.rpartition("_top")[2]))
    if len(paths) < min(ENSEMBLES):
        raise InputError(f"DE-N of the top configurations needs at least {min(ENSEMBLES)} "
                         f"ranked configs, models/{directory} has {len(paths)}")
    return [load_config(path, **overrides) for path in paths[:members]]


def baseline_settings(method: str, dataset: str, views: int) -> dict:
    """Keyword arguments of :func:`bayes_inr.inference.baselines.classical.reconstruct` for
    ``method``: the
    validated iteration count, and for TV the weight chosen for ``dataset`` at ``views``."""
    if method == "tv":
        chosen = tv_settings(dataset, views)
        return {"iterations": chosen.iterations, "weight": chosen.weight}
    return {"iterations": check_iterations(method, None)} if method in ITERATIVE else {}


def sample_hash(sample: Sample) -> str:
    """The data hash a run of ``sample`` records (see :func:`bayes_inr.posterior.build`)."""
    return data_hash(sample.sinogram, sample.geometry.angles, sample.ground_truth)


def complete(idata, settings) -> bool:
    """Whether ``idata``, a run of ``settings``, holds every chain and draw they ask for (a
    sampler's run file is also its checkpoint: an interrupted run holds fewer)."""
    if not isinstance(settings, FitConfig) or family_of(settings.inference) != "mcmc":
        return True
    pp = posterior.trim_partial(idata).posterior_predictive
    return pp.sizes["chain"] >= settings.chains and pp.sizes["draw"] >= settings.draws


def cached(path: Path, make: Callable, settings, sample: Sample, resumable: bool = False):
    """The run at ``path`` if it was made from ``settings`` and ``sample``'s data (equal
    provenance hashes), else ``make()``, saved there. Returns (idata, reused).

    With ``resumable``, ``make(out=path, resume=run)`` writes its checkpoints to ``path``
    and continues ``run``, what an interrupted run of ``settings`` left there (or None)."""
    want = {"config_hash": config_hash(settings), "data_hash": sample_hash(sample)}
    resume = None
    if path.exists():
        idata = posterior.load(path, trim=False)
        attrs = posterior.run_attrs(idata)
        if all(attrs.get(k) == v for k, v in want.items()):
            if complete(idata, settings):  # a run file may predate the air level
                return posterior.with_air_level(posterior.trim_partial(idata),
                                                sample.air_level), True
            resume = idata if resumable else None
    idata = make(out=path, resume=resume) if resumable else make()
    attrs = posterior.run_attrs(idata)
    made = {k: attrs.get(k) for k in want}
    if made != want:  # the run hashed other settings than the ones given here
        raise RuntimeError(f"{path.name}: the run records {made}, expected {want}")
    posterior.save(idata, path)
    return idata, False


def _row(idata, method: str) -> dict:
    scores = score(idata)
    chains = idata.posterior_predictive.sizes["chain"]
    if "diverging" in getattr(idata, "sample_stats", {}) and chains >= 2:  # MCMC chains
        truth = idata.constant_data["ground_truth"].values
        conv = pixel_convergence(idata, truth > scores["air_level"], RHAT_LIMIT)
        scores |= {"rhat_share_object": conv["rhat_share"], "ess_bulk_object": conv["ess_median"]}
    if scores["n_draws"] >= 2:
        scores["paper_delta_ece"] = paper_delta_ece(
            posterior.image_draws(idata), idata.constant_data["ground_truth"].values,
            weights=posterior.draw_weights(idata))
    attrs = posterior.run_attrs(idata)
    return scores | {"method": method, "git_commit": str(attrs.get("git_commit", ""))[:10],
                     "git_dirty": attrs.get("git_dirty", ""),
                     "config_hash": attrs.get("config_hash", ""),
                     "data_hash": attrs.get("data_hash", ""),
                     "seconds": float(attrs.get("wall_time", np.nan))}


MCD_LABELS = {"pixel": "MCD, per-pixel masks", "image": "MCD, one mask per draw"}
"""Table-1 rows of the two MCD mask scopes."""


@dataclass(frozen=True)
class Job:
    """One run of an image and the table rows read off it."""

    stem: str
    settings: object
    make: Callable
    rows: tuple[tuple[str, Callable], ...]
    """(method label, run -> the part of the run the row scores)."""
    resumable: bool = False
    """Whether ``make`` takes ``out`` and ``resume`` (see :func:`cached`)."""


def _whole(idata):
    return idata


def ensemble_job(sample: Sample, stem: str, members: list[FitConfig], labels: Callable,
                 workers: int, store: Path | None, first: Path | None = None,
                 sizes: tuple[int, ...] = ENSEMBLES, **ensemble) -> Job:
    """The deep ensemble of ``members`` (``ensemble``: more settings of the ensemble's
    config, such as ``member_tv_spread``), whose rows ``labels(n)`` are its first n members
    for n in ``sizes``; it keeps its members in ``store`` (a directory, see
    :func:`bayes_inr.inference.ensemble.fit_ensemble`). ``first``, a member file of
    another ensemble that may be this one's member 0, is linked into ``store`` when that
    has none (the fit reuses it only if its hashes are member 0's)."""
    base = members[0].replace(inference="ensemble", workers=workers, **ensemble)

    def make():
        if store is not None and first is not None and first.is_file():
            store.mkdir(exist_ok=True)
            if not member_path(store, 0).exists():
                os.link(first, member_path(store, 0))
        return fit_ensemble(sample, base, members, progress=False, store=store)

    return Job(f"{stem}{len(members)}", ensemble_settings(base, members), make,
               tuple((labels(n), lambda e, n=n: e.isel(chain=slice(0, n)))
                     for n in sizes if n <= len(members)))


def jobs(sample: Sample, dataset: DataSet, views: int, profile: Profile,
         members: list[FitConfig], split: str, store: Path | None = None,
         ranked: list[FitConfig] | None = None) -> list[Job]:
    """The runs of every method on one image, in table order. An ensemble keeps its
    members in a directory (``store``, and ``store`` + ``_top`` for the one of ``ranked``,
    the top configurations), so a larger ensemble of the same image reuses the members
    fitted for a smaller one."""
    out = []
    for method in BASELINES:
        settings = baseline_settings(method, dataset.path, views)

        def make(m=method, s=settings):
            start = time.perf_counter()
            image = reconstruct(m, sample.sinogram, sample.geometry, **s)
            return posterior.from_reconstruction(
                image, sinogram=sample.sinogram, angles=sample.geometry.angles,
                method=m.upper(), ground_truth=sample.ground_truth, air_level=sample.air_level,
                config={"method": m, **s}, wall_time=time.perf_counter() - start)

        out.append(Job(method, {"method": method, **settings}, make,
                       ((method.upper(), _whole),)))
    tv = tv_settings(dataset.path, views)
    btv = model_config("btv", views, profile.overrides, dataset.data).replace(
        tv_weight=tv.weight, steps=tv.iterations)
    out.append(Job("btv", btv, lambda: fit(sample, btv, False), (("Bayesian TV", _whole),)))
    bbb = dataset_tv(model_config("bbb", views, profile.overrides, dataset.data), dataset,
                     views, profile)
    out.append(Job("bbb", bbb, lambda: fit(sample, bbb, False), (("BBB", _whole),)))
    image_mcd = dataset_tv(model_config("mcd_image", views, profile.overrides, dataset.data),
                           dataset, views, profile)
    out.append(Job("mcd_image", image_mcd, lambda: fit(sample, image_mcd, False),
                   ((MCD_LABELS["image"], _whole),)))
    seeds = ensemble_job(sample, "de", members, lambda n: f"DE-{n}", profile.workers, store)
    member = (MCD_LABELS[members[0].dropout_scope], lambda e: e.isel(chain=[0]))
    out.append(dataclasses.replace(seeds, rows=(member, *seeds.rows)))
    spread = dict(dataset.tv_spread).get(views)
    if spread:  # member 0 keeps the TV weight: the seeds' member 0
        out.append(ensemble_job(
            sample, "despread", members, lambda n: f"DE-{n}, TV spread {spread:g}",
            profile.workers, store and store.with_name(f"{store.name}_spread"),
            store and member_path(store, 0), (len(members),), member_tv_spread=spread))
    if ranked:  # rank 1 with the first seed is member 0 of the seeds' ensemble
        out.append(ensemble_job(sample, "detop", ranked, lambda n: f"DE-{n}, top {n}",
                                profile.workers, store and store.with_name(f"{store.name}_top"),
                                store and member_path(store, 0)))
    if dataset.hmc and split == "test":
        overrides = {**profile.overrides, **profile.hmc_overrides}
        hmc = (load_config(profile.hmc_config, **overrides) if profile.hmc_config
               else model_config("hmc", views, overrides))
        out.append(Job("hmc", hmc, lambda out=None, resume=None: fit(
            sample, hmc, False, out=out, resume=resume), (("HMC", _whole),), resumable=True))
    return out


@dataclass(frozen=True)
class Recalibration:
    """A calibration file given to ``--calibration``: every row it applies to is followed
    by a row of its recalibrated predictive, ``LABEL, recalibrated (FORM)``."""

    path: Path
    calibration: Calibration
    sha256: str

    @classmethod
    def load(cls, path: Path) -> Recalibration:
        calibration, sha = load_calibration(path)
        return cls(Path(path), calibration, sha)

    def label(self, row: str) -> str:
        return f"{row}, recalibrated ({self.calibration.predictive})"

    def applies(self, job_hash: str, views: int, label: str, data: str) -> bool:
        """Whether it calibrates row ``label`` of a job of config hash ``job_hash`` on an
        image of ``views`` views and data hash ``data``: same configuration, view count and
        member count, and not one of its own calibration images (decided without the run,
        so that rows kept from the CSV need no run file)."""
        cal = self.calibration
        return (cal.config_hash == job_hash and cal.views == views
                and cal.members in (None, row_members(label))
                and data not in {r.get("data_hash") for r in cal.runs})


def row_members(label: str) -> int:
    """The ensemble members behind a Table-1 row: N for ``DE-N`` and ``DE-N, top N``, else 1
    (a single run, or one member of an ensemble)."""
    match = re.fullmatch(r"DE-(\d+)(, top \d+|, TV spread [\d.]+)?", label)
    return int(match.group(1)) if match else 1


def run_path(runs: Path, stem: str, dataset: DataSet, views: int, image_id: int) -> Path:
    """Where the run of job ``stem`` on one image lives: ``RUNS/STEM_DATA_Vv_ID.nc``; the
    stem ``members`` without the suffix is the directory of its ensemble members."""
    return runs / f"{stem}_{dataset.key}_{views}v_{image_id}.nc"


def scored_air_level(row: dict) -> float:
    """The air level a row of an earlier table was scored at: 0 for a row scored before the
    level was recorded (None, or NaN as :func:`read_rows` reads an empty or "nan" cell)."""
    level = row.get("air_level")
    return 0.0 if level is None or np.isnan(level) else float(level)


def run_image(sample: Sample, dataset: DataSet, views: int, image_id: int, profile: Profile,
              runs: Path, members: list[FitConfig], split: str = "test",
              done: dict | None = None, ranked: list[FitConfig] | None = None,
              recalibrations: tuple[Recalibration, ...] = ()) -> list[dict]:
    """Score rows of every method on one image (``members`` and ``ranked``: see
    :func:`jobs`), each followed by a row per calibration of ``recalibrations`` that
    applies to it (:meth:`Recalibration.applies`).

    A row of ``done`` (rows of an earlier table, keyed by dataset, split, views, image id
    and method) is kept when its hashes are the ones the run would have now, its air level
    the sample's (rows without one: 0) and, for a recalibrated row, its calibration file's
    SHA-256 too; otherwise the run is read from ``runs`` (when its hashes match there) or
    made, and scored.
    """
    done = done or {}
    key = (dataset.name, split, views, image_id)
    want = {"data_hash": sample_hash(sample)}
    rows = []
    store = run_path(runs, "members", dataset, views, image_id).with_suffix("")
    for job in jobs(sample, dataset, views, profile, members, split, store, ranked):
        want["config_hash"] = config_hash(job.settings)
        wanted = [(label, select, None) for label, select in job.rows] + [
            (recal.label(label), select, recal) for label, select in job.rows
            for recal in recalibrations
            if recal.applies(want["config_hash"], views, label, want["data_hash"])]
        earlier = [done.get((*key, label)) for label, _, _ in wanted]
        if all(row is not None and all(row.get(k) == v for k, v in want.items())
               and (row.get("calibration_sha256") or None) == (recal and recal.sha256)
               and scored_air_level(row) == sample.air_level
               for row, (_, _, recal) in zip(earlier, wanted, strict=True)):
            rows += [dict(row) for row in earlier]
            continue
        idata, _ = cached(run_path(runs, job.stem, dataset, views, image_id), job.make,
                          job.settings, sample, job.resumable)
        for label, select, recal in wanted:
            if recal is None:
                rows.append(_row(select(idata), label))
            else:  # the job's config hash, so that the row is kept like the raw ones
                rows.append(_row(apply(select(idata), recal.path), label)
                            | {"config_hash": want["config_hash"],
                               "calibration_sha256": recal.sha256})
    for row in rows:
        row |= {"dataset": dataset.name, "split": split, "views": views, "image_id": image_id}
    return rows


def read_rows(out: Path) -> dict:
    """The rows of an earlier ``OUT/table1.csv`` keyed by (dataset, split, views, image id,
    method), numbers parsed; {} when there is none."""
    path = out / "table1.csv"
    if not path.is_file():
        return {}
    text = {"dataset", "split", "method", "git_commit", "config_hash", "data_hash",
            "calibration_sha256"}
    rows = {}
    with path.open(newline="") as handle:
        for raw in csv.DictReader(handle):
            row = {k: v if k in text else (float(v) if v not in ("", None) else np.nan)
                   for k, v in raw.items()}
            row["views"], row["image_id"] = int(row["views"]), int(row["image_id"])
            row["n_draws"] = int(row["n_draws"])
            rows[(row["dataset"], row["split"], row["views"], row["image_id"],
                  row["method"])] = row
    return rows


# ----------------------------------------------------------------------------- tables


def paper_numbers() -> dict:
    """(views, method) -> the paper's Table-1 row."""
    with PAPER.open() as handle:
        lines = [line for line in handle if not line.startswith("#")]
    return {(int(r["views"]), r["method"].rstrip("*")): r for r in csv.DictReader(lines)}


PAPER_METHOD = {"MCD, per-pixel masks": "MCD"}
"""Our row whose method the paper's row is (the authors' MCD used per-pixel masks)."""

RHAT_LIMIT = 1.05
"""MCMC rows: the share of object pixels with split R-hat at most this (issue 15's target)
and the median bulk ESS over the object."""
COLUMNS = (  # (key, header, digits)
    ("psnr", "PSNR", 2), ("ssim", "SSIM", 3),
    ("crps_object", "CRPS obj", 4), ("nll_object", "NLL obj", 2),
    ("ece_object", "ECE obj", 3), ("pit_error_object", "PIT err obj", 3),
    ("coverage_90_object", "cov90 obj", 2),
    ("crps_all", "CRPS all", 4), ("nll_all", "NLL all", 2), ("ece_all", "ECE all", 3),
    ("pit_error_all", "PIT err all", 3), ("coverage_90_all", "cov90 all", 2),
    ("paper_delta_ece", "paper-δ ECE", 3),
    ("rhat_share_object", f"R-hat<={RHAT_LIMIT} obj", 2), ("ess_bulk_object", "ESS obj", 0),
)
MCMC_KEYS = ("rhat_share_object", "ess_bulk_object")
"""Columns of MCMC runs of at least 2 chains, shown only in tables that have such a row."""
PAPER_COLUMNS = (("psnr", "paper PSNR"), ("nll", "paper NLL"), ("ece", "paper ECE"))

FOOTNOTES = """
Notes.
- Ours (profile `cpu`): 128 x 128 images; phantoms noiseless with sinograms projected on a
  2x finer grid (no inverse crime); real CT slices at 40 dB SNR. The paper: 256 x 256,
  sinograms made with the reconstruction operator (its protocol; profile `paper`), its own
  phantoms. The paper's columns are its test (or validation) means, not a rerun.
- `obj` columns are on the object (pixels whose true value is above the air level: 0 for
  the phantoms, -950 HU for real CT, whose clipped air noise reads a little above 0); `all`
  columns on every pixel. Calibration comes from the randomised rank PIT (truth ranked
  among its draws plus itself, ties spread), so coverage is not inflated or deflated by
  the draw count; CRPS is that of the draws' empirical distribution (a one-draw method's
  is its mean absolute error); ensembles weigh every member 1/K. Definitions: docs/metrics.md.
- `paper-δ ECE` is the authors' score: every interval widened by the delta (0 to 0.1) that
  minimises the ECE *against the ground truth being scored*, with the paper's interval rule
  (interpolated quantiles). It is not a calibration score; it is here only as the
  like-for-like neighbour of the paper's ECE column.
- `R-hat<=1.05 obj` and `ESS obj` (MCMC runs of at least 2 chains): the share of object
  pixels whose split R-hat is at most 1.05, and the median bulk ESS over the object.
- Profile `reference`: 64 x 64 phantoms at 20 views with 40 dB noise
  (`data/reference_64.nc`); its HMC row is `models/hmc_reference.toml`. The per-pixel MCD
  row and DE-N (seeds) take the best configuration of a sweep on its validation phantoms
  (`models/sweeps/mcd_reference.toml`, ranked by object CRPS: `models/de_reference/`);
  `DE-N, top N` ensembles that sweep's N best distinct configurations, one seed each
  (seeds seed + k), as the paper's ensembles did. The other methods run their 128 x 128
  configurations.
- Profile `paper5`: the paper's protocol at 5 views on a CPU (256 x 256 phantoms rendered
  at 512 and block-averaged, sinograms made with the reconstruction operator, no noise;
  `data/benchmark_256.nc`). TV's weight and iterations are validated on these data; the
  INRs run their 128 x 128 configurations at that TV weight (their TV start and factor).
- MCD, per-pixel masks: the authors' `F.dropout` on a batch of coordinates (noise injection around
  one estimate, not a posterior); the paper's MCD row sits beside it. MCD, one mask per draw:
  the Gal and Ghahramani posterior (one function per draw), the per-pixel row's configuration
  with `dropout_scope = "image"` at a dropout rate swept on validation for one mask
  (models/mcd_image_20.toml p 0.005, mcd_image_5 p 0.2, mcd_image_real_20 p 0.02,
  mcd_image_real_60 p 0.005; sweeps mcd_image_20, mcd_image_5, mcd_image_real_20, _60). DE-N:
  the first N per-pixel MCD members (one configuration, seeds seed + k). `DE-N, top N`: the N
  best distinct configurations of a validation sweep, one seed each (seeds seed + k), as the
  paper's ensembles were built;
  phantoms at 20 views (profile `cpu`): the pooled Fourier-scale sweeps of mcd_20
  (sweeps mcd_tvstart_omega_20 and mcd_tvstart_omega_low_20, ranked by object CRPS:
  `models/de_phantoms_20/`, omega0 1, 1.5, 2, 4 and 2 at twice TV's weight); real CT at 20
  views: sweep mcd_real_tvstart_omega_20 (`models/de_real_20/`, omega0 2, 2, 1, 1 and 4 at
  two learning rates). Rank 1 is mcd_20 or mcd_real_20, so its member is member 1 of DE-N.
- `DE-10, TV spread S` (real CT at 20 views): DE-10 of seeds with member k's TV weight (its
  TV start and TV factor) TV's times S ** u_k, u_k quasi-random on [-1, 1) and u_0 = 0, a
  log-uniform hyperprior on the weight over [w / S, w S); S = 3 chosen against S = 1 (DE-10)
  on the validation slices by object CRPS (0.0125 against 0.0128).
- Bayesian TV: NUTS on the pixel grid under exp(-(||Ax - p||^2 / 2 + w TV(x)) / sigma^2)
  (isotropic TV, box [0, 1] through a sigmoid link), w TV's validated weight for the
  dataset and view count, so that its mode is the TV row's image; sigma chosen on validation
  (phantoms: analysis/results/sweeps/btv_20; real CT: sweeps/btv_real_20, at 20 views,
  taken at 60 too). One chain from the TV image: its split R-hat is within one chain, not a
  convergence check.
- HMC*: the paper ran HMC on one image outside both splits, so its HMC numbers are not
  means over the test phantoms. Our CPU profile has no HMC row until a converging
  recipe exists (the previous one-chain run was an unconverged transient, R-hat up to 2.9).
- The MCD rows and DE members start at the TV image (init tv: TV at its own validated
  weight for the dataset and view count, the network fitted to it, then 500 MCD steps),
  chosen on validation: phantoms models/mcd_20.toml and mcd_5.toml (sweeps mcd_tvstart_p_20
  and mcd_tvstart_omega_low_20, mcd_tvstart_5), real CT mcd_real_20.toml and
  mcd_real_60.toml (sweeps mcd_real_tvstart_20, mcd_real_tvstart_60). BBB starts at the
  TV image too, with the guide's initial scale chosen on validation: phantoms bbb_20.toml
  and bbb_5.toml (sweeps bbb_tvstart_20, bbb_tvstart_5), real CT bbb_real_20.toml and
  bbb_real_60.toml (bbb_real_tvstart_20, _60).
"""


def _mean(rows: list[dict], key: str) -> float:
    values = [r.get(key, np.nan) for r in rows]
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else np.nan


def markdown(rows: list[dict], title: str, wall: float | None = None) -> str:
    """Means over images per (dataset, split, views, method), the paper's numbers beside
    the phantom rows, and the footnotes."""
    paper = paper_numbers()
    lines = [f"# {title}", ""]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        for split in ("test", "val"):
            chosen = [r for r in rows if (r["dataset"], r["split"]) == (dataset, split)]
            if not chosen:
                continue
            ids = sorted({r["image_id"] for r in chosen})
            columns = [c for c in COLUMNS
                       if c[0] not in MCMC_KEYS or np.isfinite(_mean(chosen, c[0]))]
            head = ["views", "method", *(h for _, h, _ in columns)]
            if dataset == "phantoms":
                head += [f"{h} ({split})" for _, h in PAPER_COLUMNS]
            lines += [f"## {dataset}, {split} split (images {', '.join(map(str, ids))}; "
                      "means)", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            for views in sorted({r["views"] for r in chosen}):
                methods = list(dict.fromkeys(r["method"] for r in chosen if r["views"] == views))
                for method in methods:
                    group = [r for r in chosen if (r["views"], r["method"]) == (views, method)]
                    cells = [str(views), method]
                    for key, _, digits in columns:
                        mean = _mean(group, key)
                        cells.append("" if np.isnan(mean) else f"{mean:.{digits}f}")
                    if dataset == "phantoms":
                        ref = paper.get((views, PAPER_METHOD.get(method, method)), {})
                        cells += [ref.get(f"{split}_{k}", "") for k, _ in PAPER_COLUMNS]
                    lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
    commits = sorted({(r["git_commit"], r["git_dirty"]) for r in rows})
    runs = run_seconds(rows)
    lines.append("Runs from commit(s) " + ", ".join(
        f"{c}{' (dirty tree)' if d in (1, '1') else ''}" for c, d in commits)
        + f". The {len(runs)} runs behind these rows took {sum(runs.values()) / 60:.1f} min "
        "(the sum of their recorded times)"
        + (f"; the last sitting took {wall / 60:.1f} min of wall time." if wall is not None
           else "."))
    return "\n".join(lines) + "\n" + FOOTNOTES


def run_seconds(rows: list[dict]) -> dict[tuple[str, str], float]:
    """(config hash, data hash) -> recorded seconds of each run behind ``rows``: rows read
    off one run (an ensemble's DE-N and member rows) count it once."""
    return {(r["config_hash"], r["data_hash"]): float(r["seconds"]) for r in rows
            if np.isfinite(float(r["seconds"]))}


CSV_KEYS = ["dataset", "split", "views", "image_id", "method", *(k for k, _, _ in COLUMNS),
            "below_90_object", "above_90_object", "coverage_50_object", "tied_all",
            "object_share", "air_level", "n_draws", "seconds", "git_commit", "git_dirty",
            "config_hash", "data_hash", "calibration_sha256"]


def write_tables(rows: list[dict], out: Path, title: str, wall: float | None = None) -> None:
    """``table1.csv`` (every row) and ``table1.md`` (means, paper alongside), atomically."""
    with atomic_path(out / "table1.csv") as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, CSV_KEYS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    with atomic_path(out / "table1.md") as tmp:
        Path(tmp).write_text(markdown(rows, title, wall))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    parser.add_argument("--datasets", nargs="+", help="names of the profile's datasets to "
                        "run (default all): phantoms, 'real CT'")
    parser.add_argument("--views", nargs="+", type=int,
                        help="view counts to run (default: every one of each dataset)")
    parser.add_argument("--splits", nargs="+", choices=("val", "test"),
                        help="splits to run (default: the profile's)")
    parser.add_argument("--members", type=int,
                        help="ensemble size fitted, DE-N reported for N <= this "
                             "(default: the profile's)")
    parser.add_argument("--threads", type=int, help="torch threads per fit (ensemble members: "
                        "per worker); default torch's. Not part of the runs' config hashes")
    parser.add_argument("--out", type=Path, default=Path("analysis/results/table1_cpu"))
    parser.add_argument("--calibration", type=Path, action="append", default=[],
                        metavar="FILE", help="a calibration file (python -m "
                        "bayes_inr.recalibration fit, or analysis/recalibrate_table1.py): "
                        "every row it applies to (same configuration, view count and "
                        "member count; not its own calibration images) is followed by its "
                        "recalibrated predictive's row (repeatable)")
    args = parser.parse_args()
    try:
        check_output_dir(args.out)
        recalibrations = tuple(Recalibration.load(path) for path in args.calibration)
    except InputError as err:
        parser.exit(2, f"error: {err}\n")
    if args.members is not None and args.members < 1:
        parser.exit(2, f"error: --members must be at least 1, got {args.members}\n")
    profile = PROFILES[args.profile]
    if args.threads:
        profile = dataclasses.replace(profile, overrides=profile.overrides
                                      | {"threads": args.threads})
    splits = args.splits or profile.splits
    n_members = args.members or profile.members
    chosen = [d for d in profile.datasets if not args.datasets or d.name in args.datasets]
    offered = {views for d in chosen for views in d.views}
    if args.views and not set(args.views) <= offered:
        parser.exit(2, f"error: --views {' '.join(map(str, args.views))}: profile "
                       f"{args.profile} has {', '.join(map(str, sorted(offered)))} here\n")
    loaded = {}
    for dataset in chosen:  # check every dataset before any work
        try:
            data = load_benchmark(dataset.path)
        except InputError as err:
            parser.exit(2, f"error: {err}\n")
        if data.attrs.get("protocol") != dataset.protocol:
            parser.exit(2, f"error: profile {args.profile} needs {dataset.path} made with "
                           f"protocol {dataset.protocol!r}, it has "
                           f"{data.attrs.get('protocol')!r}\n")
        loaded[dataset.name] = data
    try:
        top = {(d.name, views): ranked_configs(d, views, n_members, profile.overrides)
               for d in chosen for views in d.views}
    except InputError as err:
        parser.exit(2, f"error: {err}\n")
    runs = args.out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    done = read_rows(args.out)
    rows: list[dict] = []
    start = time.perf_counter()
    title = f"Table 1, profile {args.profile} ({n_members} ensemble members)"
    # the first view count of every dataset first, then the second, ...: the headline
    # 20-view rows of phantoms and real CT come before the rest
    plan = [(d, d.views[i]) for i in range(max(len(d.views) for d in chosen)) for d in chosen
            if i < len(d.views) and (not args.views or d.views[i] in args.views)]
    # rows of the earlier table outside this run's datasets, splits and view counts stay
    planned = {(d.name, split, views) for d, views in plan for split in splits}
    others = [row for row in done.values()
              if (row["dataset"], row["split"], row["views"]) not in planned]
    order = {d.name: i for i, d in enumerate(profile.datasets)}
    previous = signal.signal(signal.SIGTERM, raise_interrupt)  # a kill keeps what is done
    try:
        for dataset, views in plan:
            data = loaded[dataset.name]
            members, ranked = image_configs(profile, dataset, views, n_members,
                                            top[dataset.name, views])
            for split in splits:
                for image_id in benchmark_ids(data, split):
                    sample = benchmark_sample(data, image_id, views)
                    rows += run_image(sample, dataset, views, image_id, profile, runs, members,
                                      split, done, ranked, recalibrations)
                    seconds = time.perf_counter() - start
                    print(f"{dataset.name} {split} {views} views image {image_id} done "
                          f"({seconds:.0f} s)", flush=True)
                    write_tables(sorted(others + rows, key=lambda r: order.get(r["dataset"], 0)),
                                 args.out, title, seconds)
    except KeyboardInterrupt:
        print(f"interrupted: the finished runs are in {runs} (an HMC run keeps its draws so "
              "far in its run file); rerun the same command to continue", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    print((args.out / "table1.md").read_text())
    for recal in recalibrations:
        if not any(row.get("calibration_sha256") == recal.sha256 for row in rows):
            print(f"warning: {recal.path} applied to no row of this run (another "
                  "configuration, view count or member count, or only its own calibration "
                  "images)", file=sys.stderr)


if __name__ == "__main__":
    main()
