"""Ground truth, sinogram and reconstructions side by side, each titled with its PSNR / SSIM.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure

from ..core.errors import InputError, check_finite
from .style import (
    _STYLE,
    IMAGE_CMAP,
    PANEL_INCHES,
    SINOGRAM_CMAP,
    _colorbar,
    _extend,
    _image,
    _psnr_ssim,
    _save,
    _show,
    _target,
)


def reconstruction_figure(
    truth,
    sinogram,
    recons: Mapping[str, np.ndarray],
    path,
    title: str | None = None,
    *,
    angles=None,
    max_columns: int = 6,
) -> Path:
    """Ground truth, sinogram and reconstructions side by side.

    Parameters
    ----------
    truth : array (y, x) or None
        The ground-truth image. When None the truth panel and the scores are omitted.
    sinogram : array (angle, detector)
        Shown with angles on the y axis and detectors on the x axis (own colour map
        and colour bar, aspect ``auto``).
    recons : mapping of name -> array (y, x)
        The reconstructions, in display order. Each panel is titled with its name and,
        with a ground truth, its PSNR (dB, data range 1) and SSIM.
    path : str or Path
        Output file; its directory must exist. ``.png`` (default), ``.pdf`` or ``.svg``.
    title : str, optional
        Figure title.
    angles : array (angle,), optional
        Projection angles in radians; labels the sinogram's y axis in degrees.
    max_columns : int
        Panels per row; more panels wrap onto further rows (default 6).

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    InputError
        A missing directory, an unsupported suffix, wrong shapes or non-finite values.
    """
    target, fmt = _target(path)
    if not isinstance(recons, Mapping) or not recons:
        raise InputError("recons must be a non-empty mapping of name -> image")
    if int(max_columns) < 2:
        raise InputError(f"max_columns must be at least 2, got {max_columns}")
    sino = _image("sinogram", sinogram)
    truth_img = None if truth is None else _image("truth", truth)
    images = {str(name): _image(f"recons[{name!r}]", value) for name, value in recons.items()}
    shape = truth_img.shape if truth_img is not None else next(iter(images.values())).shape
    for name, image in images.items():
        if image.shape != shape:
            raise InputError(f"reconstruction {name!r} has shape {image.shape}, "
                             f"expected {shape}")
    if angles is not None:
        angles = np.asarray(angles, dtype=np.float64).ravel()
        if angles.shape != (sino.shape[0],):
            raise InputError(f"angles has {angles.size} values for a sinogram with "
                             f"{sino.shape[0]} angles")
        check_finite("angles", angles)

    n_lead = (1 if truth_img is not None else 0) + 1
    one_row = n_lead + len(images) <= int(max_columns)
    grey = {"cmap": IMAGE_CMAP, "vmin": 0.0, "vmax": 1.0}
    top = 0.35 if title else 0.0
    with mpl.rc_context(_STYLE):
        if one_row:
            ncols = n_lead + len(images)
            fig = Figure(figsize=(PANEL_INCHES * ncols + 0.8, 3.6 + top), layout="constrained")
            axes = list(fig.subplots(1, ncols, squeeze=False).ravel())
            lead, rest, image_fig = axes[:n_lead], axes[n_lead:], fig
        else:
            # Truth over sinogram in a left column, the reconstructions in a grid of
            # at least two rows on the right (own subfigure, so the sinogram's
            # colour bar does not shift the grid's columns).
            nrows = max(2, math.ceil(len(images) / (int(max_columns) - 1)))
            ncols = math.ceil(len(images) / nrows)
            fig = Figure(figsize=(PANEL_INCHES * (ncols + 1.3) + 0.8, 3.4 * nrows + top),
                         layout="constrained")
            left, image_fig = fig.subfigures(1, 2, width_ratios=[1.3, ncols], wspace=0.02)
            lead = list(left.subplots(n_lead, 1, squeeze=False).ravel())
            rest = list(image_fig.subplots(nrows, ncols, squeeze=False).ravel())
            for ax in rest[len(images):]:
                ax.set_axis_off()

        image_axes = []
        if truth_img is not None:
            _show(lead[0], truth_img, "ground truth", **grey)
            image_axes.append(lead[0])
        ax = lead[-1]
        if angles is not None:
            deg = np.degrees(angles)
            half = (deg[1] - deg[0]) / 2 if deg.size > 1 else 0.5
            extent = (-0.5, sino.shape[1] - 0.5, deg[-1] + half, deg[0] - half)
            ylabel = "angle (deg)"
        else:
            extent = None
            ylabel = "angle index"
        sim = ax.imshow(sino, cmap=SINOGRAM_CMAP, aspect="auto", extent=extent)
        ax.set_title(f"sinogram ({sino.shape[0]} views)")
        ax.set_xlabel("detector")
        ax.set_ylabel(ylabel)
        if angles is None and sino.shape[0] <= 12:
            ax.set_yticks(range(sino.shape[0]))
        _colorbar(ax.get_figure(), sim, ax, shrink=0.9)

        im = None
        for ax, (name, image) in zip(rest, images.items(), strict=False):
            label = name
            if truth_img is not None:
                label += "\n" + _psnr_ssim(image, truth_img)
            im = _show(ax, image, label, **grey)
        # one shared grey colour bar: for the whole row, or for the reconstruction grid
        image_axes = image_axes + rest if one_row else rest[: len(images)]
        shown = [*images.values()] + ([truth_img] if truth_img is not None else [])
        _colorbar(image_fig, im, image_axes, extend=_extend(np.stack(shown), 1.0),
                  shrink=0.9 if one_row else 0.6)
        if title:
            fig.suptitle(title)
        return _save(fig, target, fmt)
