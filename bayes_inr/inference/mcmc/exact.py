"""The exact posterior of a linear-Gaussian model: a check of the samplers.
"""

from __future__ import annotations

import numpy as np
import torch

from ...core.errors import InputError
from ...physics.radon import projection_matrix
from .potential import FlatPotential


def exact_posterior(potential: FlatPotential) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel posterior mean and standard deviation (N, N) of a linear-Gaussian model
    (see :func:`exact_parameter_posterior`)."""
    mean, chol, columns, offset = _linear_gaussian(potential)
    with torch.no_grad():
        pixel_mean = columns.T @ mean + offset
        whitened = torch.linalg.solve_triangular(chol, columns, upper=False)
        pixel_sd = whitened.square().sum(0).sqrt()
    shape = potential.model.inr.shape
    return pixel_mean.reshape(shape).numpy(), pixel_sd.reshape(shape).numpy()


def exact_parameter_posterior(potential: FlatPotential) -> tuple[np.ndarray, np.ndarray]:
    """The exact Gaussian posterior of the flat parameter vector of a linear-Gaussian model:
    its mean (dim,) and the lower Cholesky factor L (dim, dim) of its precision, so that
    ``z = L^T (theta - mean)`` is standard normal under the posterior.
    """
    mean, chol, _, _ = _linear_gaussian(potential)
    return mean.numpy(), chol.numpy()


def _linear_gaussian(potential: FlatPotential):
    """Posterior mean, precision Cholesky factor, image columns and offset (float64, CPU)
    of a linear-Gaussian model.

    With a linear image map (a depth-0 INR with a linear head: fixed random Fourier
    features and a linear read-out; or a grid of pixels with the linear link), Normal
    priors, a fixed sigma and no TV, the model is Bayesian linear regression through
    the Radon operator: with ``image = F theta + c`` and ``J = A F``, the posterior of
    ``theta`` is Gaussian with precision ``J^T J / sigma^2 + diag(1 / s^2)``. Computed
    in float64.
    """
    model = potential.model
    priors = [prior.base_dist if hasattr(prior, "base_dist") else prior
              for prior in potential.priors.values()]
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
    return mean, chol, columns.cpu(), offset.cpu()
