"""The ``Sample`` every method consumes, and sinogram simulation.

Ground-truth sinograms avoid the "inverse crime" by default (``protocol="fine"``):
the object is projected on a grid ``supersample`` times finer than the
reconstruction grid (phantoms are rendered there directly; image files are
upsampled piecewise-constantly) with detectors of the same physical width. The
paper's protocol, projecting the N x N truth with the very operator used in
reconstruction, is ``protocol="same"``. Noise is Gaussian, set by a target SNR in
dB (``sigma^2 = mean(p^2) / 10^(snr / 10)``) or by ``sigma`` directly, and seeded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..core.errors import InputError, check_choice, check_finite
from ..physics.geometry import Geometry
from ..physics.resources import check_memory
from .phantoms import random_phantom

PROTOCOLS = ("fine", "same")


@dataclass
class Sample:
    """One reconstruction problem: a geometry, a measured sinogram, maybe a truth.

    ``noise_sigma`` is the standard deviation of the added noise when known
    (``0.0`` for noiseless data, ``None`` when unknown). ``air_level``: true values at or
    below it are air, the background of the calibration figures (0 for phantoms, whose air
    is exactly 0; :func:`bayes_inr.data.images.air_level` for CT slices).
    """

    geometry: Geometry
    sinogram: np.ndarray
    ground_truth: np.ndarray | None = None
    noise_sigma: float | None = None
    name: str = "sample"
    meta: dict = field(default_factory=dict)
    air_level: float = 0.0

    def __post_init__(self):
        self.geometry.check_sinogram(self.sinogram)
        if self.ground_truth is not None:
            self.geometry.check_image(self.ground_truth)
        if not 0.0 <= self.air_level < 1.0:
            raise InputError(f"air_level must be in [0, 1), got {self.air_level}")


def project_truth(image: np.ndarray, geometry: Geometry, protocol: str = "fine",
                  projector: str = "linear") -> np.ndarray:
    """Noiseless sinogram (V, D) of ``image`` in package units.

    ``protocol="fine"``: ``image`` is k N x k N for an integer k >= 2 and is projected
    with astra on that grid. ``protocol="same"``: ``image`` is N x N and is projected
    with the reconstruction operator itself (the paper's protocol).
    """
    import astra

    check_choice("protocol", protocol, PROTOCOLS)
    image = np.asarray(image, dtype=np.float32)
    check_finite("image", image)
    if image.ndim != 2 or image.shape[0] != image.shape[1]:
        raise InputError(f"image must be square 2-D, got shape {image.shape}")
    from ..physics.radon import projection_matrix, view_blocks

    if protocol == "same":
        geometry.check_image(image)
        return (projection_matrix(geometry, projector) @ image.ravel()).reshape(
            geometry.sino_shape).astype(np.float32)
    factor, rest = divmod(image.shape[0], geometry.size)
    if rest or factor < 2:
        raise InputError(f"protocol 'fine' needs an image k times finer than {geometry.size} "
                         f"(k >= 2), got {image.shape[0]}")
    blocks = []  # a few views per astra call, so that a signal handler runs in between
    for views in view_blocks(geometry, 2 * factor * geometry.size * geometry.n_detectors):
        vol, proj = geometry.astra_geometries(supersample=factor, views=views)
        pid = astra.create_projector(projector, proj, vol)
        try:
            sid, sino = astra.create_sino(image, pid)
            astra.data2d.delete(sid)
        finally:
            astra.projector.delete(pid)
        blocks.append(sino)
    return (np.concatenate(blocks) * (geometry.pixel_size / factor)).astype(np.float32)


def add_noise(sinogram: np.ndarray, snr_db: float | None = None, sigma: float | None = None,
              seed=0) -> tuple[np.ndarray, float]:
    """Add seeded Gaussian noise by target SNR (dB) or by ``sigma``; returns (noisy, sigma)."""
    if snr_db is not None and sigma is not None:
        raise InputError("give either snr_db or sigma, not both")
    if snr_db is not None:
        sigma = float(np.sqrt(np.mean(np.square(sinogram, dtype=np.float64)) / 10 ** (snr_db / 10)))
    if not sigma:
        return sinogram, 0.0
    if sigma < 0 or not np.isfinite(sigma):
        raise InputError(f"noise sigma must be a non-negative finite number, got {sigma}")
    rng = np.random.default_rng(seed)
    noisy = sinogram + sigma * rng.standard_normal(sinogram.shape)
    return noisy.astype(np.float32), float(sigma)


def simulate(image: np.ndarray, views: int, *, fine_image: np.ndarray | None = None,
             protocol: str = "fine", supersample: int = 2, projector: str = "linear",
             snr_db: float | None = None, sigma: float | None = None, seed=0,
             name: str = "image", air_level: float = 0.0) -> Sample:
    """A :class:`Sample` from an N x N ground truth.

    ``fine_image`` is the object on the finer grid for ``protocol="fine"``; without
    it the truth is upsampled piecewise-constantly by ``supersample``. ``air_level``: see
    :class:`Sample`.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2 or image.shape[0] != image.shape[1] or image.size == 0:
        raise InputError(f"ground truth must be a non-empty square 2-D image, got {image.shape}")
    geometry = Geometry(image.shape[0], views)
    if protocol == "fine" and fine_image is None:
        fine_image = np.kron(image, np.ones((supersample, supersample), np.float32))
    clean = project_truth(image if protocol == "same" else fine_image, geometry, protocol,
                          projector)
    sinogram, noise = add_noise(clean, snr_db=snr_db, sigma=sigma, seed=seed)
    meta = {"protocol": protocol, "supersample": supersample if protocol == "fine" else 1,
            "truth_projector": projector, "snr_db": snr_db if snr_db is not None else "none"}
    return Sample(geometry, sinogram, image, noise, name, meta, air_level)


def phantom_images(phantom_id: int, size: int = 128, seed: int = 0, supersample: int = 2
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Benchmark phantom ``phantom_id``: (N x N truth, kN x kN object that is projected).

    The phantom is rendered on the ``supersample`` = k times finer grid (2 x 2 point
    samples per fine pixel) and block-averaged to the truth, so the two agree exactly.
    """
    check_memory(size, points=2 * supersample)
    fine = random_phantom((seed, phantom_id), size * supersample, supersample=2)
    return fine.reshape(size, supersample, size, supersample).mean(axis=(1, 3)), fine


def phantom_sample(phantom_id: int, views: int, size: int = 128, *, seed: int = 0,
                   supersample: int = 2, images=None, **kwargs) -> Sample:
    """A random Shepp-Logan phantom (benchmark numbering and seeding) as a :class:`Sample`.

    ``images`` reuses a (truth, fine) pair from :func:`phantom_images`.
    """
    truth, fine = images or phantom_images(phantom_id, size, seed, supersample)
    return simulate(truth, views, fine_image=fine, supersample=supersample,
                    seed=(seed, phantom_id, views), name=f"phantom-{phantom_id}", **kwargs)


def integer_resample(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` (n x n) on an m x m grid by an integer factor: block means when m divides n,
    piecewise-constant replication when n divides m (the same function on a finer grid)."""
    n = image.shape[0]
    if n % size == 0:
        k = n // size
        return image.reshape(size, k, size, k).mean(axis=(1, 3), dtype=np.float64)
    if size % n == 0:
        return np.kron(image, np.ones((size // n, size // n)))
    raise InputError(f"cannot resample a {n} x {n} image to {size} x {size} by an integer factor")
