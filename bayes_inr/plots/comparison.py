"""Runs side by side, one row each, the colour scale of each column shared.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib as mpl
from matplotlib.figure import Figure

from ..core.errors import InputError
from .style import (
    _STYLE,
    ERROR_CMAP,
    IMAGE_CMAP,
    PANEL_INCHES,
    SPREADS,
    STD_CMAP,
    _check_spread,
    _colorbar,
    _extend,
    _fmt,
    _note,
    _reliability,
    _Run,
    _save,
    _show,
    _target,
    _upper,
)


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
