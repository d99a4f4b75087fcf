"""2D parallel-beam geometry: an N x N image on [-1, 1]^2, V views on [0, pi), D detectors.

Units, once for the whole package: image coordinates run over [-1, 1], so a pixel
is ``2 / N`` wide, and a sinogram value is a line integral of attenuation in those
units (astra's pixel-length integral times the pixel size). The same object thus
gives the same sinogram values at every resolution, and a noise level ``sigma``
means the same thing at 64 x 64 and at 256 x 256. Detectors are spaced one pixel
apart and centred on the rotation axis; ray ``s`` at angle ``theta`` is the line
``x cos(theta) + y sin(theta) = s`` with ``y`` pointing up (row 0 is the top).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..core.errors import InputError, check_finite


def default_detectors(size: int) -> int:
    """Detectors needed to see the whole N x N image at pixel spacing: ceil(sqrt(2) N) + 1."""
    return math.ceil(math.sqrt(2.0) * size) + 1


MAX_VIEWS_PER_DETECTOR = 8
"""Views beyond this many per detector are refused: about pi/2 D views already sample
every detector's angular frequencies (Nyquist), so 8 D is five times oversampled."""


@dataclass(frozen=True)
class Geometry:
    """Parallel-beam geometry.

    Parameters
    ----------
    size : int
        Image side N (pixels); the image covers [-1, 1]^2.
    n_views : int
        Number of projection angles V, evenly spaced on [0, pi), endpoint excluded.
    n_detectors : int, optional
        Detector count D; defaults to :func:`default_detectors`.
    """

    size: int
    n_views: int
    n_detectors: int = 0
    angles: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        for name in ("size", "n_views"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value <= 0:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        if self.n_detectors == 0:
            object.__setattr__(self, "n_detectors", default_detectors(self.size))
        if self.n_detectors <= 0:
            raise InputError(f"n_detectors must be positive, got {self.n_detectors}")
        if self.n_views > MAX_VIEWS_PER_DETECTOR * self.n_detectors:
            raise InputError(f"{self.n_views} views for {self.n_detectors} detectors is more "
                             f"than {MAX_VIEWS_PER_DETECTOR} views per detector (full angular "
                             f"sampling needs about {math.ceil(math.pi / 2 * self.n_detectors)})")
        angles = np.linspace(0.0, np.pi, self.n_views, endpoint=False)
        object.__setattr__(self, "angles", angles)

    @property
    def pixel_size(self) -> float:
        """Pixel width in image units (the image spans 2 units)."""
        return 2.0 / self.size

    @property
    def image_shape(self) -> tuple[int, int]:
        return (self.size, self.size)

    @property
    def sino_shape(self) -> tuple[int, int]:
        return (self.n_views, self.n_detectors)

    def pixel_centers(self) -> np.ndarray:
        """Pixel-centre coordinates, shape (N, N, 2) with [..., 0] = x and [..., 1] = y (up)."""
        c = (np.arange(self.size) + 0.5) * self.pixel_size - 1.0
        y, x = np.meshgrid(c[::-1], c, indexing="ij")
        return np.stack([x, y], axis=-1)

    def detector_positions(self) -> np.ndarray:
        """Detector-centre offsets ``s`` in image units, shape (D,)."""
        return (np.arange(self.n_detectors) - (self.n_detectors - 1) / 2) * self.pixel_size

    def astra_geometries(self, supersample: int = 1, views: slice = slice(None)
                         ) -> tuple[dict, dict]:
        """astra volume and projection geometries (astra's unit-pixel convention).

        With ``supersample = k`` the volume has kN x kN pixels and the detectors are
        ``k`` fine pixels wide, so rays fall on the same physical positions. ``views``
        selects some of the angles (a block of the projection matrix's rows).
        """
        import astra

        vol = astra.create_vol_geom(self.size * supersample, self.size * supersample)
        proj = astra.create_proj_geom(
            "parallel", float(supersample), self.n_detectors,
            self.angles[views].astype(np.float64)
        )
        return vol, proj

    def mean_attenuation(self, sinogram) -> float:
        """The image mean implied by a sinogram: every view integrates the whole image, so
        ``sum_d p(theta, d) * pixel_size`` is its integral over [-1, 1]^2 (area 4); averaged
        over views."""
        sums = np.asarray(sinogram, dtype=np.float64).sum(axis=-1)
        return float(sums.mean() * self.pixel_size / 4.0)

    def check_sinogram(self, sinogram) -> None:
        """Raise :class:`InputError` unless ``sinogram`` ends in (V, D) and is finite."""
        shape = tuple(sinogram.shape)
        if shape[-2:] != self.sino_shape:
            raise InputError(
                f"sinogram shape {shape} does not match the geometry: expected (..., "
                f"{self.n_views} views, {self.n_detectors} detectors)"
            )
        check_finite("sinogram", sinogram)

    def check_image(self, image) -> None:
        """Raise :class:`InputError` unless ``image`` ends in (N, N) and is finite."""
        shape = tuple(image.shape)
        if shape[-2:] != self.image_shape:
            raise InputError(f"image shape {shape} does not match the geometry: expected "
                             f"(..., {self.size}, {self.size})")
        check_finite("image", image)

    def to_attrs(self) -> dict:
        """Plain attributes for netCDF files."""
        return {"size": self.size, "n_views": self.n_views, "n_detectors": self.n_detectors}
