"""MCMC traces of the log density and a few pixels, per chain.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib as mpl
import numpy as np
from matplotlib import patheffects
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .. import posterior
from ..core.errors import InputError
from .style import _STYLE, IMAGE_CMAP, _load, _method_of, _save, _show, _target


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
