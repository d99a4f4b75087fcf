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
import shutil
import signal
import sys
from pathlib import Path

import numpy as np
import torch

from . import posterior
from .core.errors import InputError
from .core.outputs import check_output, output_lock
from .core.provenance import config_hash
from .core.workers import raise_interrupt, rerun_command, threads_per_worker
from .data.benchmark import benchmark_sample, is_real_ct, load_benchmark
from .data.images import air_level, load_image, npy_error
from .data.sample import Sample, phantom_sample, simulate
from .evaluation import convergence, misfit
from .evaluation.metrics import calibration_table, score, score_table
from .evaluation.recalibration import apply, load_calibration
from .inference.config import FitConfig, field_help, load_config
from .inference.ensemble import fit_ensemble, member_scores, members_dir, method_label
from .inference.fit import fit
from .inference.mcmc.summary import diagnostics
from .inference.method import family_of, get_method
from .inference.single import check_model_memory, resume_inputs
from .inference.svi import checkpoint_path
from .model.catalog import validated
from .physics.geometry import Geometry
from .physics.radon import RadonOperator


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
        return simulate(truth, views, seed=config.seed, name=Path(args.image).stem,
                        air_level=air_level(args.image), **noise)
    return phantom_sample(args.phantom, views, args.size or 128, **noise)


def choose_config(args, overrides: dict) -> FitConfig:
    """The configuration of a fresh fit, with the command line's hyperparameters
    ``overrides`` on top: ``--config`` (a file or a shipped name; ``none``: the bare
    defaults of :class:`FitConfig`, which are also the ensemble's own with
    ``--member-configs``), else the shipped configuration validated for the method at the
    view count nearest the problem's (:func:`bayes_inr.model.catalog.validated`), which is
    announced on stdout. An image, a measured sinogram or a real-CT benchmark is real data
    (:func:`~bayes_inr.data.benchmark.is_real_ct`): there a method's configurations chosen
    on the real-CT slices (``models/METHOD_real_VIEWS.toml``) win ties on view count."""
    if args.config is not None:
        if str(args.config) == "none":
            return FitConfig(**overrides)
        return load_config(args.config, **overrides)
    if args.member_configs:  # the members bring their configurations
        return FitConfig(**overrides)
    method = get_method(overrides.get("inference", FitConfig.inference))
    views = requested_views(args)
    real = bool(args.image or args.sinogram) or bool(args.dataset) and is_real_ct(args.dataset)
    data = "real" if real else None
    for name in method.shipped_names(overrides):
        shipped = validated(name, views, data)
        if shipped is not None:
            print(f"config: {shipped} (shipped, validated on the validation split; for "
                  f"{views} views{' of real data' if data else ''}; --config none gives the "
                  "bare defaults)", flush=True)
            return load_config(shipped, **{"inference": method.name} | overrides)
    print(f"config: the bare defaults (no shipped configuration for {method.name})",
          flush=True)
    return FitConfig(**overrides)


def requested_views(args) -> int:
    """The number of views of the problem the command line asks for."""
    if args.sinogram and not args.views:
        try:  # the header only
            return int(np.load(args.sinogram, mmap_mode="r", allow_pickle=False).shape[0])
        except (ValueError, OSError, IndexError):
            return 20  # sample_from_args says what is wrong with the file
    return args.views or 20


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
                        "bayes_inr.configs lists them), a TOML file, or none for the bare "
                        "defaults below (default: the shipped configuration validated for "
                        "the method at the nearest view count)")
    p.add_argument("--out", type=Path,
                   help="output InferenceData file (default run.nc; with --resume that file)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out file (refused otherwise)")
    p.add_argument("--resume", type=Path, metavar="OUT",
                   help="continue an interrupted fit from its data and configuration (only "
                        "--threads, --workers and --checkpoint-every may change): the "
                        "checkpoint .OUT.ckpt of a map/bbb/mcd fit if there is one, else the "
                        "hmc/nuts run file OUT")
    p.add_argument("--member-configs", type=Path, nargs="+", metavar="TOML",
                   help="ensemble members, one TOML config each (e.g. the top N of a sweep, "
                        "python -m bayes_inr.sweep --rank); implies --inference ensemble")
    p.add_argument("--calibration", type=Path, metavar="FILE",
                   help="a calibration file of this method, configuration and view count "
                        "(python -m bayes_inr.recalibration fit): the run's recalibrated "
                        "predictive is also written, to OUT_recal.nc, and scored beside it")
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


