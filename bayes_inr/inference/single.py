"""Single fits: one model of a configuration, fitted to one sample by one method.

:class:`SingleFit` is the shared part of every method that fits one model: it builds
the Pyro model (:func:`build_model`), records the configuration and hashes, and hands
over to its family's run, with checkpoints and resume:

- :class:`SVIFit`: a guide trained by SVI (:mod:`bayes_inr.inference.svi`); a method
  gives the guide, and optionally a KL factor;
- :class:`MCMCFit`: chains of a Pyro kernel on the flat potential
  (:mod:`bayes_inr.inference.mcmc`); a method names its kernel.

The methods themselves are in :mod:`bayes_inr.inference.methods`. :func:`resume_inputs`
reads back what an interrupted fit left. Ensembles of single fits run one layer up
(:mod:`bayes_inr.inference.ensemble`).
"""

from __future__ import annotations

import abc
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import ClassVar

import arviz as az
import numpy as np
import pyro
import torch

from .. import posterior
from ..core.errors import InputError
from ..core.provenance import HASHED_WHEN_SET, config_hash, data_hash
from ..core.threads import torch_threads
from ..core.workers import threads_per_worker
from ..data.sample import Sample
from ..model.ctmodel import CTModel
from ..model.gop import gop_model
from ..model.inr import INR
from ..physics.geometry import Geometry
from ..physics.radon import RadonOperator
from ..physics.resources import check_memory
from . import mcmc
from .config import FitConfig
from .guides import DropoutGuide
from .method import InferenceMethod, family_of, get_method
from .svi import (
    DivergenceError,
    checkpoint_path,
    draw_images,
    fit_svi,
    load_checkpoint,
    save_checkpoint,
)
from .tv_start import recorded_start, tv_start

DEFAULT_SIGMA = 0.01
RESUME_MAY_CHANGE = ("threads", "workers", "checkpoint_every")
"""Config fields that a resumed run may change. They do not change what the run samples
or fits, but ``threads`` changes the floating-point order of sums: SVI then continues to the
same optimum up to rounding, while a Markov chain, which amplifies rounding, continues as a
valid but different chain (measured: two NUTS runs with 1 and 2 threads differ by up to 0.9
in a pixel after 50 transitions). Bit-identical results need the same thread count."""


def resolve_sigma(config: FitConfig, sample: Sample) -> float:
    """The likelihood's sigma: the configured one, else the data's known noise, else 0.01."""
    if config.sigma > 0:
        return config.sigma
    return sample.noise_sigma if sample.noise_sigma else DEFAULT_SIGMA


def build_model(sample: Sample, config: FitConfig, prior=None) -> CTModel:
    """The Pyro model of ``config`` for ``sample``, on ``config.device``.

    ``prior`` (a :class:`~bayes_inr.model.priors.Prior` or a callable) replaces ``config.prior``.
    """
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda requested but torch sees no CUDA device")
    check_model_memory(config, sample.geometry)
    operator = RadonOperator(sample.geometry, device=config.device)
    sinogram = torch.as_tensor(sample.sinogram)
    method, sigma = get_method(config.inference), resolve_sigma(config, sample)
    tv_weight, tv_norm = method.tv_factor(config, sigma)
    if config.model == "gop":
        return gop_model(operator, sinogram, prior or config.prior, sigma, config.infer_sigma,
                         tv_weight, link=config.head, tv_norm=tv_norm,
                         tv_smoothing=config.tv_smoothing)
    coords = torch.as_tensor(sample.geometry.pixel_centers(), dtype=torch.float32)
    inr = INR(config.architecture(), coords, seed=config.seed).to(config.device)
    dropout = config.dropout if method.dropout else 0.0
    return CTModel(inr, operator, sinogram, prior or config.prior, sigma, config.infer_sigma,
                   tv_weight, dropout, config.dropout_scope, tv_norm, config.tv_smoothing)


