"""Figures of reconstructions and their uncertainty (matplotlib, Agg, written atomically).

Four figures, each written to a file and returned as its :class:`~pathlib.Path`:

- :func:`reconstruction_figure`: ground truth, sinogram and any number of
  reconstructions side by side, each titled with its PSNR / SSIM.
- :func:`posterior_figure`: the paper's Figure-2 panel for one run, read from its
  InferenceData only: truth, predictive mean, predictive std (or variance), squared
  error, coverage map ``|x - m| / s`` and the reliability curve.
- :func:`comparison_figure`: one row per run (mean, std or variance, squared error,
  reliability) with the colour scale of each column shared across the rows.
- :func:`trace_figure`: MCMC traces of the log density and a few pixels, per chain.

The figures are plain :class:`matplotlib.figure.Figure` objects drawn by the Agg
canvas: pyplot is never imported, so no global backend or figure registry is
touched and nothing needs closing. Font sizes are set in an ``rc_context`` for the
duration of each call only. Files are written atomically (a temporary file in the
target directory, then :func:`os.replace`); the format follows the suffix
(``.png``, the default; ``.pdf`` or ``.svg``). All metric values come from
:mod:`bayes_inr.metrics` with its definitions (PSNR with data range 1, the honest
ECE, coverage of central empirical-quantile intervals).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib as mpl
import numpy as np
from matplotlib import patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from . import metrics, posterior
from .atomic import atomic_path
from .errors import InputError, check_finite

DPI = 110
"""Resolution of written raster figures (dots per inch)."""

PANEL_INCHES = 3.0
"""Width of one image panel in inches."""

COVERAGE_CLIP = 4.0
"""Upper end of the coverage-map colour scale (|x - m| / s beyond it is shown saturated)."""

IMAGE_CMAP = "gray"
SINOGRAM_CMAP = "cividis"
STD_CMAP = "magma"
ERROR_CMAP = "inferno"
COVERAGE_CMAP = "viridis"

SPREADS = {"std": ("predictive std", "s"), "variance": ("predictive variance", "s²")}
"""How the uncertainty panels show the spread of the draws: panel title, colour-bar label."""

RELIABILITY_LEVELS = np.append(metrics.LEVELS, 1.0)
PIT_EDGES = np.linspace(0.0, 1.0, 11)
"""Bin edges of the PIT histograms (10 bins)."""
CURVE_SUPPORTS = ("object", "all")
"""Pixel sets drawn in the reliability and PIT panels."""
"""Levels of the plotted reliability curve: :data:`metrics.LEVELS` plus the q = 1 endpoint
(the interval [min, max] of the draws)."""

_FORMATS = {"": "png", ".png": "png", ".pdf": "pdf", ".svg": "svg"}

_STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "figure.titlesize": 12,
    "image.interpolation": "nearest",
}


# ----------------------------------------------------------------------------- helpers


def _target(path) -> tuple[Path, str]:
    """Validate the output path before any drawing; return it and its format."""
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"cannot write {path}: unsupported figure format {path.suffix!r} "
                         f"(use .png, .pdf or .svg)")
    if not path.parent.is_dir():
        raise InputError(f"cannot write {path}: directory {path.parent} does not exist")
    if path.is_dir():
        raise InputError(f"cannot write {path}: it is a directory")
    return path, fmt


def _save(fig: Figure, path: Path, fmt: str) -> Path:
    """Write ``fig`` to ``path`` atomically; a failure leaves no temporary file behind."""
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=DPI)
    return path


def _image(name: str, value) -> np.ndarray:
    array = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value,
                       dtype=np.float64)
    if array.ndim != 2:
        raise InputError(f"{name} must be a 2-D image (y, x), got shape {array.shape}")
    check_finite(name, array)
    return array


def _fmt(value: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}f}"


def _psnr_ssim(estimate: np.ndarray, truth: np.ndarray) -> str:
    text = f"PSNR {_fmt(metrics.psnr(estimate, truth), 2)} dB"
    with contextlib.suppress(InputError):  # SSIM needs at least 7 x 7 pixels
        text += f", SSIM {_fmt(metrics.ssim(estimate, truth))}"
    return text


def _bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def _show(ax, image: np.ndarray, title: str | None = None, **kwargs):
    im = ax.imshow(image, **kwargs)
    _bare(ax)
    if title:
        ax.set_title(title)
    return im


def _note(ax, text: str) -> None:
    """An empty panel that states why it is empty."""
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes,
            fontsize=9, color="0.35", wrap=True)


def _upper(values: np.ndarray, robust: bool = False) -> float:
    """Top of a non-negative colour scale: the max (or 99.5th percentile), never 0."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 1.0
    top = float(np.percentile(finite, 99.5) if robust else finite.max())
    if top <= 0:
        top = float(finite.max())
    return top if top > 0 else 1.0