def recalibrated_path(out: Path) -> Path:
    """Where ``--calibration`` writes the recalibrated predictive of the run ``out``."""
    return out.with_name(f"{out.stem}_recal.nc")


def check_calibration(path: Path, config: FitConfig, sample: Sample) -> None:
    """Refuse (:class:`InputError`), before the fit, a calibration file of another method,
    view count (an ensemble's ``DE-N``: its member count) or image size, or (single fits)
    of another configuration than ``config``; the run itself is checked again when the
    calibration is applied."""
    calibration, _ = load_calibration(path)
    mixture = family_of(config.inference) == "mixture"
    now = {"method": method_label(config.members) if mixture else config.inference,
           "views": sample.geometry.n_views, "shape": tuple(sample.geometry.image_shape)}
    if not mixture:
        now["config_hash"] = config_hash(config)
    for key, value in now.items():
        stored = getattr(calibration, key)
        if (tuple(stored) if key == "shape" else stored) != value:
            raise InputError(f"--calibration {path} calibrates {key} {stored}, this fit has "
                             f"{value}: it calibrates another predictive")


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
            config = choose_config(args, overrides)
            sample, resumed = sample_from_args(args, config), None
        if args.calibration:
            check_output(recalibrated_path(out), overwrite=args.overwrite,
                         exists_ok=resuming_in_place, what="the recalibrated run")
            check_calibration(args.calibration, config, sample)
        mcmc = family_of(config.inference) == "mcmc"
        if mcmc:
            workers = min(config.workers, config.chains)
            where = (f"{config.threads or torch.get_num_threads()} torch thread(s)"
                     if workers == 1 else f"{workers} worker processes x "
                     f"{threads_per_worker(workers, config.threads)} torch thread(s)")
            print(f"{config.inference}: {config.chains} chain(s) of {config.warmup} warmup + "
                  f"{config.draws} x {config.thin} transitions, {where}, device "
                  f"{config.device}", flush=True)
        told = True  # fit and fit_ensemble say what they kept
        if config.inference == "ensemble":  # finished members wait in OUT.members/
            idata = fit_ensemble(sample, config, members, progress=not args.quiet,
                                 store=members_dir(out), rerun="continue with: "
                                 + rerun_command("bayes_inr.fit", argv))
        else:
            idata = fit(sample, config, progress=not args.quiet, out=out, resume=resumed)
        if family_of(config.inference) != "svi":  # SVI saved its run, removed .OUT.ckpt
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
    start = posterior.config(idata)
    if "start_misfit_ratio" in start:
        print(f"start at the TV image: data misfit {start['start_misfit_ratio']:.2f} x the TV "
              f"image's (fit {start['start_chosen'] + 1} of start_tries "
              f"{start['start_tries']}; a slow fit leaves several times more)")
    if mcmc:
        print(diagnostics(idata))
        for line in convergence.sampler_warnings(idata):
            print(f"warning: {line}", file=sys.stderr)
    if config.inference == "ensemble":
        for line in misfit.poor_member_warnings(idata, RadonOperator(sample.geometry)):
            print(f"warning: {line}", file=sys.stderr)
    if sample.ground_truth is not None:
        rows = member_scores(idata) if config.inference == "ensemble" else []
        scores = score(idata)
        print(score_table([*rows, scores]))
        if scores["n_draws"] >= 2:
            print(f"\ncalibration by pixel set (object: true value > "
                  f"{scores['air_level']:g}, the air level; {scores['n_draws']} draws):")
            print(calibration_table(scores))
    if args.calibration:
        try:
            recalibrated = apply(idata, args.calibration)
        except InputError as err:
            print(f"error: {err} (the run itself is in {out})", file=sys.stderr)
            return 2
        posterior.save(recalibrated, recalibrated_path(out))
        print(f"\nwrote {recalibrated_path(out)} (the recalibrated predictive)")
        if sample.ground_truth is not None:
            print("calibration by pixel set, recalibrated (its guarantee covers the object "
                  "pixels only):")
            print(calibration_table(score(recalibrated)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