def check_model_memory(config: FitConfig, geometry: Geometry) -> None:
    """Refuse (:class:`InputError`) a model of ``config`` whose projection operator and
    network activations for ``geometry`` would not fit in memory
    (:func:`bayes_inr.physics.resources.check_memory`)."""
    check_memory(geometry.size, geometry.n_views, detectors=geometry.n_detectors,
                 depth=config.depth, width=0 if config.model == "gop" else config.width,
                 batch=config.particles)


@dataclasses.dataclass
class _Run:
    """What :meth:`SingleFit.fit` hands its family's run: the recorded configuration, the
    hashed settings, the start time, progress bars and the output file."""

    record: dict
    settings: dict
    start: float
    progress: bool
    out: Path | None


class SingleFit(InferenceMethod):
    """A method that fits one model: builds it, records the run, then :meth:`run`."""

    def fit(self, sample: Sample, config: FitConfig, *, prior=None, progress: bool = True,
            out: Path | None = None, resume: az.InferenceData | dict | None = None
            ) -> az.InferenceData:
        """Fit ``config`` to ``sample`` and return its draws as InferenceData.

        ``prior`` optionally replaces ``config.prior`` with a Python prior (see
        :mod:`bayes_inr.model.priors`); its description is stored with the run. ``out``
        and ``resume`` are the family's checkpoints (:meth:`SVIFit.run`,
        :meth:`MCMCFit.run`).
        """
        with torch_threads(config.threads):
            pyro.set_rng_seed(config.seed)
            start = time.perf_counter()
            try:
                model = build_model(sample, config, prior)
            except KeyboardInterrupt:
                print("interrupted while building the model: nothing saved", file=sys.stderr)
                raise
            record = dataclasses.asdict(config) | {"sigma_used": model.sigma,
                                                   "prior_used": model.prior.describe(),
                                                   "threads_used": torch.get_num_threads()}
            # what config_hash covers: the settings, and a Python prior's description
            settings = dataclasses.asdict(config) | (
                {} if prior is None else {"prior_used": record["prior_used"]})
            return self.run(sample, config, model,
                            _Run(record, settings, start, progress, out), resume)

    @abc.abstractmethod
    def run(self, sample: Sample, config: FitConfig, model: CTModel, run: _Run,
            resume: az.InferenceData | dict | None) -> az.InferenceData:
        """Fit the built ``model`` and return the run's InferenceData."""


class SVIFit(SingleFit):
    """The SVI family: a guide trained by :func:`~bayes_inr.inference.svi.fit_svi`.

    A method gives :meth:`guide`, and :meth:`kl_factor` when it scales the prior and
    guide terms (BBB).
    """

    family: ClassVar[str] = "svi"
    member: ClassVar[bool] = True

    @abc.abstractmethod
    def guide(self, model: CTModel, init: dict[str, torch.Tensor], config: FitConfig):
        """The method's Pyro guide of ``model``, starting from the weights ``init``."""

    def kl_factor(self, config: FitConfig) -> float:
        """The factor xi on the prior and guide terms of the ELBO (1: the plain ELBO)."""
        return 1.0

    def run(self, sample: Sample, config: FitConfig, model: CTModel, run: _Run,
            resume: dict | None) -> az.InferenceData:
        """Train the guide, checkpointed to ``.OUT.ckpt``
        (:func:`~bayes_inr.inference.svi.checkpoint_path`; a fresh fit first removes one
        left there) after step 1, every ``config.checkpoint_every`` steps, after the last
        step and on SIGINT/SIGTERM (then KeyboardInterrupt is raised); the finished fit is
        saved to ``out`` and the checkpoint removed. ``resume`` is such a checkpoint
        (:func:`~bayes_inr.inference.svi.load_checkpoint`) of ``config`` and ``sample``:
        the fit continues bit-identically (same device and thread count). A diverging
        fit keeps its last good state and records the step in ``diverged_at_step``.
        """
        if resume is not None and not isinstance(resume, dict):
            raise InputError(f"{self.name} resumes from its checkpoint")
        return _run_svi(self, sample, config, model, run, resume)