def _extend(values: np.ndarray, vmax: float) -> str:
    return "max" if np.nanmax(values) > vmax * (1 + 1e-9) else "neither"


def _colorbar(fig, im, ax, label: str | None = None, extend: str = "neither", **kwargs):
    cb = fig.colorbar(im, ax=ax, extend=extend, **kwargs)
    horizontal = kwargs.get("location") in ("top", "bottom")
    cb.locator = MaxNLocator(4 if horizontal else 6, steps=[1, 2, 2.5, 5, 10])
    if label:
        cb.set_label(label)
    cb.ax.tick_params(labelsize=7)
    return cb


def _load(run):
    """An InferenceData, or a path to one."""
    if isinstance(run, (str, os.PathLike)):
        return posterior.load(run)
    return run


def _truth_of(idata) -> np.ndarray | None:
    constant = getattr(idata, "constant_data", None)
    if constant is None or "ground_truth" not in constant:
        return None
    return _image("constant_data.ground_truth", constant["ground_truth"].values)


def _method_of(idata) -> str:
    method = posterior.run_attrs(idata).get("method")
    return str(method) if method else "run"


class _Run:
    """What the figures need from one InferenceData: draws, moments, truth, scores."""

    def __init__(self, idata) -> None:
        idata = _load(idata)
        draws = posterior.image_draws(idata)
        weights = posterior.draw_weights(idata)
        self.method = _method_of(idata)
        self.n_draws = int(draws.shape[0])
        self.truth = _truth_of(idata)
        mean, var = metrics.predictive_moments(draws, weights)
        self.mean = mean
        self.var = var
        self.std = np.sqrt(var)
        self.stochastic = self.n_draws >= 2
        self.error = None
        self.cmap = None
        self.curves: dict[str, np.ndarray] = {}
        self.pit: dict[str, np.ndarray] = {}
        self.scores: dict = {}
        if self.truth is not None:
            self.scores = metrics.score(idata, truth=self.truth)
            self.error = (self.mean - self.truth) ** 2
            if self.stochastic:
                self.cmap = metrics.coverage_map(draws, self.truth, weights)
                masks = metrics.support_masks(self.truth)
                for support in CURVE_SUPPORTS:
                    mask = masks[support]
                    if mask.any():
                        self.curves[support] = metrics.coverage_curve(
                            draws[:, mask], self.truth[mask], RELIABILITY_LEVELS, weights)
                        self.pit[support] = metrics.pit_histogram(
                            draws, self.truth, PIT_EDGES.size - 1, weights, mask)

    @property
    def curve(self) -> np.ndarray | None:
        """The object's reliability curve (all pixels' when there is no object)."""
        return self.curves.get("object", self.curves.get("all"))

    def headline(self) -> str:
        """Scores on one line: PSNR, SSIM, and the object's CRPS, NLL and ECE."""
        if not self.scores:
            return "no ground truth: not scored"
        parts = [f"PSNR {_fmt(self.scores['psnr'], 2)} dB", f"SSIM {_fmt(self.scores['ssim'])}",
                 f"CRPS (object) {_fmt(self.scores['crps_object'], 4)}"]
        if "nll_object" in self.scores:
            parts.append(f"NLL (object) {_fmt(self.scores['nll_object'], 2)}")
            parts.append(f"ECE object {_fmt(self.scores['ece_object'])} / all "
                         f"{_fmt(self.scores['ece_all'])}")
        return ", ".join(parts)

    def spread(self, kind: str) -> np.ndarray:
        """The per-pixel spread of the draws: ``"std"`` or ``"variance"``."""
        return self.var if kind == "variance" else self.std

    def draws_text(self) -> str:
        if not self.stochastic:
            return "deterministic: no uncertainty"
        return f"{self.n_draws} draws"


