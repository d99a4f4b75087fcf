"""Classical CT reconstructions: FBP, CGLS, EM, SART, SIRT and TV.

FBP, CGLS, SART and SIRT are astra-toolbox's CPU algorithms run with the same
projector the package's :class:`~bayes_inr.physics.radon.RadonOperator` is built from;
astra has no CPU EM, so MLEM is implemented here on that operator. Sinograms
are in the package's units (see :mod:`bayes_inr.physics.geometry`); they are divided by
the pixel size before astra sees them, so that astra's results are attenuation
values directly. Every result is clipped to [0, 1] as the last step, because
the images are known to lie in [0, 1].

TV (:mod:`bayes_inr.inference.baselines.tv`) is the sixth method of :func:`reconstruct`.
"""

from __future__ import annotations

import numpy as np
import torch

from ...core.errors import InputError, check_choice
from ...physics.geometry import Geometry
from ...physics.radon import PROJECTORS, RadonOperator
from .methods import METHODS, check_iterations
from .tv import check_weight, tv_reconstruct

_ASTRA_NAMES = {"fbp": "FBP", "cgls": "CGLS", "sart": "SART", "sirt": "SIRT"}
_ASTRA_OPTIONS = {
    "fbp": {"FilterType": "ram-lak"},
    "cgls": {},
    "sart": {"MinConstraint": 0.0, "ProjectionOrder": "sequential"},
    "sirt": {"MinConstraint": 0.0},
}


def reconstruct(method: str, sinogram, geometry: Geometry, iterations: int | None = None,
                projector: str = "linear", weight: float | None = None) -> np.ndarray:
    """Reconstruct one image from one sinogram with a classical method.

    Parameters
    ----------
    method : {"fbp", "cgls", "em", "sart", "sirt", "tv"}
        FBP uses the Ram-Lak filter; SIRT and SART are constrained to be
        non-negative; SART updates one view at a time in sequential order, and one
        of its iterations is one sweep over all views. EM is MLEM started from
        ones; it needs a non-negative sinogram, so negative measured values are
        clipped to 0 for it. TV is box-constrained isotropic TV least squares
        (:func:`tv_solve`) on the package's operator in float32.
    sinogram : array (V, D)
        Measured line integrals in package units.
    geometry : Geometry
        The geometry the sinogram was measured in.
    iterations : int, optional
        Iteration count of an iterative method (default ``DEFAULT_ITERATIONS``);
        FBP takes none.
    projector : {"linear", "strip", "line"}
        astra projector used for the forward and back projections.
    weight : float, optional
        TV only: the weight ``w >= 0`` of the TV term (default ``DEFAULT_TV_WEIGHT``;
        :func:`tv_settings` has the values chosen per dataset and view count).

    Returns
    -------
    np.ndarray
        The image (N, N), float32, clipped to [0, 1] (the images are known to
        lie there).
    """
    check_choice("method", method, METHODS)
    check_choice("projector", projector, PROJECTORS)
    iterations = check_iterations(method, iterations)
    weight = check_weight(method, weight)
    if isinstance(sinogram, torch.Tensor):
        sinogram = sinogram.detach().cpu().numpy()
    sinogram = np.asarray(sinogram, dtype=np.float64)
    if sinogram.ndim != 2:
        raise InputError(f"sinogram shape {sinogram.shape} must be 2-D: "
                         f"({geometry.n_views} views, {geometry.n_detectors} detectors)")
    geometry.check_sinogram(sinogram)
    if method == "em":
        image = _mlem(sinogram, geometry, iterations, projector)
    elif method == "tv":
        image = tv_reconstruct(sinogram[None], geometry, weight, iterations, projector)[0]
    else:
        image = _astra(method, sinogram, geometry, iterations, projector)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _astra(method: str, sinogram: np.ndarray, geometry: Geometry, iterations: int | None,
           projector: str) -> np.ndarray:
    import astra

    vol_geom, proj_geom = geometry.astra_geometries()
    proj_id = sino_id = rec_id = alg_id = None
    try:
        proj_id = astra.create_projector(projector, proj_geom, vol_geom)
        sino_id = astra.data2d.create("-sino", proj_geom, sinogram / geometry.pixel_size)
        rec_id = astra.data2d.create("-vol", vol_geom, 0.0)
        config = astra.astra_dict(_ASTRA_NAMES[method])
        config["ProjectorId"] = proj_id
        config["ProjectionDataId"] = sino_id
        config["ReconstructionDataId"] = rec_id
        config["option"] = dict(_ASTRA_OPTIONS[method])
        alg_id = astra.algorithm.create(config)
        steps = 1 if iterations is None else iterations
        if method == "sart":
            steps *= geometry.n_views  # astra's SART iteration is one view
        astra.algorithm.run(alg_id, steps)
        return np.array(astra.data2d.get(rec_id), dtype=np.float64)
    finally:
        if alg_id is not None:
            astra.algorithm.delete(alg_id)
        for data_id in (sino_id, rec_id):
            if data_id is not None:
                astra.data2d.delete(data_id)
        if proj_id is not None:
            astra.projector.delete(proj_id)


@torch.no_grad()
def _mlem(sinogram: np.ndarray, geometry: Geometry, iterations: int, projector: str
          ) -> np.ndarray:
    """MLEM: ``x <- x / (A^T 1) * A^T (p / (A x))`` from ``x = 1``, with zero-safe ratios."""
    op = RadonOperator(geometry, projector, dtype=torch.float64)
    p = torch.from_numpy(np.maximum(sinogram, 0.0).astype(np.float64))
    sensitivity = op.adjoint(torch.ones_like(p))
    seen = sensitivity > 0
    inverse_sensitivity = torch.where(seen, 1.0 / sensitivity.clamp_min(1e-300), 0.0)
    tiny = 1e-12 * max(float(p.max()), 1e-12)
    x = seen.to(p.dtype)
    for _ in range(iterations):
        ax = op(x)
        ratio = torch.where(ax > tiny, p / ax.clamp_min(tiny), 0.0)
        x = x * inverse_sensitivity * op.adjoint(ratio)
    return x.numpy()


# ---------------------------------------------------------------------------- total variation