def _run_svi(method: SVIFit, sample: Sample, config: FitConfig, model: CTModel, run: _Run,
             resume: dict | None) -> az.InferenceData:
    """:meth:`SVIFit.run` of ``method``."""
    record, out, start = run.record, run.out, run.start
    if resume is not None:
        check_svi_resumable(resume, record, sample)
    checkpoint = None if out is None else checkpoint_path(out)
    if checkpoint is not None and resume is None:
        checkpoint.unlink(missing_ok=True)  # a fresh fit: an earlier fit's state goes
    earlier = 0.0 if resume is None else float(resume["wall_time"])
    saved = [] if resume is None else [resume["step"]]  # steps now in the checkpoint
    stored = {"config": json.loads(json.dumps(record)),
              "config_hash": config_hash(run.settings), "data_hash": sample_hash(sample),
              "sample": _sample_state(sample)}

    def save(state: dict) -> None:
        save_checkpoint(state | stored | {"wall_time": earlier + time.perf_counter() - start},
                        checkpoint)
        saved.append(state["step"])

    try:
        try:
            if config.init == "tv" and resume is None:
                tv = tv_start(model, seed=config.seed, tries=config.start_tries)
                start_weights = tv.params
                record.update(tv.record())
                stored["config"].update(tv.record())
            else:
                start_weights = model.init_params(config.seed)
                if resume is not None:  # the start of the fit resumed
                    record.update(recorded_start(resume["config"]))
            guide = method.guide(model, start_weights, config)
            result = fit_svi(model, guide, steps=config.steps, lr=config.lr,
                             lr_final=config.lr_final, kl_factor=method.kl_factor(config),
                             particles=config.particles, checkpoint_every=config.checkpoint_every,
                             checkpoint=save if checkpoint is not None else None, resume=resume,
                             progress=run.progress, desc=method.name)
        except DivergenceError as err:
            print(f"warning: {err}", file=sys.stderr)
            result = err.result
            record["diverged_at_step"] = err.step
        images = draw_images(model, result.guide, config.draws)
    except KeyboardInterrupt:
        if saved and checkpoint is not None:
            print(f"interrupted after step {saved[-1]} of {config.steps}: the fit so far is in "
                  f"{checkpoint}; continue with: python -m bayes_inr.fit --resume {out}",
                  file=sys.stderr)
        else:
            print("interrupted before the first step ended: nothing saved", file=sys.stderr)
        raise
    record |= {"steps_done": result.steps, "seconds_per_step": result.seconds_per_step,
               "train_seconds": result.seconds}
    idata = posterior.build(
        images[None], sinogram=sample.sinogram, angles=sample.geometry.angles,
        method=config.inference, config=record, ground_truth=sample.ground_truth,
        air_level=sample.air_level, seed=config.seed,
        wall_time=earlier + time.perf_counter() - start,
        device=config.device, extra_constant={"loss": (("step",), np.asarray(result.losses))},
        settings=run.settings, forward=model.operator, sigma=_guide_sigma(model, result.guide))
    if checkpoint is not None:
        posterior.save(idata, out)
        checkpoint.unlink(missing_ok=True)
    return idata


def sample_hash(sample: Sample) -> str:
    """The data hash of ``sample`` (:func:`bayes_inr.core.provenance.data_hash`), as run files
    record it: sinogram, angles, ground truth."""
    return data_hash(sample.sinogram, sample.geometry.angles, sample.ground_truth)


def _sample_state(sample: Sample) -> dict:
    """``sample`` as plain values and tensors, for a checkpoint (:func:`svi_resume_inputs`)."""
    truth = sample.ground_truth
    return {"sinogram": torch.from_numpy(np.array(sample.sinogram, dtype=np.float32)),
            "ground_truth": None if truth is None
            else torch.from_numpy(np.array(truth, dtype=np.float32)),
            "size": sample.geometry.size, "n_detectors": sample.geometry.n_detectors,
            "noise_sigma": sample.noise_sigma, "name": sample.name,
            "air_level": sample.air_level}


