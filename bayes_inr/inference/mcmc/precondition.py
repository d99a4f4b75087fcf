"""A dense mass matrix from the Gauss-Newton curvature of the potential at a chain's start.

A network's posterior under a sharp likelihood is narrow along the directions the data
fix and as wide as the prior along the others, and those directions are not the
coordinate axes: a diagonal mass matrix cannot undo that, and NUTS then needs trajectories
of hundreds of tiny steps. The generalised Gauss-Newton
matrix of the potential at a point ``theta0``,

    G = J^T J / sigma^2 + P,

with ``J`` the Jacobian of the predicted sinogram ``A f(theta)`` on the weights and ``P``
the prior's precision (diagonal: ``1 / var`` of every weight's prior), is the Laplace
approximation's precision there and positive definite. Taking ``G^{-1}`` as the inverse
mass matrix makes a Gaussian posterior with that precision isotropic for the sampler. The
target is unchanged (the mass matrix only shapes the proposals), so the draws stay exact
whatever ``G`` is; a poor ``G`` only mixes worse. The sampler runs it as a unit mass matrix
on whitened coordinates (:class:`Whitened`), the same dynamics at a fraction of the cost.

A TV factor smoothed by ``eps`` (``tv_smoothing``) adds its own Gauss-Newton term,
``J_d^T diag(lambda phi''(d)) J_d`` over the image's forward differences ``d``, with
``phi(d) = sqrt(d^2 + eps^2)``: at flat spots a curvature ``lambda / eps`` that, in the
directions the projections do not see, is far stronger than the weight prior. Left out of
``G``: the exact (unsmoothed) TV's curvature, zero wherever it is differentiable, the
isotropic TV's, and the second derivatives of the network (they are what Gauss-Newton
drops, and may make the Hessian indefinite). ``log sigma``, when inferred,
gets its expected curvature ``2 m + 1`` (``m`` measurements and its Normal prior).

It works where the curvature barely changes over the posterior: a linear read-out of
Fourier features (``models/hmc_reference.toml``). On a network with a hidden layer it did
not widen NUTS's step (``analysis/reference_mass_matrix.py``), presumably because the
narrow directions turn as the weights move.

Dense: ``dim^2`` values, one vector-Jacobian product per sinogram row (and per image
difference, with a smoothed TV) plus ``dim x rows x dim`` products to build, and a
Cholesky factor; meant for the small networks of a reference posterior (:data:`MAX_DIM`).
(A batched pullback through autograd, ``is_grads_batched``, was several times slower than
the loop of hand-written products here.)
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ...core.errors import InputError
from ...model.ctmodel import CTModel
from ...model.inr import INR
from .potential import SITE, FlatPotential

MAX_DIM = 12_000
"""The largest parameter count for a dense mass matrix (1.2 GB in float64)."""
ROWS_PER_PASS = 256
"""Sinogram rows whose images ``A^T e_i`` are formed at once."""


def gauss_newton_precision(potential: FlatPotential, theta: torch.Tensor) -> torch.Tensor:
    """The Gauss-Newton precision ``G`` (dim, dim), float64, of ``potential`` at ``theta``.

    Parameters
    ----------
    potential : ~bayes_inr.inference.mcmc.potential.FlatPotential
        The potential of an INR model (the network's vector-Jacobian product builds ``J``).
    theta : torch.Tensor
        One flat parameter vector (dim,).

    Raises
    ------
    InputError
        Where :func:`check_dense` does.
    """
    _check_network(potential)
    model = potential.model
    nw = potential.n_weights
    theta = theta.detach().to(potential.device, potential.dtype)
    image, vjp = model.inr.render_vjp(potential.unflatten(theta), {})
    sigma = model.sigma if not model.infer_sigma else float(theta[-1].double().exp())
    flat = torch.empty(potential.dim, dtype=potential.dtype, device=potential.device)
    sites = potential.unflatten(flat)  # views of ``flat``: vjp writes a row of J into it
    precision = torch.zeros(potential.dim, potential.dim, dtype=torch.float64,
                            device=potential.device)
    for cotangents in _rows(model, image.detach(), sigma):
        jacobian = torch.empty(len(cotangents), nw, dtype=torch.float64,
                               device=potential.device)
        for k, row in enumerate(cotangents):
            vjp(row, sites)
            jacobian[k] = flat[:nw]
        precision[:nw, :nw].addmm_(jacobian.t(), jacobian)
    precision.diagonal()[:nw] += _prior_precision(potential)
    if model.infer_sigma:
        precision[-1, -1] = 2 * model.operator.matrices[1].shape[1] + 1
    return precision


def _rows(model: CTModel, image: torch.Tensor, sigma: float) -> Iterator[torch.Tensor]:
    """Batches (k, pixels) of the rows ``r`` of the square root ``R`` of the potential's
    Gauss-Newton curvature on the image, ``R^T R``: the sinogram rows ``A_i / sigma``, then,
    for a smoothed anisotropic TV factor, ``sqrt(lambda phi''(d)) (e_q - e_p)`` for every
    forward difference ``d = x_q - x_p`` (``phi(d) = sqrt(d^2 + eps^2)``,
    ``phi'' = eps^2 / (d^2 + eps^2)^{3/2}``). ``G``'s data and TV terms are ``J_r^T J_r``
    summed over the rows, with ``J_r`` the vector-Jacobian product of ``r``."""
    at = model.operator.matrices[1]
    m = at.shape[1]
    for start in range(0, m, ROWS_PER_PASS):
        stop = min(start + ROWS_PER_PASS, m)
        units = torch.zeros(m, stop - start, dtype=at.dtype, device=at.device)
        units[torch.arange(start, stop), torch.arange(stop - start)] = 1 / sigma
        yield (at @ units).t()  # row i of A / sigma as an image, for each i in the pass
    eps = model.tv_smoothing
    if not (model.tv_weight and eps and model.tv_norm == "anisotropic"):
        return
    n_rows, n_cols = image.shape
    for axis in (0, 1):
        d = image.diff(dim=axis)
        weight = (model.tv_weight * eps ** 2 / (d.square() + eps ** 2) ** 1.5).sqrt()
        index = torch.arange(n_rows * n_cols, device=image.device).reshape(n_rows, n_cols)
        low = index.narrow(axis, 0, index.shape[axis] - 1).reshape(-1)
        high = index.narrow(axis, 1, index.shape[axis] - 1).reshape(-1)
        weight = weight.reshape(-1)
        for start in range(0, len(low), ROWS_PER_PASS):
            stop = min(start + ROWS_PER_PASS, len(low))
            rows = torch.zeros(stop - start, n_rows * n_cols, dtype=image.dtype,
                               device=image.device)
            k = torch.arange(stop - start, device=image.device)
            rows[k, high[start:stop]] = weight[start:stop]
            rows[k, low[start:stop]] = -weight[start:stop]
            yield rows


def check_dense(potential: FlatPotential) -> None:
    """Raise :class:`InputError` unless ``potential`` can have a dense Gauss-Newton mass
    matrix: at most :data:`MAX_DIM` parameters, a network (not a pixel grid), and weight
    priors with a finite variance. Cheap: a run calls it before any work."""
    _check_network(potential)
    _prior_precision(potential)


def _check_network(potential: FlatPotential) -> None:
    """The size and model checks of :func:`check_dense`."""
    if potential.dim > MAX_DIM:
        raise InputError(f"a dense mass matrix needs at most {MAX_DIM} parameters; this model "
                         f"has {potential.dim} (use mass_matrix diag)")
    if not isinstance(potential.model.inr, INR):
        raise InputError("mass_matrix gauss_newton needs a network model (inr), not gop")


def _prior_precision(potential: FlatPotential) -> torch.Tensor:
    """``1 / var`` of every weight's prior, flat (nw,), float64."""
    parts = []
    for name, prior in potential.priors.items():
        try:
            variance = prior.variance
        except NotImplementedError:
            variance = torch.tensor(float("inf"))
        variance = variance.expand(potential.shapes[name]).reshape(-1).double()
        if not bool(torch.isfinite(variance).all()) or not bool((variance > 0).all()):
            raise InputError(f"mass_matrix gauss_newton needs weight priors with a finite "
                             f"variance; the prior of {name} has none")
        parts.append(variance.reciprocal())
    return torch.cat(parts).to(potential.device)


class Whitened:
    """The potential in whitened coordinates, ``u = L^T (theta - center)`` with ``G = L L^T``.

    HMC with a unit mass matrix on ``u`` is HMC with mass matrix ``G`` on ``theta`` (the map
    is linear, so its Jacobian is a constant and the draws of ``theta = center + L^{-T} u``
    are those of the target). Pyro's dense mass matrix would cost two float64 ``dim x dim``
    mat-vecs per leapfrog step (its momentum's velocity and unscaling); here each potential
    evaluation costs one triangular solve in the potential's dtype, and its gradient another
    (autograd's), about a quarter of the memory traffic: on the reference posterior a
    leapfrog step takes 0.66 times as long (``analysis/bench_gauss_newton.py``).

    Parameters
    ----------
    potential : ~bayes_inr.inference.mcmc.potential.FlatPotential
        The potential on ``theta``.
    center : torch.Tensor
        The chain's start (dim,), where ``G`` was taken: ``u = 0`` there.
    precision : torch.Tensor
        The Gauss-Newton precision ``G`` (dim, dim), float64
        (:func:`gauss_newton_precision`).

    Notes
    -----
    Calling the object with ``{"theta": u}`` is Pyro's ``potential_fn``: it calls
    ``potential`` at ``theta(u)``, so the evaluations are counted there.
    """

    def __init__(self, potential: FlatPotential, center: torch.Tensor, precision: torch.Tensor):
        self.potential = potential
        lower = torch.linalg.cholesky(precision)
        self._upper = lower.t().to(potential.dtype).contiguous()  # L^T
        self._center = center.to(potential.device, potential.dtype)
        self.inverse_mass_diagonal = torch.cholesky_inverse(lower).diagonal().clone()
        """The diagonal of ``G^{-1}``, the inverse mass matrix on ``theta`` (float64)."""

    @property
    def evaluations(self) -> int:
        return self.potential.evaluations

    def to_theta(self, u: torch.Tensor) -> torch.Tensor:
        """``theta = center + L^{-T} u`` (differentiable), in the potential's dtype."""
        step = torch.linalg.solve_triangular(self._upper, u.to(self._upper.dtype)[:, None],
                                             upper=True)
        return self._center + step[:, 0]

    def to_u(self, theta: torch.Tensor) -> torch.Tensor:
        """``u = L^T (theta - center)``, in ``theta``'s dtype."""
        shift = theta.to(self._upper.dtype) - self._center
        return (self._upper @ shift).to(theta.dtype)

    def __call__(self, z: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.potential({SITE: self.to_theta(z[SITE])})


def whitened(potential: FlatPotential, center: torch.Tensor) -> Whitened:
    """``potential`` whitened by its Gauss-Newton precision at ``center`` (:class:`Whitened`)."""
    return Whitened(potential, center, gauss_newton_precision(potential, center))
