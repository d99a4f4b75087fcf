"""Fit a Bayesian INR to a sinogram and store its posterior draws.

    python -m bayes_inr.fit --inference mcd --out run.nc              # built-in phantom
    python -m bayes_inr.fit --dataset data/benchmark_128.nc --image-id 3 --views 20
    python -m bayes_inr.fit --image slice.dcm --views 20 --noise-snr 40
    python -m bayes_inr.fit --sinogram sino.npy --size 128 --config models/mcd_20.toml
    python -m bayes_inr.fit --inference nuts --size 64 --chains 4 --draws 500 --out nuts.nc
    python -m bayes_inr.fit --resume nuts.nc                           # after an interruption
    python -m bayes_inr.fit --resume run.nc                            # an mcd fit: .run.nc.ckpt
    python -m bayes_inr.fit --inference hmc --model gop --tv-weight 30 --out gop.nc
    python -m bayes_inr.fit --inference ensemble --members 5 --workers 2 --out de5.nc
    python -m bayes_inr.fit --member-configs models/mcd_cpu_top1.toml models/mcd_cpu_top2.toml
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import shutil
import signal
import sys
import time
from pathlib import Path

import arviz as az
import numpy as np
import pyro
import torch

from . import convergence, posterior
from .config import MCMC, SVI, FitConfig, field_help, load_config
from .data import Sample, benchmark_sample, load_benchmark, phantom_sample, simulate
from .ensemble import fit_ensemble, member_scores, members_dir
from .errors import InputError
from .geometry import Geometry
from .gop import gop_model
from .images import load_image, npy_error
from .inference import hmc
from .inference.guides import DropoutGuide
from .inference.svi import (
    DivergenceError,
    checkpoint_path,
    draw_images,
    fit_svi,
    load_checkpoint,
    save_checkpoint,
)
from .inr import INR
from .metrics import calibration_table, score, score_table
from .model import CTModel
from .outputs import check_output, output_lock
from .provenance import config_hash, data_hash
from .radon import RadonOperator
from .resources import check_memory
from .workers import raise_interrupt, rerun_command

DEFAULT_SIGMA = 0.01
RESUME_MAY_CHANGE = ("threads", "checkpoint_every")
"""Config fields that a resumed run may change (they do not change the draws)."""


def resolve_sigma(config: FitConfig, sample: Sample) -> float:
    """The likelihood's sigma: the configured one, else the data's known noise, else 0.01."""
    if config.sigma > 0:
        return config.sigma
    return sample.noise_sigma if sample.noise_sigma else DEFAULT_SIGMA


def build_model(sample: Sample, config: FitConfig, prior=None) -> CTModel:
    """The Pyro model of ``config`` for ``sample``, on ``config.device``.

    ``prior`` (a :class:`~bayes_inr.priors.Prior` or a callable) replaces ``config.prior``.
    """
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda requested but torch sees no CUDA device")
    check_model_memory(config, sample.geometry)
    operator = RadonOperator(sample.geometry, device=config.device)
    sinogram = torch.as_tensor(sample.sinogram)
    if config.model == "gop":
        return gop_model(operator, sinogram, prior or config.prior, resolve_sigma(config, sample),
                         config.infer_sigma, config.tv_weight, link=config.head)
    coords = torch.as_tensor(sample.geometry.pixel_centers(), dtype=torch.float32)
    inr = INR(config.architecture(), coords, seed=config.seed).to(config.device)
    dropout = config.dropout if config.inference == "mcd" else 0.0
    return CTModel(inr, operator, sinogram, prior or config.prior,
                   resolve_sigma(config, sample), config.infer_sigma, config.tv_weight,
                   dropout, config.dropout_scope)


def check_model_memory(config: FitConfig, geometry: Geometry) -> None:
    """Refuse (:class:`InputError`) a model of ``config`` whose projection operator and
    network activations for ``geometry`` would not fit in memory
    (:func:`bayes_inr.resources.check_memory`)."""
    check_memory(geometry.size, geometry.n_views, detectors=geometry.n_detectors,
                 depth=config.depth, width=0 if config.model == "gop" else config.width,
                 batch=config.particles)


def fit(sample: Sample, config: FitConfig, progress: bool = True, prior=None, *,
        out: Path | None = None, resume: az.InferenceData | dict | None = None
        ) -> az.InferenceData:
    """Fit ``config`` to ``sample`` and return its draws as InferenceData.

    ``prior`` optionally replaces ``config.prior`` with a Python prior (see
    :mod:`bayes_inr.priors`); its description is stored with the run.
    A diverging run keeps the draws of its last good state and records the step
    in the attribute ``diverged_at_step``.

    hmc/nuts (:mod:`bayes_inr.inference.hmc`) write the draws so far to ``out``
    (atomically) every ``config.checkpoint_every`` kept draws, at the end of every
    chain, and on KeyboardInterrupt, which is then re-raised. ``resume`` is such a
    file's InferenceData: its chains continue from their last kept draws (its
    configuration must be ``config``, up to :data:`RESUME_MAY_CHANGE`).

    map/bbb/mcd with ``out`` checkpoint their training state to ``.OUT.ckpt``
    (:func:`~bayes_inr.inference.svi.checkpoint_path`; a fresh fit first removes one
    left there) after step 1, every ``config.checkpoint_every`` steps, after the last
    step and on SIGINT/SIGTERM (then KeyboardInterrupt is raised); the finished fit is
    saved to ``out`` and the checkpoint removed. ``resume`` is such a checkpoint
    (:func:`~bayes_inr.inference.svi.load_checkpoint`) of ``config`` and ``sample``:
    the fit continues bit-identically (same device and thread count).

    ``inference="ensemble"`` fits the members of :func:`bayes_inr.ensemble.fit_ensemble`.
    """
    if config.inference == "ensemble":
        if prior is not None:
            raise InputError("ensemble members take their priors from their configs, "
                             "not a Python prior")
        return fit_ensemble(sample, config, progress=progress)
    if resume is not None and not isinstance(resume, az.InferenceData if config.inference
                                             in MCMC else dict):
        raise InputError(f"{config.inference} resumes from "
                         + ("its run file" if config.inference in MCMC else "its checkpoint"))
    if config.threads:
        torch.set_num_threads(config.threads)
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
    if config.inference in MCMC:
        return _fit_mcmc(sample, config, model, record, settings, start, progress, out, resume)
    return _fit_svi(sample, config, model, record, settings, start, progress, out, resume)


def _fit_svi(sample: Sample, config: FitConfig, model: CTModel, record: dict, hashed: dict,
             start: float, progress: bool, out: Path | None,
             resume: dict | None) -> az.InferenceData:
    """map/bbb/mcd: one guide trained by SVI, checkpointed to ``.OUT.ckpt``
    (:func:`~bayes_inr.inference.svi.checkpoint_path`), which is removed once ``out``
    holds the finished run."""
    if resume is not None:
        check_svi_resumable(resume, record, sample)
    checkpoint = None if out is None else checkpoint_path(out)
    if checkpoint is not None and resume is None:
        checkpoint.unlink(missing_ok=True)  # a fresh fit: an earlier fit's state goes
    earlier = 0.0 if resume is None else float(resume["wall_time"])
    saved = [] if resume is None else [resume["step"]]  # steps now in the checkpoint
    run = {"config": json.loads(json.dumps(record)), "config_hash": config_hash(hashed),
           "data_hash": sample_hash(sample), "sample": _sample_state(sample)}

    def save(state: dict) -> None:
        save_checkpoint(state | run | {"wall_time": earlier + time.perf_counter() - start},
                        checkpoint)
        saved.append(state["step"])

    try:
        try:
            result = fit_svi(model, config.inference, model.init_params(config.seed),
                             steps=config.steps, lr=config.lr, lr_final=config.lr_final,
                             kl_factor=config.kl_factor, init_scale=config.init_scale,
                             particles=config.particles, checkpoint_every=config.checkpoint_every,
                             checkpoint=save if checkpoint is not None else None, resume=resume,
                             progress=progress)
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
        seed=config.seed, wall_time=earlier + time.perf_counter() - start,
        device=config.device, extra_constant={"loss": (("step",), np.asarray(result.losses))},
        settings=hashed, forward=model.operator, sigma=_guide_sigma(model, result.guide))
    if checkpoint is not None:
        posterior.save(idata, out)
        checkpoint.unlink(missing_ok=True)
    return idata


def sample_hash(sample: Sample) -> str:
    """The data hash of ``sample`` (:func:`bayes_inr.provenance.data_hash`), as run files
    record it: sinogram, angles, ground truth."""
    return data_hash(sample.sinogram, sample.geometry.angles, sample.ground_truth)


def _sample_state(sample: Sample) -> dict:
    """``sample`` as plain values and tensors, for a checkpoint (:func:`svi_resume_inputs`)."""
    truth = sample.ground_truth
    return {"sinogram": torch.from_numpy(np.array(sample.sinogram, dtype=np.float32)),
            "ground_truth": None if truth is None
            else torch.from_numpy(np.array(truth, dtype=np.float32)),
            "size": sample.geometry.size, "n_detectors": sample.geometry.n_detectors,
            "noise_sigma": sample.noise_sigma, "name": sample.name}


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


def _fit_mcmc(sample: Sample, config: FitConfig, model: CTModel, record: dict, hashed: dict,
              start: float, progress: bool, out: Path | None,
              resume: az.InferenceData | None) -> az.InferenceData:
    """hmc/nuts: chains from MAP (or other) starts, checkpointed to ``out``."""
    potential = hmc.FlatPotential(model)
    settings = hmc.MCMCSettings.from_config(config)
    if resume is not None:
        check_resumable(posterior.config(resume), record)
        run = hmc.MCMCRun.from_inference_data(potential, settings, resume)
        earlier = float(posterior.run_attrs(resume).get("wall_time", 0.0))
    else:
        try:
            inits = hmc.initial_points(potential, config.init, config.chains, config.seed,
                                       steps=config.steps, lr=config.lr,
                                       lr_final=config.lr_final, progress=progress)
        except KeyboardInterrupt:
            print(f"interrupted while computing the start points of {config.chains} chain(s) "
                  f"(--init {config.init}, {time.perf_counter() - start:.0f} s): no draws yet, "
                  "nothing saved; rerun the same command to start again", file=sys.stderr)
            raise
        run, earlier = hmc.MCMCRun(potential, settings, inits), 0.0
        record["map_seconds"] = time.perf_counter() - start
    meta = {"sinogram": sample.sinogram, "angles": sample.geometry.angles,
            "method": config.inference, "config": record, "ground_truth": sample.ground_truth,
            "seed": config.seed, "device": config.device, "settings": hashed}

    def inference_data():
        return run.inference_data(**meta, wall_time=earlier + time.perf_counter() - start)

    def save(run):
        posterior.save(inference_data(), out)

    try:
        run.run(progress, checkpoint=save if out is not None else None)
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
    differ = [name for name, value in current.items()
              if name not in RESUME_MAY_CHANGE and stored.get(name) != value]
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
    if stored.get("inference") not in MCMC:
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
                    name=Path(path).stem)
    return sample, config, idata


def svi_resume_inputs(checkpoint: Path, overrides: dict) -> tuple[Sample, FitConfig, dict]:
    """The sample, configuration and training state stored in an SVI ``checkpoint``."""
    state = load_checkpoint(checkpoint)
    data = state["sample"]
    geometry = Geometry(int(data["size"]), int(data["sinogram"].shape[0]),
                        int(data["n_detectors"]))
    truth = data["ground_truth"]
    sample = Sample(geometry, data["sinogram"].numpy(), None if truth is None else truth.numpy(),
                    noise_sigma=data["noise_sigma"], name=data["name"])
    return sample, _stored_config(state["config"], overrides), state


def _stored_config(stored: dict, overrides: dict) -> FitConfig:
    """The :class:`FitConfig` of a stored run's config, with ``overrides``."""
    names = {f.name for f in dataclasses.fields(FitConfig)}
    return FitConfig(**{name: stored[name] for name in names if name in stored} | overrides)


