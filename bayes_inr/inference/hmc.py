"""Hamiltonian Monte Carlo and NUTS with Pyro's kernels on one flat parameter vector.

The potential ``U(theta) = -log p(theta, sinogram)`` (:class:`FlatPotential`) is
written on one flat vector ``theta``: the model's latent sites in the order of
``model.inr.param_shapes()``, then ``log sigma`` when sigma is inferred. It is the
Pyro model's log joint (:class:`~bayes_inr.model.CTModel`) computed in one fused
pass: render every pixel, project with a sparse CSR mat-vec, Gaussian log density,
prior (in closed form on the flat vector when every prior is Normal, else the sites'
``log_prob``), TV. Its gradient is written by hand (:meth:`FlatPotential.value_and_grad`:
the network by :meth:`~bayes_inr.inr.INR.render_vjp`, the projection's adjoint by the
stored CSR transpose), faster than autograd and than ``torch.compile`` of the autograd
version (``analysis/bench_hmc.py``); the network's (pixels, width) matrices, theta and the
gradient live in buffers kept from one evaluation to the next. For an inferred sigma, the
LogNormal(log sigma0, 1) prior on sigma is, with the Jacobian of ``sigma = exp(u)``, a
Normal(log sigma0, 1) on ``u = log sigma``: ``U`` equals minus the model trace's
``log_prob_sum()`` minus ``u``.

Pyro's :class:`~pyro.infer.mcmc.HMC` and :class:`~pyro.infer.mcmc.NUTS` kernels run
on that potential (``potential_fn`` route) under :class:`~pyro.infer.mcmc.MCMC`,
one ``MCMC`` per chain, chains one after the other in this process (Pyro's
multiprocessing would need a CPU per chain and loses the per-draw hook). Small
subclasses add what Pyro lacks:

- per-transition statistics under ArviZ's names (:data:`STATS`): ``diverging``,
  ``step_size`` (used by the transition), ``acceptance_rate`` (HMC: the Metropolis
  probability; NUTS: the mean over the tree), ``n_steps`` (gradient evaluations),
  ``tree_depth`` (NUTS: ``floor(log2(n_steps)) + 1``, ArviZ's convention for
  NumPyro), ``energy`` (the Hamiltonian after the momentum draw) and ``lp``
  (``-U`` of the kept state);
- HMC with ``num_steps`` keeps that number of leapfrog steps while the step size
  adapts (Pyro itself keeps the trajectory length fixed and rescales the steps);
- a restart from a saved step size and inverse mass matrix (resume).

Warmup adapts the step size (dual averaging) and a diagonal mass matrix (Stan's
windows); ``warmup = 0`` samples with the given step size and a unit mass matrix.

Resume. Every kept draw records the chain's state: position, step size, inverse
mass matrix and the torch RNG state after that draw. A run restarted from it
(:meth:`MCMCRun.from_inference_data`) continues with adaptation off and the same
RNG stream, and gives draws identical to the uninterrupted run's on the same
device with the same torch thread count (the GEMMs' summation order can depend on
both): parameters and statistics bit for bit, except ``acceptance_rate``, which is
recovered from Pyro's running mean (equal to float64 rounding), and the images,
rendered in batches of other sizes (equal to float32 rounding). A chain interrupted
during warmup restarts from its start (same seed, so again the same draws).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, fields

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer.mcmc import HMC, MCMC, NUTS

from .. import convergence, posterior
from ..errors import InputError, check_choice
from ..model import CTModel, total_variation
from ..radon import projection_matrix

KERNELS = ("hmc", "nuts")
STATS = ("diverging", "step_size", "acceptance_rate", "n_steps", "tree_depth", "energy", "lp")
SITE = "theta"
RENDER_CHUNK = 32
STATE_PREFIX = "mcmc_"


# ----------------------------------------------------------------------------- potential


class _Potential(torch.autograd.Function):
    """``U(theta)`` whose backward returns the gradient computed with it, by hand."""

    @staticmethod
    def forward(ctx, theta, potential):
        value, grad = potential.value_and_grad(theta, with_grad=ctx.needs_input_grad[0])
        ctx.save_for_backward(grad)
        return value

    @staticmethod
    def backward(ctx, grad_output):
        (grad,) = ctx.saved_tensors
        return grad_output * grad, None


class FlatPotential:
    """``U(theta) = -log p(theta, sinogram)`` of a :class:`CTModel` on one flat vector.

    Parameters
    ----------
    model : CTModel
        The model (INR or grid of pixels) with its prior, sigma and TV weight.

    Notes
    -----
    Calling the object with ``{"theta": theta}`` is Pyro's ``potential_fn``; it counts
    its calls in ``evaluations``.
    """

    def __init__(self, model: CTModel):
        self.model = model
        self.shapes = {name: tuple(shape) for name, (shape, _) in
                       model.inr.param_shapes().items()}
        self.sizes = [math.prod(shape) for shape in self.shapes.values()]
        self.n_weights = sum(self.sizes)
        self.dim = self.n_weights + int(model.infer_sigma)
        self.device, self.dtype = model.operator.device, model.operator.dtype
        with pyro.validation_enabled(False):
            self._priors = model.weight_distributions()
        self._normal = self._normal_prior()
        self._a, self._at = model.operator.matrices
        self._data = model.sinogram.reshape(-1)
        self._log_sigma0 = math.log(model.sigma)
        m = self._data.numel()
        # the terms of U that depend on neither theta nor the data
        self._constant = 0.5 * m * math.log(2 * math.pi) + (
            0.5 * math.log(2 * math.pi) if model.infer_sigma else m * self._log_sigma0)
        if self._normal is not None:
            self._constant -= self._normal[2]
        # value_and_grad's buffers, with their views as site values: the network's matrices,
        # theta and the gradient (copying a vector is cheaper than splitting it anew)
        self._workspace: dict[str, torch.Tensor] = {}
        self._theta = torch.empty(self.dim, device=self.device, dtype=self.dtype)
        self._grad = torch.empty_like(self._theta)
        self._theta_sites = self.unflatten(self._theta)
        self._grad_sites = self.unflatten(self._grad)
        self.evaluations = 0

    def _normal_prior(self) -> tuple[torch.Tensor, torch.Tensor, float] | None:
        """(loc, 1 / scale, log normaliser) over the weights when every prior is Normal."""
        bases = [getattr(prior, "base_dist", prior) for prior in self._priors.values()]
        if not all(type(base) in (dist.Normal, torch.distributions.Normal) for base in bases):
            return None
        loc = torch.cat([b.loc.expand(b.batch_shape).reshape(-1) for b in bases])
        scale = torch.cat([b.scale.expand(b.batch_shape).reshape(-1) for b in bases])
        constant = -float(scale.double().log().sum()) - 0.5 * loc.numel() * math.log(2 * math.pi)
        return loc.to(self.dtype), scale.reciprocal().to(self.dtype), constant

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Site values from ``theta`` (..., dim), leading dims kept; ``log_sigma`` last."""
        lead = theta.shape[:-1]
        parts = theta[..., : self.n_weights].split(self.sizes, dim=-1)
        params = {name: part.reshape(*lead, *shape)
                  for (name, shape), part in zip(self.shapes.items(), parts, strict=True)}
        if self.model.infer_sigma:
            params["log_sigma"] = theta[..., -1]
        return params

    def flatten(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """The flat vector of one set of site values; sigma as ``sigma`` or ``log_sigma``."""
        parts = [torch.as_tensor(params[name], dtype=self.dtype, device=self.device).reshape(-1)
                 for name in self.shapes]
        if self.model.infer_sigma:
            if "log_sigma" in params:
                log_sigma = torch.as_tensor(params["log_sigma"])
            elif "sigma" in params:
                log_sigma = torch.as_tensor(params["sigma"]).log()
            else:
                log_sigma = torch.tensor(self._log_sigma0)
            parts.append(log_sigma.to(self.device, self.dtype).reshape(1))
        return torch.cat(parts)

    def initial(self, seed: int) -> torch.Tensor:
        """The model's initial values (network init; sigma at its prior median)."""
        return self.flatten(self.model.init_params(seed))

    def energy(self, theta: torch.Tensor) -> torch.Tensor:
        """``U(theta)`` for one flat vector (dim,); differentiable (the hand-written
        gradient of :meth:`value_and_grad` is its backward)."""
        return _Potential.apply(theta, self)

    def __call__(self, z: dict[str, torch.Tensor]) -> torch.Tensor:
        self.evaluations += 1
        return self.energy(z[SITE])

    def value_and_grad(self, theta: torch.Tensor, with_grad: bool = True
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``U(theta)`` and its gradient, without an autograd graph.

        The likelihood, sigma's prior and a Normal weight prior are differentiated in
        closed form and the network by :meth:`~bayes_inr.inr.INR.render_vjp`; only the
        optional terms (TV, other priors) go through autograd, on the image and weights
        alone. Works in buffers of the object: not for concurrent use from threads.
        """
        model, nw = self.model, self.n_weights
        if theta.shape != self._theta.shape:
            raise InputError(f"theta must be one flat vector of {self.dim} values (the model's "
                             f"parameters), got shape {tuple(theta.shape)}")
        theta = self._theta.copy_(theta.detach())
        image, vjp = model.inr.render_vjp(self._theta_sites, self._workspace)
        residual = self._a @ image.reshape(-1) - self._data
        rss, m = residual.dot(residual), residual.numel()
        if model.infer_sigma:
            log_sigma = theta[-1]
            inv_var = torch.exp(-2 * log_sigma)
            # LogNormal(log sigma0, 1) on sigma times the Jacobian |d sigma / d log sigma|
            deviation = log_sigma - self._log_sigma0
            value = 0.5 * inv_var * rss + m * log_sigma + 0.5 * deviation ** 2 + self._constant
        else:
            inv_var = 1.0 / model.sigma ** 2
            value = (0.5 * inv_var) * rss + self._constant
        if self._normal is not None:
            loc, inv_scale, _ = self._normal
            z = (theta[:nw] - loc) * inv_scale
            value = value.add_(z.dot(z), alpha=0.5)
        if self._normal is None or model.tv_weight:
            extra, grad_extra, grad_image_extra = self._autograd_terms(theta, image)
            value = value + extra
        if not with_grad:
            return value, None
        grad_image = (self._at @ residual).mul_(inv_var).reshape(image.shape)
        if model.tv_weight:
            grad_image += grad_image_extra
        vjp(grad_image, self._grad_sites)
        grad = self._grad
        if model.infer_sigma:
            grad[-1] = m - inv_var * rss + deviation
        if self._normal is not None:
            grad[:nw].addcmul_(z, inv_scale)
        else:
            grad[:nw] += grad_extra
        return value, grad.clone()  # samplers keep gradients of several points

    @torch.enable_grad()
    def _autograd_terms(self, theta: torch.Tensor, image: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The TV term and a non-Normal weight prior (minus their log densities), with
        their gradients on the weights (nw,) and on the image."""
        weights = theta[: self.n_weights].clone().requires_grad_()
        image = image.detach().requires_grad_()
        value = torch.zeros((), dtype=self.dtype, device=self.device)
        if self._normal is None:
            params = self.unflatten(weights)
            value = value - sum(prior.log_prob(params[name])
                                for name, prior in self._priors.items())
        if self.model.tv_weight:
            value = value + self.model.tv_weight * total_variation(image)
        grad_w, grad_image = torch.autograd.grad(value, (weights, image), allow_unused=True,
                                                 materialize_grads=True)
        return value.detach(), grad_w, grad_image

    @torch.no_grad()
    def images(self, thetas: torch.Tensor, chunk: int = RENDER_CHUNK) -> np.ndarray:
        """Images (S, N, N) of flat draws (S, dim), rendered ``chunk`` draws per pass."""
        out = [self.model.inr.render(self.unflatten(thetas[i:i + chunk].to(self.device)))
               for i in range(0, thetas.shape[0], chunk)]
        return torch.cat(out).cpu().numpy()


# ----------------------------------------------------------------------------- kernels


class _Recorder:
    """Mixin for Pyro's HMC/NUTS: per-transition statistics and a restartable adapter."""

    def __init__(self, potential: FlatPotential, inverse_mass: torch.Tensor | None = None,
                 **kwargs):
        super().__init__(potential_fn=potential, **kwargs)
        self._potential = potential
        self._restore_inverse_mass = inverse_mass
        self._kinetic = None
        self.stats: dict = {}

    def setup(self, warmup_steps, *args, **kwargs):
        super().setup(warmup_steps, *args, **kwargs)
        if self._restore_inverse_mass is not None:
            self.mass_matrix_adapter.inverse_mass_matrix = {(SITE,): self._restore_inverse_mass}

    def _sample_r(self, name):
        r, r_unscaled = super()._sample_r(name)
        if self._kinetic is None:  # the transition's momentum (not a step-size search's)
            self._kinetic = float(self._kinetic_energy(r_unscaled))
        return r, r_unscaled

    def sample(self, params):
        step_size, evaluations = self.step_size, self._potential.evaluations
        divergences, mean_accept = len(self._divergences), self._mean_accept_prob
        start_energy = self._potential_energy_last
        self._kinetic = None
        # argument checks of the kernel's own momentum, accept and tree-merge draws cost
        # NUTS about 3 % of its time (analysis/bench_hmc.py) and guard nothing of ours
        with pyro.validation_enabled(False):
            params = super().sample(params)
        # Pyro keeps only the running mean of the acceptance probability: undo its update
        t, warmup = self._t, self._warmup_steps
        n = t - warmup if t > warmup else t
        accept = mean_accept + n * (self._mean_accept_prob - mean_accept)
        n_steps = self._potential.evaluations - evaluations
        self.stats = {
            "diverging": len(self._divergences) > divergences,
            "step_size": step_size,
            "acceptance_rate": min(max(accept, 0.0), 1.0),
            "n_steps": n_steps,
            "energy": self._kinetic + float(start_energy),
            "lp": -float(self._potential_energy_last),
        }
        if isinstance(self, NUTS):
            self.stats["tree_depth"] = n_steps.bit_length()
        return params


class _HMC(_Recorder, HMC):
    """Pyro's HMC; a given ``num_steps`` stays fixed while the step size adapts."""

    def __init__(self, potential, *, num_steps: int = 0, trajectory_length: float = 0.0,
                 **kwargs):
        super().__init__(potential, num_steps=num_steps or None,
                         trajectory_length=None if num_steps else trajectory_length, **kwargs)
        self._fixed_steps = num_steps

    @property
    def num_steps(self) -> int:
        return self._fixed_steps or max(1, int(self.trajectory_length / self.step_size))


class _NUTS(_Recorder, NUTS):
    """Pyro's NUTS (multinomial sampling) with statistics."""


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class MCMCSettings:
    """Sampler settings (the fields of :class:`~bayes_inr.config.FitConfig` of that name)."""

    kernel: str = "nuts"
    draws: int = 100
    warmup: int = 500
    thin: int = 1
    chains: int = 1
    step_size: float = 1.0
    num_steps: int = 20
    trajectory_length: float = 0.0
    max_tree_depth: int = 8
    target_accept: float = 0.8
    seed: int = 0
    checkpoint_every: int = 100
    save_params: bool = False

    def __post_init__(self):
        check_choice("kernel", self.kernel, KERNELS)
        for name in ("draws", "thin", "chains", "max_tree_depth", "checkpoint_every"):
            if getattr(self, name) <= 0:
                raise InputError(f"{name} must be positive, got {getattr(self, name)}")
        if self.warmup < 0 or self.num_steps < 0 or self.trajectory_length < 0:
            raise InputError("warmup, num_steps and trajectory_length must be non-negative")
        if self.kernel == "hmc" and not (self.num_steps or self.trajectory_length):
            raise InputError("hmc needs num_steps > 0 or trajectory_length > 0")
        if not self.step_size > 0 or not 0 < self.target_accept < 1:
            raise InputError("step_size must be positive and target_accept in (0, 1)")

    @classmethod
    def from_config(cls, config) -> MCMCSettings:
        """Settings from a :class:`~bayes_inr.config.FitConfig` (``kernel = inference``)."""
        names = [f.name for f in fields(cls) if f.name != "kernel"]
        return cls(kernel=config.inference, **{name: getattr(config, name) for name in names})


def chain_seed(seed: int, chain: int) -> int:
    """The RNG seed of one chain: independent streams for (seed, chain)."""
    return int(np.random.SeedSequence([seed, chain]).generate_state(1)[0])


def make_kernel(settings: MCMCSettings, potential: FlatPotential, state: ChainState | None = None):
    """The Pyro kernel of ``settings``; with ``state``, restarted there without adaptation."""
    adapt = state is None and settings.warmup > 0
    common = {"step_size": state.step_size if state else settings.step_size,
              "adapt_step_size": adapt, "adapt_mass_matrix": adapt,
              "target_accept_prob": settings.target_accept,
              "inverse_mass": state.inverse_mass if state else None}
    if settings.kernel == "nuts":
        return _NUTS(potential, max_tree_depth=settings.max_tree_depth, **common)
    return _HMC(potential, num_steps=settings.num_steps,
                trajectory_length=settings.trajectory_length, **common)


# ----------------------------------------------------------------------------- chains


@dataclass
class ChainState:
    """What a chain needs to continue after a kept draw."""

    theta: torch.Tensor
    step_size: float
    inverse_mass: torch.Tensor
    rng: torch.Tensor
    rng_cuda: torch.Tensor | None = None

    @classmethod
    def capture(cls, theta: torch.Tensor, kernel) -> ChainState:
        cuda = theta.device.type == "cuda"
        return cls(theta.detach().clone(), float(kernel.step_size),
                   kernel.inverse_mass_matrix[(SITE,)], torch.get_rng_state(),
                   torch.cuda.get_rng_state(theta.device) if cuda else None)

    def restore_rng(self, device: torch.device) -> None:
        torch.set_rng_state(self.rng)
        if self.rng_cuda is not None:
            torch.cuda.set_rng_state(self.rng_cuda, device)


@dataclass
class Chain:
    """The kept draws of one chain: images, statistics, optional parameters, state."""

    init: torch.Tensor
    images: list[np.ndarray] = field(default_factory=list)
    stats: dict[str, list] = field(default_factory=dict)
    log_sigma: list[float] = field(default_factory=list)
    params: list[torch.Tensor] = field(default_factory=list)
    pending: list[torch.Tensor] = field(default_factory=list)
    state: ChainState | None = None
    seconds: float = 0.0

    @property
    def draws(self) -> int:
        return sum(len(chunk) for chunk in self.images) + len(self.pending)

    def keep(self, theta: torch.Tensor, kernel, infer_sigma: bool) -> None:
        self.state = ChainState.capture(theta, kernel)
        self.pending.append(self.state.theta)
        for name, value in kernel.stats.items():
            self.stats.setdefault(name, []).append(value)
        if infer_sigma:
            self.log_sigma.append(float(theta[-1]))

    def render(self, potential: FlatPotential, save_params: bool) -> None:
        """Render the pending draws in batches (and keep them as parameters if asked)."""
        if not self.pending:
            return
        thetas = torch.stack(self.pending)
        self.images.append(potential.images(thetas))
        if save_params:
            self.params.append(thetas.cpu())
        self.pending = []


class MCMCRun:
    """HMC/NUTS chains of one model: run, checkpoint, resume, InferenceData.

    Parameters
    ----------
    potential : FlatPotential
    settings : MCMCSettings
    inits : torch.Tensor
        Start points (chains, dim).
    """

    def __init__(self, potential: FlatPotential, settings: MCMCSettings, inits: torch.Tensor):
        if inits.shape != (settings.chains, potential.dim):
            raise InputError(f"initial points have shape {tuple(inits.shape)}, expected "
                             f"({settings.chains}, {potential.dim})")
        self.potential = potential
        self.settings = settings
        self.chains = [Chain(init.to(potential.device, potential.dtype)) for init in inits]

    @property
    def complete(self) -> bool:
        return all(chain.draws >= self.settings.draws for chain in self.chains)

    def run(self, progress: bool = True,
            checkpoint: Callable[[MCMCRun], None] | None = None) -> None:
        """Run every chain to ``settings.draws`` kept draws, one chain after another.

        ``checkpoint(self)`` is called every ``checkpoint_every`` kept draws and when a
        chain ends. An exception (KeyboardInterrupt included) propagates after the
        draws so far are kept: call ``checkpoint`` then to save them.
        """
        for index, chain in enumerate(self.chains):
            if chain.draws < self.settings.draws:
                self._run_chain(index, chain, progress, checkpoint)

    def _run_chain(self, index: int, chain: Chain, progress: bool, checkpoint) -> None:
        s, potential = self.settings, self.potential
        infer_sigma = potential.model.infer_sigma
        if chain.state is not None:
            chain.state.restore_rng(potential.device)
            start, warmup = chain.state.theta, 0
        else:
            pyro.set_rng_seed(chain_seed(s.seed, index))
            start, warmup = chain.init, s.warmup
        kernel = make_kernel(s, potential, chain.state)

        def hook(kernel, params, stage, i):
            if stage.startswith("Sample") and (i + 1) % s.thin == 0:
                chain.keep(params[SITE], kernel, infer_sigma)
                if checkpoint and chain.draws % s.checkpoint_every == 0:
                    checkpoint(self)

        mcmc = MCMC(kernel, num_samples=(s.draws - chain.draws) * s.thin, warmup_steps=warmup,
                    initial_params={SITE: start}, hook_fn=hook, disable_progbar=not progress,
                    save_params=[])
        begin = time.perf_counter()
        try:
            mcmc.run()
        finally:
            chain.seconds += time.perf_counter() - begin
        if checkpoint and chain.draws % s.checkpoint_every:
            checkpoint(self)

    # ------------------------------------------------------------------------- output

    def inference_data(self, **meta):
        """The draws so far as InferenceData (None before the first kept draw).

        ``meta`` goes to :func:`bayes_inr.posterior.build` (``sinogram``, ``angles``,
        ``method``, ``config``, ...), with the model's operator and sigma (per draw when
        inferred): the log-likelihood, replicated sinograms and ``posterior.pixel`` (the
        diagnostics' pixels) come with them. Chains without draws
        are left out (a partial run's chains may then have different lengths: see
        ``posterior.build``).
        """
        s, potential = self.settings, self.potential
        for chain in self.chains:
            chain.render(potential, s.save_params)
        started = [chain for chain in self.chains if chain.draws]
        if not started:
            return None
        images = [np.concatenate(chain.images) for chain in started]
        stats = {name: [np.asarray(chain.stats[name]) for chain in started]
                 for name in STATS if name in started[0].stats}
        draws = {}
        if potential.model.infer_sigma:
            draws["sigma"] = [np.exp(np.asarray(chain.log_sigma)) for chain in started]
        if s.save_params:
            for name, value in potential.unflatten(torch.cat(
                    [torch.cat(chain.params) for chain in started])).items():
                values = value.numpy()
                splits = np.cumsum([chain.draws for chain in started])[:-1]
                draws.setdefault(name, []).extend(np.split(values, splits))
            draws.pop("log_sigma", None)
        model = potential.model
        return posterior.build(images, sample_stats=stats, posterior=draws,
                               extra_constant=self._state_arrays(), forward=model.operator,
                               sigma=draws["sigma"] if model.infer_sigma else model.sigma,
                               **meta)

    def _state_arrays(self) -> dict:
        """The resume state as ``constant_data`` arrays (dims ``mcmc_chain``, ``param``)."""
        dim, chains = self.potential.dim, self.chains
        theta = np.full((len(chains), dim), np.nan, np.float32)
        inverse_mass = np.full((len(chains), dim), np.nan, np.float32)
        step_size = np.full(len(chains), np.nan)
        rng = np.zeros((len(chains), torch.get_rng_state().numel()), np.uint8)
        for i, chain in enumerate(chains):
            if chain.state is not None:
                theta[i] = chain.state.theta.cpu().numpy()
                inverse_mass[i] = chain.state.inverse_mass.cpu().numpy()
                step_size[i] = chain.state.step_size
                rng[i] = chain.state.rng.numpy()
        out = {"init": (("mcmc_chain", "param"), torch.stack(
                   [chain.init for chain in chains]).cpu().numpy()),
               "theta": (("mcmc_chain", "param"), theta),
               "inverse_mass": (("mcmc_chain", "param"), inverse_mass),
               "step_size": (("mcmc_chain",), step_size),
               "rng": (("mcmc_chain", "rng_byte"), rng),
               "draws": (("mcmc_chain",), np.array([c.draws for c in chains], np.int64)),
               "seconds": (("mcmc_chain",), np.array([c.seconds for c in chains]))}
        cuda = [chain.state.rng_cuda for chain in chains
                if chain.state is not None and chain.state.rng_cuda is not None]
        if cuda:
            rng_cuda = np.zeros((len(chains), cuda[0].numel()), np.uint8)
            for i, chain in enumerate(chains):
                if chain.state is not None and chain.state.rng_cuda is not None:
                    rng_cuda[i] = chain.state.rng_cuda.numpy()
            out["rng_cuda"] = (("mcmc_chain", "rng_cuda_byte"), rng_cuda)
        return {STATE_PREFIX + name: value for name, value in out.items()}

    @classmethod
    def from_inference_data(cls, potential: FlatPotential, settings: MCMCSettings,
                            idata) -> MCMCRun:
        """The run stored in ``idata`` (a file written by :meth:`inference_data`)."""
        const = getattr(idata, "constant_data", None)
        if const is None or STATE_PREFIX + "init" not in const:
            raise InputError("the file holds no hmc/nuts state (not an hmc/nuts run of this "
                             "package, or written before its first kept draw)")

        def state(name):
            return np.asarray(const[STATE_PREFIX + name].values)

        inits = torch.from_numpy(state("init"))
        if inits.shape != (settings.chains, potential.dim):
            raise InputError(f"the file's chains have {inits.shape[1]} parameters x "
                             f"{inits.shape[0]} chains; this model needs {potential.dim} x "
                             f"{settings.chains}")
        run = cls(potential, settings, inits)
        pp, post = idata.posterior_predictive, getattr(idata, "posterior", None)
        stats = getattr(idata, "sample_stats", None)
        done = state("draws")
        stored = 0
        for i, chain in enumerate(run.chains):
            if not done[i]:
                continue
            n = int(done[i])
            chain.images = [np.asarray(pp["image"].values[stored, :n], np.float32)]
            for name in STATS:
                if stats is not None and name in stats:
                    values = np.asarray(stats[name].values[stored, :n])
                    kind = {"diverging": bool, "n_steps": int, "tree_depth": int}.get(name, float)
                    chain.stats[name] = values.astype(kind).tolist()
            if potential.model.infer_sigma:
                chain.log_sigma = np.log(np.asarray(post["sigma"].values[stored, :n])).tolist()
            if settings.save_params:
                sites = [np.asarray(post[name].values[stored, :n]).reshape(n, -1)
                         for name in potential.shapes]
                if potential.model.infer_sigma:
                    sites.append(np.asarray(chain.log_sigma)[:, None])
                chain.params = [torch.from_numpy(np.concatenate(sites, axis=1)).to(potential.dtype)]
            rng_cuda = state("rng_cuda")[i] if STATE_PREFIX + "rng_cuda" in const else None
            chain.state = ChainState(
                torch.from_numpy(state("theta")[i]).to(potential.device, potential.dtype),
                float(state("step_size")[i]),
                torch.from_numpy(state("inverse_mass")[i]).to(potential.device,
                                                                potential.dtype),
                torch.from_numpy(state("rng")[i]),
                None if rng_cuda is None else torch.from_numpy(rng_cuda))
            chain.seconds = float(state("seconds")[i])
            stored += 1
        return run


def initial_points(potential: FlatPotential, init: str, chains: int, seed: int, *,
                   steps: int = 2000, lr: float = 1e-3, lr_final: float = 0.1,
                   progress: bool = True) -> torch.Tensor:
    """Start points (chains, dim) of the chains.

    ``init="prior"``: the network's initial weights with seed ``seed + chain`` (sigma at
    its prior median). ``"map"``: a MAP fit (:func:`~bayes_inr.inference.svi.fit_svi`,
    ``steps`` Adam steps) from each of those, so that chains start at different
    optima. A path to a saved hmc/nuts run: that run's last draws, chain by chain
    (cycled when it has fewer chains).
    """
    from .svi import DivergenceError, fit_svi

    if init.endswith(".nc"):
        last = last_draws(posterior.load(init))
        if last.shape[1] != potential.dim:
            raise InputError(f"{init} holds {last.shape[1]} parameters per draw; this model "
                             f"has {potential.dim}")
        return last[torch.arange(chains) % last.shape[0]]
    check_choice("init", init, ("map", "prior"))
    points = []
    for chain in range(chains):
        values = potential.model.init_params(seed + chain)
        if init == "map":
            try:
                guide = fit_svi(potential.model, "map", values, steps=steps, lr=lr,
                                lr_final=lr_final, progress=progress).guide
            except DivergenceError as err:
                warnings.warn(f"MAP warm start of chain {chain}: {err}", stacklevel=2)
                guide = err.result.guide
            values = {name: value.detach() for name, value in guide.median().items()}
        points.append(potential.flatten(values))
    return torch.stack(points)


def last_draws(idata) -> torch.Tensor:
    """The last kept position of every chain of a saved hmc/nuts run (chains, dim)."""
    const = getattr(idata, "constant_data", None)
    if const is None or STATE_PREFIX + "theta" not in const:
        raise InputError("the init file is not an hmc/nuts run of this package")
    theta = np.asarray(const[STATE_PREFIX + "theta"].values)
    theta = theta[~np.isnan(theta).any(axis=1)]
    if not len(theta):
        raise InputError("the init file has no kept draws")
    return torch.from_numpy(theta)


# ----------------------------------------------------------------------------- exact check


def exact_posterior(potential: FlatPotential) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel posterior mean and standard deviation (N, N) of a linear-Gaussian model.

    With a linear image map (a depth-0 INR with a linear head: fixed random Fourier
    features and a linear read-out; or a grid of pixels with the linear link), Normal
    priors, a fixed sigma and no TV, the model is Bayesian linear regression through
    the Radon operator: with ``image = F theta + c`` and ``J = A F``, the posterior of
    ``theta`` is Gaussian with precision ``J^T J / sigma^2 + diag(1 / s^2)``. Computed
    in float64.
    """
    model = potential.model
    priors = [prior.base_dist if hasattr(prior, "base_dist") else prior
              for prior in potential._priors.values()]
    if (model.infer_sigma or model.tv_weight
            or not all(isinstance(p, torch.distributions.Normal) for p in priors)):
        raise InputError("the exact posterior needs Normal priors, a fixed sigma and no TV")
    with torch.no_grad():
        dim = potential.dim
        basis = torch.eye(dim + 1, dim, dtype=potential.dtype, device=potential.device)
        basis[dim] = 0.0
        images = model.inr.render(potential.unflatten(basis)).double().reshape(dim + 1, -1)
        offset, columns = images[dim], images[:dim] - images[dim]
        probe = torch.randn(2, dim, generator=torch.Generator().manual_seed(0)).to(basis)
        ends = model.inr.render(potential.unflatten(torch.cat([probe, probe.sum(0, True)])))
        ends = ends.double().reshape(3, -1)
        if not torch.allclose(ends[0] + ends[1] - offset, ends[2], rtol=1e-4, atol=1e-4):
            raise InputError("the exact posterior needs a linear image map (depth 0 with a "
                             "linear head, or a pixel grid with the linear link)")
        matrix = torch.from_numpy(projection_matrix(model.operator.geometry,
                                                    model.operator.projector).toarray()).double()
        jac = matrix @ columns.T.cpu()                                     # (M, dim)
        loc = torch.cat([p.loc.expand(p.batch_shape).reshape(-1) for p in priors]).double().cpu()
        scale = torch.cat([p.scale.expand(p.batch_shape).reshape(-1) for p in priors]).double()
        residual = model.sinogram.double().reshape(-1).cpu() - matrix @ offset.cpu()
        precision = jac.T @ jac / model.sigma ** 2 + torch.diag(scale.cpu() ** -2)
        chol = torch.linalg.cholesky(precision)
        rhs = jac.T @ residual / model.sigma ** 2 + loc / scale.cpu() ** 2
        mean = torch.cholesky_solve(rhs[:, None], chol)[:, 0]
        pixel_mean = columns.T.cpu() @ mean + offset.cpu()
        whitened = torch.linalg.solve_triangular(chol, columns.cpu(), upper=False)
        pixel_sd = whitened.square().sum(0).sqrt()
    shape = model.inr.shape
    return pixel_mean.reshape(shape).numpy(), pixel_sd.reshape(shape).numpy()


# ----------------------------------------------------------------------------- diagnostics


def diagnostics(idata, rows: int = 5) -> str:
    """R-hat, ESS and divergences, as a short table and a few lines.

    R-hat is :func:`bayes_inr.convergence.split_rhat` (with one chain: of its two
    halves) of every image pixel, stated as :func:`~bayes_inr.convergence.rhat_statement`
    says it; the table shows ``rows`` of the representative pixels (``posterior.pixel``)
    with their R-hat and bulk/tail ESS (NaN where ArviZ cannot tell, e.g. for a chain that
    never moved).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return _diagnostics(idata, rows)


def _diagnostics(idata, rows: int) -> str:
    import arviz as az

    pixels = idata.posterior["pixel"]
    chains = pixels.sizes["chain"]
    rhat = convergence.split_rhat(idata.posterior[["pixel"]])["pixel"].values
    bulk = az.ess(idata, var_names=["pixel"], method="bulk")["pixel"].values
    tail = az.ess(idata, var_names=["pixel"], method="tail")["pixel"].values
    labels = pixels["pixel_id"].values
    stats = idata.sample_stats
    lines = [f"{'pixel':>10} {'mean':>8} {'sd':>8} {'r_hat':>6} {'ess_bulk':>9} {'ess_tail':>9}"]
    mean, sd = pixels.mean(("chain", "draw")).values, pixels.std(("chain", "draw")).values
    for i in np.linspace(0, len(labels) - 1, rows).astype(int):
        lines.append(f"{labels[i]:>10} {mean[i]:8.4f} {sd[i]:8.4f} {rhat[i]:6.3f} "
                     f"{bulk[i]:9.1f} {tail[i]:9.1f}")
    image_rhat = convergence.split_rhat(idata.posterior_predictive[["image"]])["image"].values
    lines.append(convergence.rhat_statement(image_rhat, chains))
    n = int(stats["diverging"].count())
    lines.append(f"over the {len(labels)} representative pixels: min ess_bulk "
                 f"{np.nanmin(bulk):.1f}, median ess_bulk {np.nanmedian(bulk):.1f}")
    depth = (f", mean tree depth {float(stats['tree_depth'].mean()):.1f}"
             if "tree_depth" in stats else "")
    lines.append(f"divergences {int(stats['diverging'].sum())} of {n} draws, "
                 f"mean acceptance {float(stats['acceptance_rate'].mean()):.3f}, "
                 f"mean leapfrog steps {float(stats['n_steps'].mean()):.1f}{depth}")
    moved = pixels.std("draw").max("pixel_id").values
    accepted = stats["acceptance_rate"].mean("draw").values
    for chain in np.flatnonzero((moved == 0) | (accepted < 0.05)):
        lines.append(f"warning: chain {chain} barely moves (mean acceptance "
                     f"{accepted[chain]:.3f}): its R-hat and ESS are not to be trusted")
    return "\n".join(lines)