def check_svi_resumable(state: dict, record: dict, sample: Sample) -> None:
    """Raise :class:`InputError` unless the checkpoint ``state`` is a fit of the
    configuration ``record`` (up to :data:`RESUME_MAY_CHANGE`) on the data of ``sample``."""
    check_resumable(state["config"], record, what="checkpoint")
    if state["data_hash"] != sample_hash(sample):
        raise InputError(f"the checkpoint is a fit of other data (data hash "
                         f"{state['data_hash']} there, {sample_hash(sample)} now)")


def _guide_sigma(model: CTModel, guide) -> float:
    """The sigma of the stored log-likelihood of an SVI run: the model's, or with
    ``infer_sigma`` the guide's point value (its median; the dropout guide's mean)."""
    if not model.infer_sigma:
        return model.sigma
    point = guide.means() if isinstance(guide, DropoutGuide) else guide.median()
    return float(point["sigma"].detach())


class MCMCFit(SingleFit):
    """The MCMC family: chains of the method's Pyro kernel on the flat potential
    (:mod:`bayes_inr.inference.mcmc`), from MAP (or other) starts."""

    family: ClassVar[str] = "mcmc"
    kernel: ClassVar[str]
    """The kernel's name in :func:`bayes_inr.inference.mcmc.kernels.make_kernel`."""

    def run(self, sample: Sample, config: FitConfig, model: CTModel, run: _Run,
            resume: az.InferenceData | None) -> az.InferenceData:
        """Run the chains, writing the draws so far to ``out`` (atomically) every
        ``config.checkpoint_every`` kept draws, at the end of every chain, and on
        KeyboardInterrupt, which is then re-raised. ``resume`` is such a file's
        InferenceData: its chains continue from their last kept draws (its configuration
        must be ``config``, up to :data:`RESUME_MAY_CHANGE`)."""
        if resume is not None and not isinstance(resume, az.InferenceData):
            raise InputError(f"{self.name} resumes from its run file")
        return _run_mcmc(self, sample, config, model, run, resume)


def _run_mcmc(method: MCMCFit, sample: Sample, config: FitConfig, model: CTModel, run: _Run,
              resume: az.InferenceData | None) -> az.InferenceData:
    """:meth:`MCMCFit.run` of ``method``."""
    record, out, start, progress = run.record, run.out, run.start, run.progress
    potential = mcmc.FlatPotential(model)
    settings = mcmc.MCMCSettings.from_config(config, kernel=method.kernel)
    if settings.mass_matrix == "gauss_newton":
        mcmc.check_dense(potential)  # before the start points' MAP fits
    if resume is not None:
        stored = posterior.config(resume)
        check_resumable(stored, record)
        record.update(recorded_start(stored))
        sampler = mcmc.MCMCRun.from_inference_data(potential, settings, resume)
        earlier = float(posterior.run_attrs(resume).get("wall_time", 0.0))
    else:
        try:
            inits = mcmc.initial_points(potential, config.init, config.chains, config.seed,
                                       steps=config.steps, lr=config.lr,
                                       lr_final=config.lr_final, progress=progress,
                                       start_tries=config.start_tries, record=record)
        except KeyboardInterrupt:
            print(f"interrupted while computing the start points of {config.chains} chain(s) "
                  f"(--init {config.init}, {time.perf_counter() - start:.0f} s): no draws yet, "
                  "nothing saved; rerun the same command to start again", file=sys.stderr)
            raise
        sampler, earlier = mcmc.MCMCRun(potential, settings, inits), 0.0
        record["map_seconds"] = time.perf_counter() - start
    meta = {"sinogram": sample.sinogram, "angles": sample.geometry.angles,
            "method": config.inference, "config": record, "ground_truth": sample.ground_truth,
            "air_level": sample.air_level,
            "seed": config.seed, "device": config.device, "settings": run.settings}

    def inference_data():
        return sampler.inference_data(**meta, wall_time=earlier + time.perf_counter() - start)

    def save(_):
        posterior.save(inference_data(), out)

    try:
        workers = min(config.workers, config.chains)
        sampler.run(progress, checkpoint=save if out is not None else None,
                    workers=workers, threads=threads_per_worker(workers, config.threads),
                    store=None if out is None else out.with_name(f".{out.name}.chains"))
    except KeyboardInterrupt:
        idata = inference_data()
        if out is not None and idata is not None:
            posterior.save(idata, out)
            print(f"interrupted: the draws so far are in {out}; continue with "
                  f"--resume {out}", file=sys.stderr)
        else:
            print("interrupted before the first kept draw: nothing written", file=sys.stderr)
        raise
    return inference_data()