def sample_from_args(args, config: FitConfig) -> Sample:
    """The reconstruction problem the command line asks for, to be fitted with ``config``
    (its seed seeds simulated noise; a problem too large for its model is refused before
    anything is simulated, see :func:`check_model_memory`)."""
    given = [flag for flag in ("dataset", "image", "sinogram") if getattr(args, flag)]
    if len(given) > 1:
        raise InputError(f"give one input, not {' and '.join('--' + g for g in given)}")
    views = args.views
    if views is not None and views <= 0:
        raise InputError(f"--views must be positive, got {views}")
    if args.size is not None and args.size <= 0:
        raise InputError(f"--size must be positive, got {args.size}")
    noise = {"snr_db": args.noise_snr}
    if args.dataset:
        if args.image_id is None:
            raise InputError("--dataset needs --image-id")
        return benchmark_sample(load_benchmark(args.dataset), args.image_id, views or 20)
    if args.sinogram:
        return sinogram_sample(args.sinogram, args.size)
    views = views or 20
    if args.size or not args.image:
        check_model_memory(config, Geometry(args.size or 128, views))
    if args.image:
        truth = load_image(args.image, size=args.size)
        check_model_memory(config, Geometry(truth.shape[0], views))
        return simulate(truth, views, seed=config.seed, name=Path(args.image).stem, **noise)
    return phantom_sample(args.phantom, views, args.size or 128, **noise)


