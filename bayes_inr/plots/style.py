"""What the figures share: style, colour maps, file output, and a run's view (:class:`_Run`).

- :func:`reconstruction_figure`: ground truth, sinogram and any number of
  reconstructions side by side, each titled with its PSNR / SSIM.
- :func:`posterior_figure`: the paper's Figure-2 panel for one run, read from its
  InferenceData only: truth, predictive mean, predictive std (or variance), squared
  error, coverage map ``|x - m| / s`` and the reliability curve.
- :func:`comparison_figure`: one row per run (mean, std or variance, squared error,
  reliability) with the colour scale of each column shared across the rows.
- :func:`trace_figure`: MCMC traces of the log density and a few pixels, per chain.

The helpers named with a leading underscore are private to :mod:`bayes_inr.plots`.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .. import posterior
from ..core.atomic import atomic_path
from ..core.errors import InputError, check_finite
from ..evaluation import metrics

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
                masks = metrics.support_masks(self.truth, posterior.air_level(idata))
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


def _check_spread(spread: str) -> str:
    if spread not in SPREADS:
        raise InputError(f"unknown spread {spread!r}; choose one of {', '.join(SPREADS)}")
    return spread
