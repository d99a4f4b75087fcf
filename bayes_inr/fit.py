"""Fit a Bayesian INR to a sinogram and store its posterior draws.

    python -m bayes_inr.fit --inference mcd --out run.nc              # built-in phantom
    python -m bayes_inr.fit --dataset data/benchmark_128.nc --image-id 3 --views 20
    python -m bayes_inr.fit --image slice.dcm --views 20 --noise-snr 40
    python -m bayes_inr.fit --sinogram sino.npy --size 128 --config models/mcd_20.toml
    python -m bayes_inr.fit --inference nuts --size 64 --chains 4 --draws 500 --out nuts.nc
    python -m bayes_inr.fit --resume nuts.nc                           # after an interruption
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
from .config import MCMC, FitConfig, field_help, load_config
from .data import Sample, benchmark_sample, load_benchmark, phantom_sample, simulate
from .ensemble import fit_ensemble, member_scores, members_dir
from .errors import InputError
from .geometry import Geometry
from .gop import gop_model
from .images import load_image, npy_error
from .inference import hmc
from .inference.guides import DropoutGuide
from .inference.svi import DivergenceError, draw_images, fit_svi
from .inr import INR
from .metrics import calibration_table, score, score_table
from .model import CTModel
from .outputs import check_output, output_lock
from .radon import RadonOperator
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


def fit(sample: Sample, config: FitConfig, progress: bool = True, prior=None, *,
        out: Path | None = None, resume: az.InferenceData | None = None) -> az.InferenceData:
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

    ``inference="ensemble"`` fits the members of :func:`bayes_inr.ensemble.fit_ensemble`.
    """
    if config.inference == "ensemble":
        if prior is not None:
            raise InputError("ensemble members take their priors from their configs, "
                             "not a Python prior")
        return fit_ensemble(sample, config, progress=progress)
    if config.threads:
        torch.set_num_threads(config.threads)
    pyro.set_rng_seed(config.seed)
    start = time.perf_counter()
    model = build_model(sample, config, prior)
    record = dataclasses.asdict(config) | {"sigma_used": model.sigma,
                                           "prior_used": model.prior.describe(),
                                           "threads_used": torch.get_num_threads()}
    # what config_hash covers: the settings, and a Python prior's description
    settings = dataclasses.asdict(config) | (
        {} if prior is None else {"prior_used": record["prior_used"]})
    if config.inference in MCMC:
        return _fit_mcmc(sample, config, model, record, settings, start, progress, out, resume)
    if resume is not None:
        raise InputError("only hmc/nuts runs can be resumed")
    init = model.init_params(config.seed)
    try:
        result = fit_svi(model, config.inference, init, steps=config.steps, lr=config.lr,
                         lr_final=config.lr_final,
                         kl_factor=config.kl_factor, init_scale=config.init_scale,
                         particles=config.particles, progress=progress)
    except DivergenceError as err:
        print(f"warning: {err}", file=sys.stderr)
        result = err.result
        record["diverged_at_step"] = err.step
    images = draw_images(model, result.guide, config.draws)
    record |= {"steps_done": result.steps, "seconds_per_step": result.seconds_per_step,
               "train_seconds": result.seconds}
    return posterior.build(
        images[None], sinogram=sample.sinogram, angles=sample.geometry.angles,
        method=config.inference, config=record, ground_truth=sample.ground_truth,
        seed=config.seed, wall_time=time.perf_counter() - start, device=config.device,
        extra_constant={"loss": (("step",), np.asarray(result.losses))}, settings=settings,
        forward=model.operator, sigma=_guide_sigma(model, result.guide))


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
        check_resumable(resume, record)
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


def check_resumable(idata: az.InferenceData, record: dict) -> None:
    """Raise :class:`InputError` unless ``idata`` is a run of the configuration ``record``
    (the config fields, the prior and sigma used; up to :data:`RESUME_MAY_CHANGE`)."""
    stored = posterior.config(idata)
    names = [f.name for f in dataclasses.fields(FitConfig)] + ["prior_used", "sigma_used"]
    current = json.loads(json.dumps({name: record[name] for name in names}))
    differ = [name for name, value in current.items()
              if name not in RESUME_MAY_CHANGE and stored.get(name) != value]
    if differ:
        raise InputError("the resumed file is a run of another configuration: "
                         + ", ".join(f"{name} {stored.get(name)!r} there, {current[name]!r} now"
                                     for name in differ))


def resume_inputs(path: Path, overrides: dict) -> tuple[Sample, FitConfig, az.InferenceData]:
    """The sample, configuration and draws of a saved hmc/nuts run to resume."""
    idata = posterior.load(path, trim=False)  # the padding of a partial run is resumed
    stored = posterior.config(idata)
    if stored.get("inference") not in MCMC:
        raise InputError(f"{path} is a {stored.get('inference', 'non-hmc')} run; only hmc/nuts "
                         "runs can be resumed")
    names = {f.name for f in dataclasses.fields(FitConfig)}
    config = FitConfig(**{name: stored[name] for name in names if name in stored} | overrides)
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


def sample_from_args(args, seed: int = 0) -> Sample:
    """The reconstruction problem the command line asks for (``seed`` seeds simulated noise)."""
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
    if args.image:
        truth = load_image(args.image, size=args.size)
        return simulate(truth, views or 20, seed=seed, name=Path(args.image).stem, **noise)
    if args.sinogram:
        return sinogram_sample(args.sinogram, args.size)
    return phantom_sample(args.phantom, views or 20, args.size or 128, **noise)


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
    p.add_argument("--resume", type=Path,
                   help="continue an interrupted hmc/nuts run file (its data and configuration; "
                        "only --threads and --checkpoint-every may change)")
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
            sample, resumed = sample_from_args(args, config.seed), None
        mcmc = config.inference in MCMC
        if mcmc:
            print(f"{config.inference}: {config.chains} chain(s) of {config.warmup} warmup + "
                  f"{config.draws} x {config.thin} transitions, "
                  f"{config.threads or torch.get_num_threads()} torch "
                  f"thread(s), device {config.device}", flush=True)
        told = config.inference in (*MCMC, "ensemble")
        if config.inference == "ensemble":  # finished members wait in OUT.members/
            idata = fit_ensemble(sample, config, members, progress=not args.quiet,
                                 store=members_dir(out), rerun="continue with: "
                                 + rerun_command("bayes_inr.fit", argv))
        else:
            idata = fit(sample, config, progress=not args.quiet, out=out if mcmc else None,
                        resume=resumed)
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