def sinogram_sample(path, size: int | None) -> Sample:
    """A measured sinogram from a .npy file (V, D), angles evenly on [0, pi)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"sinogram file {path} not found")
    if path.stat().st_size == 0:
        raise InputError(f"sinogram file {path} is empty")
    if size is None:
        raise InputError("--sinogram needs --size (the image side N)")
    try:
        sinogram = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise InputError(f"cannot read sinogram file {path}: {npy_error(err)}") from None
    if sinogram.ndim != 2:
        raise InputError(f"sinogram must be 2-D (views, detectors), got shape {sinogram.shape}")
    geometry = Geometry(size, sinogram.shape[0])
    return Sample(geometry, sinogram.astype(np.float32), name=path.stem)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except None (an unset flag; the hyperparameters state their own)."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bayes_inr.fit", description=__doc__.split("\n\n")[0],
        formatter_class=_HelpFormatter)
    src = p.add_argument_group("input (default: a built-in random phantom)")
    src.add_argument("--dataset", type=Path, help="benchmark netCDF (python -m bayes_inr.data)")
    src.add_argument("--image-id", type=int, help="benchmark phantom id (0-4 val, 5-9 test)")
    src.add_argument("--image", type=Path, help="ground-truth image: .npy, .png or DICOM")
    src.add_argument("--sinogram", type=Path, help="measured sinogram .npy (views, detectors)")
    src.add_argument("--views", type=int, help="number of views (default 20)")
    src.add_argument("--phantom", type=int, default=0, help="built-in phantom id")
    src.add_argument("--size", type=int, help="image side N (default 128 for phantoms)")
    src.add_argument("--noise-snr", type=float, help="add Gaussian noise at this SNR (dB)")
    p.add_argument("--config", type=Path,
                   help="a shipped configuration by name (e.g. mcd_20; python -m "
                        "bayes_inr.configs lists them) or a TOML file")
    p.add_argument("--out", type=Path,
                   help="output InferenceData file (default run.nc; with --resume that file)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out file (refused otherwise)")
    p.add_argument("--resume", type=Path, metavar="OUT",
                   help="continue an interrupted fit from its data and configuration (only "
                        "--threads and --checkpoint-every may change): the checkpoint .OUT.ckpt "
                        "of a map/bbb/mcd fit if there is one, else the hmc/nuts run file OUT")
    p.add_argument("--member-configs", type=Path, nargs="+", metavar="TOML",
                   help="ensemble members, one TOML config each (e.g. the top N of a sweep, "
                        "python -m bayes_inr.sweep --rank); implies --inference ensemble")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    hyper = p.add_argument_group("hyperparameters (override the config file)")
    helps = {name: text.replace("%", "%%") for name, text in field_help().items()}  # argparse
    for f in dataclasses.fields(FitConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            hyper.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                               help=helps[f.name])
        else:
            kind = {"int": int, "float": float}.get(f.type, str)
            hyper.add_argument(flag, type=kind, default=None,
                               help=f"{helps[f.name]} (default {f.default})")
    return p


def check_checkpoint(out: Path, resume: Path | None, overwrite: bool) -> None:
    """Raise :class:`InputError` when an unfinished map/bbb/mcd fit's checkpoint
    ``.OUT.ckpt`` would be lost (a fresh run without ``overwrite``) or left behind (a
    resume into another file)."""
    checkpoint = checkpoint_path(out)
    if resume is None and checkpoint.exists() and not overwrite:
        raise InputError(f"{checkpoint} holds an unfinished fit: continue it with --resume "
                         f"{out}, or pass --overwrite to start over")
    if resume is not None and checkpoint_path(resume).exists() and \
            out.resolve() != resume.resolve():
        raise InputError("an unfinished map/bbb/mcd fit continues into its own file: "
                         f"drop --out {out}")


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(FitConfig)
                 if getattr(args, f.name) is not None}
    out = args.out or args.resume or Path("run.nc")
    mcmc, told, members = False, False, None  # told: the run said what it kept
    held = contextlib.ExitStack()  # the output's lock, released however the run ends
    previous = signal.signal(signal.SIGTERM, raise_interrupt)  # a kill saves the draws so far
    try:
        resuming_in_place = args.resume is not None and out.resolve() == args.resume.resolve()
        check_output(out, overwrite=args.overwrite, exists_ok=resuming_in_place, what="--out")
        held.enter_context(output_lock(out))
        check_checkpoint(out, args.resume, args.overwrite)
        if args.resume:
            inputs = [f"--{name}" for name in ("config", "dataset", "image", "sinogram", "views",
                                               "size", "noise_snr") if getattr(args, name)]
            if inputs:
                raise InputError(f"--resume takes data and configuration from the file; "
                                 f"drop {' '.join(inputs)}")
            sample, config, resumed = resume_inputs(args.resume, overrides)
        else:
            if args.member_configs:
                if overrides.setdefault("inference", "ensemble") != "ensemble":
                    raise InputError("--member-configs builds an ensemble: drop --inference "
                                     f"{overrides['inference']}")
                members = [load_config(path) for path in args.member_configs]
                if overrides.setdefault("members", len(members)) != len(members):
                    raise InputError(f"--members {overrides['members']} but "
                                     f"{len(members)} --member-configs")
            config = (load_config(args.config, **overrides) if args.config
                      else FitConfig(**overrides))
            sample, resumed = sample_from_args(args, config), None
        mcmc = config.inference in MCMC
        if mcmc:
            print(f"{config.inference}: {config.chains} chain(s) of {config.warmup} warmup + "
                  f"{config.draws} x {config.thin} transitions, "
                  f"{config.threads or torch.get_num_threads()} torch "
                  f"thread(s), device {config.device}", flush=True)
        told = True  # fit and fit_ensemble say what they kept
        if config.inference == "ensemble":  # finished members wait in OUT.members/
            idata = fit_ensemble(sample, config, members, progress=not args.quiet,
                                 store=members_dir(out), rerun="continue with: "
                                 + rerun_command("bayes_inr.fit", argv))
        else:
            idata = fit(sample, config, progress=not args.quiet, out=out, resume=resumed)
        if config.inference not in SVI:  # an SVI fit saved its run (then removed .OUT.ckpt)
            posterior.save(idata, out)
        if config.inference == "ensemble":
            shutil.rmtree(members_dir(out))
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if not told:
            print("interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        held.close()
    attrs = posterior.run_attrs(idata)
    print(f"wrote {out} ({attrs['method']}, {len(posterior.image_draws(idata))} draws, "
          f"{attrs['wall_time']:.1f} s)")
    if mcmc:
        print(hmc.diagnostics(idata))
        for line in convergence.sampler_warnings(idata):
            print(f"warning: {line}", file=sys.stderr)
    if sample.ground_truth is not None:
        rows = member_scores(idata) if config.inference == "ensemble" else []
        scores = score(idata)
        print(score_table([*rows, scores]))
        if scores["n_draws"] >= 2:
            print(f"\ncalibration by pixel set (object: true value > 0; "
                  f"{scores['n_draws']} draws):")
            print(calibration_table(scores))
    return 0


if __name__ == "__main__":
    sys.exit(main())