_SUPPORT_STYLE = {"object": {"color": "C0", "ls": "-", "marker": "o"},
                  "all": {"color": "C1", "ls": "--", "marker": "s"}}


def _reliability(ax, run: _Run, legend: bool = True) -> None:
    ax.plot([0, 1], [0, 1], ls=":", color="0.5", lw=1, label="ideal")
    for support, curve in run.curves.items():
        style = _SUPPORT_STYLE[support]
        ax.plot(RELIABILITY_LEVELS, curve, ms=3, lw=1.5, label=f"{support} pixels", **style)
    if "object" in run.curves:
        ax.fill_between(RELIABILITY_LEVELS, RELIABILITY_LEVELS, run.curves["object"],
                        color="C0", alpha=0.15, lw=0)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1])
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1])
    ax.grid(True, lw=0.4, alpha=0.5)
    ax.set_xlabel("nominal level q")
    ax.set_ylabel("observed coverage")
    if legend:
        ax.legend(loc="upper left", frameon=False, fontsize=8)
    if "ece_object" in run.scores:
        ax.text(0.97, 0.04, f"ECE object {_fmt(run.scores['ece_object'])}\n"
                f"ECE all {_fmt(run.scores['ece_all'])}", transform=ax.transAxes,
                ha="right", va="bottom", fontsize=8)


def _pit_histogram(ax, run: _Run) -> None:
    bins = PIT_EDGES.size - 1
    width = 1.0 / bins
    for k, (support, mass) in enumerate(run.pit.items()):
        style = _SUPPORT_STYLE[support]
        ax.bar(PIT_EDGES[:-1] + width * (0.25 + 0.5 * k), mass * bins, width=width / 2,
               color=style["color"], alpha=0.8, label=f"{support} pixels")
    ax.axhline(1.0, color="0.4", ls=":", lw=1, label="uniform")
    ax.set_xlim(0, 1)
    ax.set_xlabel("PIT")
    ax.set_ylabel("density")
    ax.legend(loc="upper center", frameon=False, fontsize=8, ncols=2)
    ax.set_ylim(0, max(2.0, 1.25 * max((m.max() * bins for m in run.pit.values()),
                                        default=1.0)))
    if "pit_error_object" in run.scores:
        ax.set_title(f"PIT (error: object {_fmt(run.scores['pit_error_object'])})")
    else:
        ax.set_title("PIT")


# ----------------------------------------------------------------------------- figures


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


def _check_spread(spread: str) -> str:
    if spread not in SPREADS:
        raise InputError(f"unknown spread {spread!r}; choose one of {', '.join(SPREADS)}")
    return spread


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
        holds the scores (PSNR, SSIM, NLL, ECE from :func:`bayes_inr.metrics.score`).
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


