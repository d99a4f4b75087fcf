"""Boxplots of a sweep's validation metric per hyperparameter value (the paper's Figs. 3-4).

One row per swept hyperparameter other than the activation, one column per activation
(titled when there are several);
each box holds the per-trial mean metric of the finished trials with that value. The
y axis is shared by all panels, so boxes compare across the whole figure.
"""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..core.atomic import atomic_path
from ..core.errors import InputError
from ..evaluation.metrics import METRICS
from .style import DPI


def _label(metric: str) -> str:
    """Axis label of a sweep column such as ``psnr`` or ``ece_object``."""
    for name, entry in METRICS.items():
        if metric == name:
            return entry.label
        if metric.startswith(name + "_"):
            return f"{entry.label}, {metric[len(name) + 1:]} pixels"
    return metric


def _sorted_values(values) -> list:
    distinct = list(dict.fromkeys(values))
    try:
        return sorted(distinct)
    except TypeError:  # mixed types: keep the order of first appearance
        return distinct


def boxplot_figure(rows: list[dict], path, metric: str = "psnr") -> Path:
    """Write the boxplots of ``metric`` over the finished trials of ``rows`` (a sweep table)
    to ``path`` (PNG) atomically; returns ``path``."""
    rows = [row for row in rows if row["status"] == "ok" and math.isfinite(row[metric])]
    if not rows:
        raise InputError(f"no finished trials with a {metric} to plot")
    names = list(dict.fromkeys(name for row in rows for name in row["changes"]))
    swept = [name for name in names
             if len({str(row["config"][name]) for row in rows}) > 1]
    params = [name for name in swept if name != "activation"] or ["activation"]
    activations = _sorted_values(row["config"]["activation"] for row in rows)
    # at least 4.5 inches wide, so that the title fits over a single panel
    fig = Figure(figsize=(max(4.5, 0.6 + 2.3 * len(activations)), 0.6 + 2.0 * len(params)),
                 layout="constrained")
    axes = fig.subplots(len(params), len(activations), sharey=True, squeeze=False)
    for i, param in enumerate(params):
        values = _sorted_values(row["config"][param] for row in rows)
        for j, activation in enumerate(activations):
            ax = axes[i, j]
            groups = [[row[metric] for row in rows if row["config"][param] == value
                       and row["config"]["activation"] == activation] for value in values]
            present = [k for k, group in enumerate(groups) if group]
            if present:
                ax.boxplot([groups[k] for k in present], positions=present, widths=0.6,
                           medianprops={"color": "C1"}, flierprops={"markersize": 3})
            ax.set_xticks(range(len(values)), [f"{v:g}" if isinstance(v, float) else str(v)
                                               for v in values])
            ax.set_xlim(-0.6, len(values) - 0.4)
            ax.set_xlabel(param, fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(axis="y", alpha=0.3)
            if i == 0 and len(activations) > 1:
                ax.set_title(activation, fontsize=10)
            if j == 0:
                ax.set_ylabel(f"val {_label(metric)}", fontsize=8)
    fig.suptitle(f"Validation {_label(metric)} per hyperparameter value "
                 f"({len(rows)} trials)", fontsize=10)
    FigureCanvasAgg(fig)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return path

