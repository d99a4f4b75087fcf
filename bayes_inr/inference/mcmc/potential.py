"""The potential of HMC/NUTS on one flat parameter vector.

The potential ``U(theta) = -log p(theta, sinogram)`` (:class:`FlatPotential`) is
written on one flat vector ``theta``: the model's latent sites in the order of
``model.inr.param_shapes()``, then ``log sigma`` when sigma is inferred. It is the
Pyro model's log joint (:class:`~bayes_inr.model.ctmodel.CTModel`) computed in one fused
pass: render every pixel, project with a sparse CSR mat-vec, Gaussian log density,
prior (in closed form on the flat vector when every prior is Normal, else the sites'
``log_prob``), TV. Its gradient is written by hand (:meth:`FlatPotential.value_and_grad`:
the network by :meth:`~bayes_inr.model.inr.INR.render_vjp`, the projection's adjoint by the
stored CSR transpose), faster than autograd and than ``torch.compile`` of the autograd
version (``analysis/bench_hmc.py``); the network's (pixels, width) matrices, theta and the
gradient live in buffers kept from one evaluation to the next. For an inferred sigma, the
LogNormal(log sigma0, 1) prior on sigma is, with the Jacobian of ``sigma = exp(u)``, a
Normal(log sigma0, 1) on ``u = log sigma``: ``U`` equals minus the model trace's
``log_prob_sum()`` minus ``u``.
"""

from __future__ import annotations

import math

import numpy as np
import pyro
import pyro.distributions as dist
import torch

from ...core.errors import InputError
from ...model.ctmodel import CTModel, total_variation

SITE = "theta"
"""The name of the flat parameter vector as Pyro's kernels see it."""
RENDER_CHUNK = 32


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
        return grad_output.to(grad.dtype) * grad, None


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

    def __reduce__(self):
        # pickled as its model and rebuilt: the buffers' views of theta and the gradient
        # would not survive pickling (worker processes receive potentials)
        return type(self), (self.model,)

    @property
    def priors(self) -> dict:
        """The prior distribution of every latent site, by site name."""
        return self._priors

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

        ``U`` is a float64 scalar, its sums accumulated in double precision: the sampler's
        energy differences are of order one while ``U`` may be of order 1e6, beyond float32's
        resolution. The gradient has the model's dtype.

        The likelihood, sigma's prior and a Normal weight prior are differentiated in
        closed form and the network by :meth:`~bayes_inr.model.inr.INR.render_vjp`; only the
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
        rss, m = residual.double().square().sum(), residual.numel()  # float64: see above
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
            value = value + 0.5 * z.double().square().sum()
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
            tv = total_variation(image, self.model.tv_norm, self.model.tv_smoothing)
            value = value + self.model.tv_weight * tv
        grad_w, grad_image = torch.autograd.grad(value, (weights, image), allow_unused=True,
                                                 materialize_grads=True)
        return value.detach(), grad_w, grad_image

    @torch.no_grad()
    def images(self, thetas: torch.Tensor, chunk: int = RENDER_CHUNK) -> np.ndarray:
        """Images (S, N, N) of flat draws (S, dim), rendered ``chunk`` draws per pass."""
        out = [self.model.inr.render(self.unflatten(thetas[i:i + chunk].to(self.device,
                                                                          self.dtype)))
               for i in range(0, thetas.shape[0], chunk)]
        return torch.cat(out).cpu().numpy()
