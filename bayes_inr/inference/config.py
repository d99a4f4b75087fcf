"""Fit configurations: one flat dataclass, TOML files (shipped ones under ``models/``, see
:mod:`bayes_inr.configs`), CLI overrides."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..core.errors import InputError, check_choice
from ..model.catalog import resolve
from ..model.ctmodel import DROPOUT_SCOPES, check_dropout
from ..model.inr import Architecture
from ..model.priors import as_prior
from .mcmc.settings import MASS_MATRICES
from .method import get_method, method_names, methods_help

MODELS = ("inr", "gop")
TV_UNITS = ("factor", "objective")
INITS = ("map", "prior", "tv")


def _field(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class FitConfig:
    """Every hyperparameter of a fit; each field's help is the CLI's help text."""

    inference: str = _field("mcd", "inference method, one of")
    model: str = _field("inr", "image model: inr (the network) or gop (grid of pixels: the "
                        "image itself, head sigmoid for a sigmoid link)")
    depth: int = _field(3, "hidden layers of the MLP")
    width: int = _field(128, "units per hidden layer")
    omega0: float = _field(2.0, "std of the Gaussian Fourier matrix (the paper's RFF frequency)")
    n_features: int = _field(0, "Fourier frequencies m (embedding 2m); 0 means width // 2")
    activation: str = _field("relu", "relu, silu, sine, softplus or tanh")
    head: str = _field("linear", "output head: linear, sigmoid, or clipped_sigmoid (the sigmoid "
                       "stretched by 1 % on both sides and clipped to [0, 1], so that an image "
                       "can be exactly 0, like air, or 1)")
    sine_w0: float = _field(1.0, "frequency factor of the sine activation")
    prior: str = _field("normal:1.0",
                        "weight prior: normal:SCALE, fan_in_normal:TAU, laplace:SCALE, "
                        "logistic:SCALE, or a Python prior by importable name, module:function")
    sigma: float = _field(0.0, "noise std of the sinogram likelihood; 0 = the data's, else 0.01")
    infer_sigma: bool = _field(False, "give sigma a LogNormal(log sigma, 1) prior and infer it")
    tv_weight: float = _field(0.0, "weight of the total-variation factor (btv: the weight w of "
                              "the TV objective ||A x - p||^2 / 2 + w TV(x))")
    tv_units: str = _field("factor", "units of tv_weight for map/bbb/mcd/hmc/nuts: factor (the "
                           "posterior's factor exp(-tv_weight TV(x))) or objective (the weight w "
                           "of TV's objective, factor w / sigma^2: the balance of data and TV "
                           "then does not depend on sigma); btv: always objective")
    tv_smoothing: float = _field(0.0, "smoothing eps of the TV factor: each pixel "
                                 "difference d counts sqrt(d^2 + eps^2) - eps, so the factor "
                                 "has a curvature (1 / eps at flat spots) and no kinks; 0: "
                                 "exact anisotropic TV (btv: isotropic, eps 1e-6)")
    steps: int = _field(2000, "optimisation steps (SVI, the MAP warm start of hmc/nuts, the "
                        "TV solver of hmc/nuts init tv)")
    lr: float = _field(1e-3, "initial Adam learning rate")
    lr_final: float = _field(0.1, "final learning rate as a fraction of lr (exponential decay)")
    dropout: float = _field(0.1, "MCD: probability p of dropping a hidden unit")
    dropout_scope: str = _field("image", "MCD: image (one mask per draw: a draw is one "
                                "function) or pixel (own masks for every pixel of a draw, as "
                                "dropout on a batch of coordinates in the authors' code)")
    kl_factor: float = _field(1e-3, "BBB: factor xi on the KL term")
    init_scale: float = _field(1e-3, "BBB: initial std of the mean-field guide")
    particles: int = _field(1, "ELBO particles per step")
    draws: int = _field(100, "posterior draws to store (hmc/nuts: kept draws per chain)")
    warmup: int = _field(500, "hmc/nuts: warmup transitions per chain (step size and diagonal "
                         "mass matrix adapted; 0: no adaptation)")
    thin: int = _field(1, "hmc/nuts: keep every thin-th transition")
    chains: int = _field(1, "hmc/nuts: number of chains")
    init: str = _field("map", "start: tv (the TV solution at the model's TV factor; a network "
                       "first fitted to that image), else map/bbb/mcd start at the network "
                       "init; hmc/nuts: map (a MAP fit per chain), prior (the network init), "
                       "tv (TV with steps iterations) or a saved hmc/nuts run .nc (its last "
                       "draws)")
    start_tries: int = _field(1, "init tv: fits of the network to the TV image, the first "
                              "from the seed's initial weights, the others from other "
                              "weights; the start kept is the one whose image explains the "
                              "sinogram best (a slow fit leaves a poorer start)")
    step_size: float = _field(1.0, "hmc/nuts: initial leapfrog step size (adapted in warmup)")
    num_steps: int = _field(20, "hmc: leapfrog steps per transition, kept fixed while the step "
                            "size adapts; 0: use trajectory_length")
    trajectory_length: float = _field(0.0, "hmc with num_steps 0: fixed trajectory length "
                                      "(steps = length / step size)")
    max_tree_depth: int = _field(8, "nuts: maximum tree depth (at most 2^depth - 1 leapfrog "
                                 "steps per transition; a run saturating it is warned about)")
    target_accept: float = _field(0.8, "hmc/nuts: target acceptance probability of warmup")
    mass_matrix: str = _field("diag", "hmc/nuts: diag (adapted in warmup) or gauss_newton "
                              "(dense and fixed: the inverse Gauss-Newton precision at each "
                              "chain's start; warmup adapts the step size only)")
    save_params: bool = _field(False, "hmc/nuts: store the parameter draws in the posterior group")
    checkpoint_every: int = _field(100, "hmc/nuts: write the output file every this many "
                                   "kept draws; map/bbb/mcd: write the training state to "
                                   ".OUT.ckpt every this many steps (for --resume)")
    members: int = _field(5, "ensemble: number of members (independent fits; member k has "
                          "seed + k)")
    member_inference: str = _field("mcd", "ensemble: inference of every member")
    member_tv_spread: float = _field(1.0, "ensemble: member k's tv_weight is its config's "
                                     "times member_tv_spread ** u_k, the u_k quasi-random on "
                                     "[-1, 1) with u_0 = 0 (a log-uniform hyperprior on the TV "
                                     "weight, integrated over by the members); 1: one weight")
    workers: int = _field(1, "ensemble: parallel worker processes for the members; hmc/nuts: "
                          "for the chains (1: in this process)")
    seed: int = _field(0, "seed of the Fourier matrix, the initial weights and the sampler")
    device: str = _field("cpu", "cpu or cuda")
    threads: int = _field(0, "torch CPU threads; 0 keeps torch's default")

    def __post_init__(self):
        method = get_method(self.inference)
        check_choice("model", self.model, MODELS)
        check_choice("dropout_scope", self.dropout_scope, DROPOUT_SCOPES)
        check_choice("tv_units", self.tv_units, TV_UNITS)
        check_choice("mass_matrix", self.mass_matrix, MASS_MATRICES)
        check_dropout(self.dropout)
        check_choice("member_inference", self.member_inference, method_names(member=True))
        for name in ("steps", "draws", "particles", "thin", "chains", "max_tree_depth",
                     "checkpoint_every", "members", "workers", "start_tries"):
            if getattr(self, name) <= 0:
                raise InputError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("warmup", "num_steps", "trajectory_length"):
            if getattr(self, name) < 0:
                raise InputError(f"{name} must be non-negative, got {getattr(self, name)}")
        if not self.step_size > 0 or not 0 < self.target_accept < 1:
            raise InputError("step_size must be positive and target_accept in (0, 1)")
        if self.init not in INITS and not self.init.endswith(".nc"):
            raise InputError(f"unknown init {self.init!r}; use map, prior, tv or a run file .nc")
        if not 1 <= self.member_tv_spread < float("inf"):
            raise InputError(f"member_tv_spread must be a finite number >= 1, got "
                             f"{self.member_tv_spread}")
        if self.member_tv_spread > 1 and not (self.inference == "ensemble"
                                               and self.tv_weight > 0):
            raise InputError("member_tv_spread spreads the TV weights of an ensemble's "
                             "members: it needs --inference ensemble and --tv-weight > 0")
        if self.init == "tv" and not self.tv_weight > 0:
            raise InputError("init tv starts at the TV solution of the model's TV factor: it "
                             "needs --tv-weight > 0")
        if self.sigma < 0 or self.lr <= 0 or self.tv_weight < 0 or not self.tv_smoothing >= 0:
            raise InputError("sigma, lr, tv_weight and tv_smoothing must be non-negative "
                             "(lr positive)")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise InputError(f"unknown device {self.device!r}; use cpu or cuda")
        self.architecture()  # validates the network fields
        as_prior(self.prior)  # validates the prior spec (imports a named Python prior)
        method.check(self)

    def architecture(self) -> Architecture:
        return Architecture(self.depth, self.width, self.omega0, self.n_features,
                            self.activation, self.head, self.sine_w0)

    def replace(self, **changes) -> FitConfig:
        return dataclasses.replace(self, **changes)


def field_help() -> dict[str, str]:
    """Field name -> help text; the method choices come from the registry
    (:mod:`bayes_inr.inference.method`)."""
    helps = {f.name: f.metadata["help"] for f in fields(FitConfig)}
    helps["inference"] += " " + methods_help()
    helps["member_inference"] += ": " + ", ".join(method_names(member=True))
    return helps


def load_config(path, **overrides) -> FitConfig:
    """A :class:`FitConfig` from a TOML file (flat keys) or a shipped configuration's name
    (see :mod:`bayes_inr.configs`), then ``overrides``."""
    path = resolve(path, kind="")
    try:
        values = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"config file {path} is not valid TOML: {err}") from None
    known = {f.name: f.type for f in fields(FitConfig)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise InputError(f"config file {path} has unknown keys: {', '.join(unknown)}")
    for name, value in values.items():
        values[name] = _typed(path, name, value, known[name])
    return FitConfig(**{**values, **overrides})


_TYPE_NAMES = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false"}


def _typed(path: Path, name: str, value, kind: str):
    """``value`` as the field's type (an integer is a valid float), or one clear error."""
    ok = {"int": isinstance(value, int) and not isinstance(value, bool),
          "float": isinstance(value, (int, float)) and not isinstance(value, bool),
          "str": isinstance(value, str), "bool": isinstance(value, bool)}[kind]
    if not ok:
        raise InputError(f"config file {path}: {name} must be {_TYPE_NAMES[kind]}, got "
                         f"{value!r}")
    return float(value) if kind == "float" else value
