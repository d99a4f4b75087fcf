"""The paper's Figure-2 panel of one run, from its InferenceData only.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure

from .style import (
    _STYLE,
    COVERAGE_CLIP,
    COVERAGE_CMAP,
    ERROR_CMAP,
    IMAGE_CMAP,
    PANEL_INCHES,
    SPREADS,
    STD_CMAP,
    _check_spread,
    _colorbar,
    _extend,
    _pit_histogram,
    _reliability,
    _Run,
    _save,
    _show,
    _target,
    _upper,
)


def posterior_figure(idata, path, title: str | None = None, *, spread: str = "std") -> Path:
    """The Figure-2 panel of one run, from its InferenceData only.

    With a ground truth and at least two draws: ground truth, pixel-wise predictive
    mean, pixel-wise predictive std (or variance), squared error ``(m - x)^2``, coverage map
    ``|x - m| / s`` (display clipped at :data:`COVERAGE_CLIP`) and the reliability
    curve (coverage against nominal level for :data:`RELIABILITY_LEVELS`, with the
    ideal diagonal). A deterministic run (one draw) shows truth, reconstruction and
    squared error; a run without ground truth shows mean and std only.

    Parameters
    ----------
    idata : arviz.InferenceData or path
        A run in the package's schema: draws from ``posterior_predictive.image``
        (pooled over chains), truth from ``constant_data.ground_truth``.
    path : str or Path
        Output file; its directory must exist. ``.png`` (default), ``.pdf`` or ``.svg``.
    title : str, optional
        First title line; defaults to the run's ``method`` attribute. The second line
        holds the scores (PSNR, SSIM, NLL, ECE from :func:`bayes_inr.evaluation.metrics.score`).
    spread : {"std", "variance"}
        The uncertainty panel: predictive std s (default) or variance s² (the paper's
        Figure 2 shows the variance).

    Returns
    -------
    Path
        The written file.
    """
    target, fmt = _target(path)
    _check_spread(spread)
    run = _Run(idata)
    grey = {"cmap": IMAGE_CMAP, "vmin": 0.0, "vmax": 1.0}
    mean_title = "predictive mean" if run.stochastic else "reconstruction"

    panels: list[str] = []
    if run.truth is not None:
        panels.append("truth")
    panels.append("mean")
    if run.stochastic:
        panels.append("std")
    if run.truth is not None:
        panels.append("error")
        if run.stochastic:
            panels += ["coverage", "reliability", "pit"]
    ncols = 4 if len(panels) > 4 else len(panels)
    nrows = math.ceil(len(panels) / ncols)

    with mpl.rc_context(_STYLE):
        fig = Figure(figsize=(PANEL_INCHES * ncols + 1.2, 3.0 * nrows + 0.7),
                     layout="constrained")
        axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
        grey_axes = []
        last_grey = None
        for ax, panel in zip(axes, panels, strict=False):
            if panel == "truth":
                last_grey = _show(ax, run.truth, "ground truth", **grey)
                grey_axes.append(ax)
            elif panel == "mean":
                last_grey = _show(ax, run.mean, mean_title, **grey)
                grey_axes.append(ax)
            elif panel == "std":
                values = run.spread(spread)
                im = _show(ax, values, SPREADS[spread][0], cmap=STD_CMAP, vmin=0,
                           vmax=_upper(values))
                _colorbar(fig, im, ax, SPREADS[spread][1], shrink=0.85)
            elif panel == "error":
                vmax = _upper(run.error, robust=True)
                im = _show(ax, run.error, "squared error (m - x)²", cmap=ERROR_CMAP, vmin=0,
                           vmax=vmax)
                _colorbar(fig, im, ax, extend=_extend(run.error, vmax), shrink=0.85)
            elif panel == "coverage":
                shown = np.minimum(run.cmap, COVERAGE_CLIP)
                im = _show(ax, shown, "coverage map", cmap=COVERAGE_CMAP, vmin=0,
                           vmax=COVERAGE_CLIP)
                _colorbar(fig, im, ax, "|x-m|/s",
                          extend=_extend(run.cmap, COVERAGE_CLIP), shrink=0.85)
            elif panel == "reliability":
                _reliability(ax, run)
                ax.set_title("reliability")
            elif panel == "pit":
                _pit_histogram(ax, run)
        for ax in axes[len(panels):]:
            ax.set_axis_off()
        _colorbar(fig, last_grey, grey_axes[-1], shrink=0.85)
        head = title or run.method
        fig.suptitle(f"{head} ({run.draws_text()})\n{run.headline()}")
        return _save(fig, target, fmt)