def check_resumable(stored: dict, record: dict, what: str = "resumed file") -> None:
    """Raise :class:`InputError` unless ``stored`` (a run's or a checkpoint's config) is the
    configuration ``record`` (the config fields, the prior and sigma used; up to
    :data:`RESUME_MAY_CHANGE`)."""
    names = [f.name for f in dataclasses.fields(FitConfig)] + ["prior_used", "sigma_used"]
    current = json.loads(json.dumps({name: record[name] for name in names}))
    differ = [name for name, value in current.items()  # a field added later: its default
              if name not in RESUME_MAY_CHANGE
              and stored.get(name, HASHED_WHEN_SET.get(name)) != value]
    if differ:
        raise InputError(f"the {what} is a run of another configuration: "
                         + ", ".join(f"{name} {stored.get(name)!r} there, {current[name]!r} now"
                                     for name in differ))


def resume_inputs(path: Path, overrides: dict
                  ) -> tuple[Sample, FitConfig, az.InferenceData | dict]:
    """The sample, configuration and saved state of a fit to resume: the checkpoint
    ``.PATH.ckpt`` of an unfinished map/bbb/mcd fit when there is one (see
    :func:`svi_resume_inputs`), else the draws of the hmc/nuts run file ``path``."""
    checkpoint = checkpoint_path(path)
    if checkpoint.exists():
        return svi_resume_inputs(checkpoint, overrides)
    if not Path(path).exists():
        raise InputError(f"nothing to resume: neither {path} nor {checkpoint} exists")
    idata = posterior.load(path, trim=False)  # the padding of a partial run is resumed
    stored = posterior.config(idata)
    if family_of(stored.get("inference", "")) != "mcmc":
        raise InputError(f"{path} is a finished {stored.get('inference', 'non-hmc')} run "
                         f"(no checkpoint {checkpoint}): nothing to resume")
    config = _stored_config(stored, overrides)
    sinogram = np.asarray(idata.observed_data["sinogram"].values)
    size = idata.posterior_predictive["image"].shape[-1]
    geometry = Geometry(int(size), sinogram.shape[0], sinogram.shape[1])
    if not np.allclose(geometry.angles, idata.observed_data["angle"].values):
        raise InputError(f"{path}: its angles are not {sinogram.shape[0]} even views on [0, pi)")
    const = idata.constant_data
    truth = const["ground_truth"].values if "ground_truth" in const else None
    sample = Sample(geometry, sinogram, truth, noise_sigma=stored.get("sigma_used"),
                    name=Path(path).stem, air_level=posterior.air_level(idata))
    return sample, config, idata


def svi_resume_inputs(checkpoint: Path, overrides: dict) -> tuple[Sample, FitConfig, dict]:
    """The sample, configuration and training state stored in an SVI ``checkpoint``."""
    state = load_checkpoint(checkpoint)
    data = state["sample"]
    geometry = Geometry(int(data["size"]), int(data["sinogram"].shape[0]),
                        int(data["n_detectors"]))
    truth = data["ground_truth"]
    sample = Sample(geometry, data["sinogram"].numpy(), None if truth is None else truth.numpy(),
                    noise_sigma=data["noise_sigma"], name=data["name"],
                    air_level=data.get("air_level", 0.0))
    return sample, _stored_config(state["config"], overrides), state


def _stored_config(stored: dict, overrides: dict) -> FitConfig:
    """The :class:`FitConfig` of a stored run's config, with ``overrides``."""
    names = {f.name for f in dataclasses.fields(FitConfig)}
    return FitConfig(**{name: stored[name] for name in names if name in stored} | overrides)