def comparison_figure(
    idatas: Sequence,
    path,
    labels: Sequence[str] | None = None,
    title: str | None = None,
    *,
    spread: str = "std",
) -> Path:
    """Several runs, one row each: mean, std, squared error and reliability curve.

    The colour scale of each image column is shared across the rows (mean: 0-1;
    std (or variance) and squared error: from 0 to the maximum over all runs, the error's being the
    99.5th percentile), with one colour bar under each column. A deterministic run
    shows "no uncertainty" in its std and reliability panels; a run without ground
    truth shows "no ground truth" in its error and reliability panels.

    Parameters
    ----------
    idatas : sequence of arviz.InferenceData or paths
        The runs, top to bottom.
    path : str or Path
        Output file; its directory must exist. ``.png`` (default), ``.pdf`` or ``.svg``.
    labels : sequence of str, optional
        Row labels; default each run's ``method`` attribute (numbered when repeated).
        The label is shown left of the row with the run's PSNR and ECE.
    title : str, optional
        Figure title.
    spread : {"std", "variance"}
        The uncertainty column: predictive std (default) or variance.

    Returns
    -------
    Path
        The written file.
    """
    target, fmt = _target(path)
    _check_spread(spread)
    if isinstance(idatas, (str, os.PathLike)) or not isinstance(idatas, Sequence):
        raise InputError("idatas must be a sequence of InferenceData (or paths)")
    if not idatas:
        raise InputError("comparison_figure needs at least one run")
    runs = [_Run(idata) for idata in idatas]
    if labels is None:
        methods = [run.method for run in runs]
        labels = [
            f"{m} ({methods[: i + 1].count(m)})" if methods.count(m) > 1 else m
            for i, m in enumerate(methods)
        ]
    else:
        labels = [str(label) for label in labels]
        if len(labels) != len(runs):
            raise InputError(f"{len(labels)} labels for {len(runs)} runs")

    stds = [run.spread(spread) for run in runs if run.stochastic]
    errors = [run.error for run in runs if run.error is not None]
    std_max = max((_upper(s) for s in stds), default=1.0)
    err_max = max((_upper(e, robust=True) for e in errors), default=1.0)
    err_extend = "max" if any(_extend(e, err_max) == "max" for e in errors) else "neither"

    first_curve = next((i for i, run in enumerate(runs) if run.curve is not None), 0)
    nrows = len(runs)
    with mpl.rc_context(_STYLE):
        fig = Figure(figsize=(4 * PANEL_INCHES + 0.9, 2.9 * nrows + 0.8 + (0.3 if title else 0)),
                     layout="constrained")
        axes = fig.subplots(nrows, 4, squeeze=False)
        handles: dict[str, object] = {}
        for row, (run, label) in enumerate(zip(runs, labels, strict=True)):
            ax_mean, ax_std, ax_err, ax_rel = axes[row]
            handles["mean"] = _show(ax_mean, run.mean, None, cmap=IMAGE_CMAP, vmin=0, vmax=1)
            draws = f"{run.n_draws} draws" if run.stochastic else "1 draw (deterministic)"
            ax_mean.set_ylabel(f"{label}\n{draws}", fontsize=10)
            if run.stochastic:
                handles["std"] = _show(ax_std, run.spread(spread), None, cmap=STD_CMAP,
                                       vmin=0, vmax=std_max)
            else:
                _note(ax_std, "deterministic:\nno uncertainty")
            if run.error is not None:
                handles["error"] = _show(ax_err, run.error, None, cmap=ERROR_CMAP, vmin=0,
                                         vmax=err_max)
                ax_err.set_xlabel(_score_line(run), fontsize=8)
            else:
                _note(ax_err, "no ground truth")
            if run.curve is not None:
                _reliability(ax_rel, run, legend=row == first_curve)
                if any(later.curve is not None for later in runs[row + 1:]):
                    ax_rel.set_xlabel("")  # only the lowest curve keeps its axis label
            else:
                _note(ax_rel, "no uncertainty" if not run.stochastic else "no ground truth")
        titles = ("predictive mean", SPREADS[spread][0], "squared error (m - x)²",
                  "reliability")
        for col, text in enumerate(titles):
            axes[0, col].set_title(text)
        bars = (("mean", 0, None, "neither"), ("std", 1, SPREADS[spread][1], "neither"),
                ("error", 2, None, err_extend))
        for key, col, label, extend in bars:
            if key in handles:
                _colorbar(fig, handles[key], list(axes[:, col]), label, extend=extend,
                          location="bottom", shrink=0.8, aspect=25, pad=0.01)
        if title:
            fig.suptitle(title)
        return _save(fig, target, fmt)


def _score_line(run: _Run) -> str:
    if not run.scores:
        return ""
    text = f"PSNR {_fmt(run.scores['psnr'], 2)} dB, CRPS (object) " \
        f"{_fmt(run.scores['crps_object'], 4)}"
    if "nll_object" in run.scores:
        text += f", NLL (object) {_fmt(run.scores['nll_object'], 2)}"
    return text


def trace_figure(
    idata,
    path,
    pixels: Mapping[str, tuple[int, int]],
    title: str | None = None,
    *,
    stat: str | None = "lp",
) -> Path:
    """Trace plots of an MCMC run: the log density and a few pixels, one row each.

    Left a locator (the pooled predictive mean with the pixels numbered), then per row
    the value against the draw index, one line per chain, and beside it each chain's
    histogram on the same value axis. NaN padding of an interrupted chain is skipped.

    Parameters
    ----------
    idata : arviz.InferenceData or path
        A run with several draws per chain in ``posterior_predictive.image``.
    path : str or Path
        Output file; its directory must exist. ``.png`` (default), ``.pdf`` or ``.svg``.
    pixels : mapping of label -> (y, x)
        The pixels to trace, in display order; each row is titled with its number
        and label (e.g. why it was chosen and its R-hat / ESS).
    title : str, optional
        Figure title; defaults to the run's ``method`` attribute.
    stat : str or None
        A ``sample_stats`` variable traced in the first row (default ``"lp"``, the log
        density); skipped when None or absent.

    Returns
    -------
    Path
        The written file.
    """
    target, fmt = _target(path)
    idata = _load(idata)
    if not isinstance(pixels, Mapping) or not pixels:
        raise InputError("pixels must be a non-empty mapping of label -> (y, x)")
    image = idata.posterior_predictive["image"].transpose("chain", "draw", "y", "x")
    values = np.asarray(image.values, dtype=np.float64)
    ny, nx = values.shape[2:]
    chosen = []
    for label, yx in pixels.items():
        y, x = (int(v) for v in yx)
        if not (0 <= y < ny and 0 <= x < nx):
            raise InputError(f"pixel {label!r} at {(y, x)} is outside the {ny} x {nx} image")
        chosen.append((str(label), y, x))
    rows: list[tuple[str, str, np.ndarray]] = []
    stats = getattr(idata, "sample_stats", None)
    if stat is not None and stats is not None and stat in stats:
        series = np.asarray(stats[stat].transpose("chain", "draw").values, dtype=np.float64)
        name = "log density (lp)" if stat == "lp" else stat
        rows.append((name, stat, series))
    for i, (label, y, x) in enumerate(chosen, start=1):
        rows.append((f"{i}: {label}", f"pixel {i}", values[:, :, y, x]))
    mean = posterior.image_draws(idata).mean(axis=0)
    n_chains = values.shape[0]

    with mpl.rc_context(_STYLE):
        fig = Figure(figsize=(11.0, 1.55 * len(rows) + 0.7), layout="constrained")
        grid = fig.add_gridspec(len(rows), 3, width_ratios=[1.4, 4.2, 1.3])
        locator = fig.add_subplot(grid[:, 0])
        _show(locator, mean, "pixel locations", cmap=IMAGE_CMAP, vmin=0, vmax=1)
        for i, (_, y, x) in enumerate(chosen, start=1):
            locator.plot(x, y, marker="o", ms=9, mfc="none", mec="C1", mew=1.5,
                         clip_on=False)
            locator.annotate(str(i), (x, y), xytext=(6, 4), textcoords="offset points",
                             color="C1", fontsize=9, fontweight="bold",
                             annotation_clip=False,
                             path_effects=[patheffects.withStroke(linewidth=2,
                                                                  foreground="black")])
        for row, (text, short, series) in enumerate(rows):
            ax_trace = fig.add_subplot(grid[row, 1])
            ax_hist = fig.add_subplot(grid[row, 2], sharey=ax_trace)
            for chain in range(n_chains):
                color = f"C{chain % 10}"
                ax_trace.plot(np.arange(series.shape[1]), series[chain], lw=0.7, color=color,
                              alpha=0.85, label=f"chain {chain}")
                finite = series[chain][np.isfinite(series[chain])]
                if finite.size:
                    ax_hist.hist(finite, bins=min(30, max(5, finite.size // 5)),
                                 orientation="horizontal", histtype="step", color=color,
                                 lw=1.0)
            ax_trace.set_title(text, loc="left", fontsize=9)
            ax_trace.set_ylabel(short)
            ax_trace.set_xlim(0, max(series.shape[1] - 1, 1))
            ax_trace.yaxis.set_major_locator(MaxNLocator(4))
            ax_hist.tick_params(labelleft=False)
            ax_hist.xaxis.set_major_locator(MaxNLocator(3, integer=True))
            if row == len(rows) - 1:
                ax_trace.set_xlabel("draw (after warmup and thinning)")
                ax_hist.set_xlabel("count")
            else:
                ax_trace.tick_params(labelbottom=False)
            if row == 0:
                ax_hist.set_title("histogram", fontsize=9)
                if 1 < n_chains <= 8:
                    ax_trace.legend(loc="upper right", ncols=min(n_chains, 4), frameon=True,
                                    framealpha=0.8, fontsize=7)
        head = title or _method_of(idata)
        fig.suptitle(f"{head}: traces ({n_chains} chain{'s' if n_chains > 1 else ''})")
        return _save(fig, target, fmt)
