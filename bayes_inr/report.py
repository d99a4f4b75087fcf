"""Reports of saved runs: Figure-2 panels, MCMC diagnostics, a comparison, one page.

    python -m bayes_inr.report mcd.nc nuts.nc fbp.nc --out report/

For every run (an InferenceData file of :mod:`bayes_inr.posterior`) the report holds

- its scores (:func:`bayes_inr.metrics.score`: PSNR, SSIM, and CRPS, NLL, ECE, PIT
  error and one- and two-sided coverage on the object first) in one table over all
  runs, and per run the calibration figures on each pixel set (object, background,
  all) side by side;
- its Figure-2 panel (:func:`bayes_inr.plotting.posterior_figure`): ground truth,
  pixel-wise predictive mean and variance, squared error, coverage map, reliability
  curves and PIT histograms of the object and of all pixels. A run without ground
  truth shows mean and variance only (calibration needs a ground truth); a
  deterministic run (one draw, e.g. a classical baseline) shows the
  reconstruction and its error;
- for MCMC runs (``hmc``/``nuts``) the ArviZ diagnostics, computed on the stored draws:
  rank-normalised split R-hat (:func:`bayes_inr.convergence.split_rhat`, stated as
  :func:`~bayes_inr.convergence.rhat_statement`) and bulk/tail ESS over every pixel of
  ``posterior_predictive.image`` and over each ``posterior`` variable, the divergences
  and the sampler's warnings (:func:`~bayes_inr.convergence.sampler_warnings`),
  a per-chain table of step size, acceptance rate, leapfrog steps and tree depth, and a
  trace figure (:func:`bayes_inr.plotting.trace_figure`) of the log density and four
  pixels (highest variance, median variance, the centre, the worst R-hat or ESS).

With two runs or more, :func:`bayes_inr.plotting.comparison_figure` shows them side by
side. Output in ``DIR``: the PNG figures, ``report.md`` (figures linked by relative
path) and ``report.html`` (self-contained: figures embedded as base64 data URIs). Every
file is written atomically.
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import html
import logging
import math
import os
import re
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from . import metrics, plotting, posterior
from .atomic import atomic_path
from .config import MCMC
from .convergence import (
    ESS_LOW,
    MIN_CHAINS,
    ONE_CHAIN_NOTE,
    RHAT_LIMIT,
    rhat_statement,
    sampler_warnings,
    split_rhat,
)
from .errors import InputError
from .outputs import check_output_dir, output_lock

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

SCORE_COLUMNS = ("run", "method", "n_draws", "psnr", "ssim", "crps_object", "nll_object",
                 "ece_object", "pit_error_object", "coverage_90_object", "below_90_object",
                 "above_90_object", "ece_all", "tied_all")

SAMPLER_STATS = (  # (sample_stats variable, column, reduction)
    ("step_size", "step size", "mean"),
    ("acceptance_rate", "acceptance (mean)", "mean"),
    ("n_steps", "leapfrog steps (mean)", "mean"),
    ("tree_depth", "tree depth (mean)", "mean"),
    ("tree_depth", "tree depth (max)", "max"),
)


# ----------------------------------------------------------------------------- diagnostics


@dataclass
class Diagnostics:
    """ArviZ diagnostics of one MCMC run, over the stored draws.

    ``image`` summarises the per-pixel maps ``rhat``, ``ess_bulk``, ``ess_tail`` of
    ``posterior_predictive.image`` (each (y, x)); ``params`` has one row per ``posterior``
    variable;
    ``sampler`` one row per chain plus an ``all`` row.
    """

    chains: int
    draws: int
    notes: list[str]
    rhat: np.ndarray
    ess_bulk: np.ndarray
    ess_tail: np.ndarray
    image: dict
    params: list[dict] = field(default_factory=list)
    sampler: list[dict] = field(default_factory=list)
    divergences: int = 0
    transitions: int = 0
    warnings: list[str] = field(default_factory=list)


def is_mcmc(idata) -> bool:
    """Whether a run is an MCMC run: method hmc/nuts, or sampler statistics with
    divergences."""
    method = str(posterior.run_attrs(idata).get("method", "")).lower()
    stats = getattr(idata, "sample_stats", None)
    return method in MCMC or (stats is not None and "diverging" in stats)


def _arviz(ds: xr.Dataset, name: str) -> tuple[np.ndarray, ...]:
    """R-hat, bulk ESS and tail ESS of one variable, element-wise (NaN where undefined)."""
    data = ds[[name]]
    rhat = split_rhat(data)[name].values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        bulk = az.ess(data, method="bulk")[name].values
        tail = az.ess(data, method="tail")[name].values
    return (np.asarray(rhat, dtype=np.float64), np.asarray(bulk, dtype=np.float64),
            np.asarray(tail, dtype=np.float64))


def _summary(rhat: np.ndarray, bulk: np.ndarray, tail: np.ndarray) -> dict:
    def stat(fn, values):
        finite = values[np.isfinite(values)]
        return float(fn(finite)) if finite.size else math.nan

    finite_rhat = rhat[np.isfinite(rhat)]
    return {
        "size": int(rhat.size),
        "rhat_max": stat(np.max, rhat),
        "rhat_over": float((finite_rhat > RHAT_LIMIT).sum() / rhat.size) if rhat.size else 0.0,
        "rhat_undefined": int((~np.isfinite(rhat)).sum()),
        "ess_bulk_min": stat(np.min, bulk),
        "ess_bulk_median": stat(np.median, bulk),
        "ess_bulk_max": stat(np.max, bulk),
        "ess_tail_min": stat(np.min, tail),
        "ess_tail_median": stat(np.median, tail),
        "ess_tail_max": stat(np.max, tail),
    }


def mcmc_diagnostics(idata) -> Diagnostics | None:
    """ArviZ diagnostics of an MCMC run (None for any other run).

    R-hat is :func:`bayes_inr.convergence.split_rhat` (ArviZ's rank-normalised split
    R-hat; with a single chain that of the chain's two halves taken as two chains: a
    check of stationarity within the chain, not of agreement between chains). Bulk and
    tail ESS (:func:`arviz.ess`) are over all chains. A partial run (chains of unequal
    length) is cut to its shortest chain (:func:`bayes_inr.posterior.trim_partial`).
    """
    if not is_mcmc(idata):
        return None
    full = int(idata.posterior_predictive.sizes["draw"])
    idata = posterior.trim_partial(idata)
    pp = idata.posterior_predictive[["image"]]
    chains, draws = int(pp.sizes["chain"]), int(pp.sizes["draw"])
    notes = []
    if draws < full:
        notes.append(f"a partial run: every chain is cut to the shortest chain's {draws} "
                     f"of {full} draws for the diagnostics")
    if chains < MIN_CHAINS:
        notes.append(ONE_CHAIN_NOTE)
    if draws < 8:
        notes.append(f"only {draws} draws per chain: R-hat and ESS are unreliable")
    logger = logging.getLogger("arviz")
    level = logger.level
    logger.setLevel(logging.ERROR)  # "shape validation failed" for very short chains
    try:
        rhat, bulk, tail = _arviz(pp, "image")
        post = getattr(idata, "posterior", None)
        params = [{"variable": str(name), **_summary(*_arviz(post, name))}
                  for name in (post.data_vars if post is not None else ())]
    finally:
        logger.setLevel(level)

    sampler, divergences, transitions = [], 0, 0
    stats = getattr(idata, "sample_stats", None)
    if stats is not None:
        for chain in [*range(chains), None] if chains > 1 else [0]:
            sub = stats if chain is None else stats.isel(chain=chain)
            row: dict = {"chain": "all" if chain is None else str(chain)}
            if "diverging" in sub:
                values = np.asarray(sub["diverging"].values, dtype=np.float64)
                values = values[np.isfinite(values)]
                row["draws"] = int(values.size)
                row["divergences"] = int(values.sum())
            for name, column, how in SAMPLER_STATS:
                if name in sub:
                    values = np.asarray(sub[name].values, dtype=np.float64)
                    values = values[np.isfinite(values)]
                    if values.size:
                        row[column] = float(values.mean() if how == "mean" else values.max())
            sampler.append(row)
        if "diverging" in stats:
            divergences = sum(row["divergences"] for row in sampler[:chains])
            transitions = sum(row["draws"] for row in sampler[:chains])
    return Diagnostics(chains=chains, draws=draws, notes=notes, rhat=rhat, ess_bulk=bulk,
                       ess_tail=tail, image=_summary(rhat, bulk, tail), params=params,
                       sampler=sampler, divergences=divergences, transitions=transitions,
                       warnings=sampler_warnings(idata))


def trace_pixels(idata, diag: Diagnostics) -> dict[str, tuple[int, int]]:
    """Up to four pixels worth tracing, labelled with why and with their diagnostics:
    the highest and the median pooled variance, the centre, and the worst R-hat (with
    one chain: the lowest bulk ESS)."""
    _, var = metrics.predictive_moments(posterior.image_draws(idata))
    ny, nx = var.shape
    flat = var.ravel()
    order = np.argsort(flat, kind="stable")
    picks = [("highest variance", int(order[-1])),
             ("median variance", int(order[order.size // 2])),
             ("centre", (ny // 2) * nx + nx // 2)]
    if diag.chains > 1 and np.isfinite(diag.rhat).any():
        picks.append(("worst R-hat", int(np.nanargmax(diag.rhat))))
    elif np.isfinite(diag.ess_bulk).any():
        picks.append(("lowest bulk ESS", int(np.nanargmin(diag.ess_bulk))))
    chosen: dict[int, list[str]] = {}
    for why, index in picks:
        chosen.setdefault(index, []).append(why)
    pixels = {}
    for index, whys in chosen.items():
        y, x = divmod(index, nx)
        label = (f"{', '.join(whys)} (y {y}, x {x}): sd {math.sqrt(flat[index]):.3g}, "
                 f"R-hat {_num(diag.rhat[y, x], 3)}, ESS bulk {_num(diag.ess_bulk[y, x], 0)}"
                 f" / tail {_num(diag.ess_tail[y, x], 0)}")
        pixels[label] = (y, x)
    return pixels


# ----------------------------------------------------------------------------- page model


def _num(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    value = float(value)
    if math.isnan(value):
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}f}"


def _sig(value) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.3g}"


@dataclass
class _Page:
    """The page as blocks, rendered once as Markdown and once as HTML."""

    blocks: list[tuple] = field(default_factory=list)

    def heading(self, level: int, text: str) -> None:
        self.blocks.append(("h", level, text))

    def para(self, text: str) -> None:
        self.blocks.append(("p", text))

    def items(self, items: Sequence[str]) -> None:
        if items:
            self.blocks.append(("ul", list(items)))

    def pre(self, text: str) -> None:
        self.blocks.append(("pre", text))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        self.blocks.append(("table", list(header), [list(r) for r in rows]))

    def figure(self, path: Path, alt: str) -> None:
        self.blocks.append(("img", path, alt))

    def markdown(self) -> str:
        out = []
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                out.append(f"{'#' * block[1]} {block[2]}")
            elif kind == "p":
                out.append(block[1])
            elif kind == "ul":
                out.append("\n".join(f"- {item}" for item in block[1]))
            elif kind == "pre":
                out.append(f"```\n{block[1]}\n```")
            elif kind == "table":
                header, rows = block[1], block[2]

                def line(cells):
                    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

                out.append("\n".join([line(header), "|" + "---|" * len(header),
                                      *(line(r) for r in rows)]))
            elif kind == "img":
                out.append(f"![{block[2]}]({block[1].name})")
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        esc = html.escape
        body = []
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                body.append(f"<h{block[1]}>{esc(block[2])}</h{block[1]}>")
            elif kind == "p":
                body.append(f"<p>{_inline(block[1])}</p>")
            elif kind == "ul":
                body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block[1])
                            + "</ul>")
            elif kind == "pre":
                body.append(f"<pre>{esc(block[1])}</pre>")
            elif kind == "table":
                head = "".join(f"<th>{esc(str(c))}</th>" for c in block[1])
                rows = "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in r)
                               + "</tr>" for r in block[2])
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>"
                            "</table>")
            elif kind == "img":
                data = base64.b64encode(block[1].read_bytes()).decode("ascii")
                body.append(f'<figure><img alt="{esc(block[2], quote=True)}" '
                            f'src="data:image/png;base64,{data}"><figcaption>'
                            f"{esc(block[1].name)}</figcaption></figure>")
        return _HTML.format(title=esc(title), body="\n".join(body))


def _inline(text: str) -> str:
    """Markdown's `code` and **bold** in a paragraph, as HTML (everything else escaped)."""
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)


_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1250px; margin: 1.5em auto;
       padding: 0 1em; color: #222; line-height: 1.4; }}
h1, h2, h3 {{ font-weight: 600; }}
h2 {{ border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #f2f2f2; }}
td:first-child, th:first-child {{ text-align: left; }}
pre {{ background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }}
figure {{ margin: 0.5em 0 1.5em; }}
figure img {{ max-width: 100%; border: 1px solid #eee; }}
figcaption {{ font-size: 0.8em; color: #666; }}
code {{ background: #f2f2f2; padding: 0 0.2em; }}
</style>
</head>
<body>
{body}
</body>
</html>
"""


# ----------------------------------------------------------------------------- report


@dataclass
class _Entry:
    label: str
    source: str
    idata: object


def _slug(text: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._")
    return slug or "run"


def _entries(runs, labels) -> list[_Entry]:
    if isinstance(runs, (str, os.PathLike)) or not isinstance(runs, Sequence):
        runs = [runs]
    if not runs:
        raise InputError("report needs at least one run")
    if labels is not None and len(labels) != len(runs):
        raise InputError(f"{len(labels)} labels for {len(runs)} runs")
    entries, seen = [], {}
    for i, run in enumerate(runs):
        if isinstance(run, (str, os.PathLike)):
            idata, source, stem = posterior.load(run), str(run), Path(run).stem
        else:
            idata, source = run, "(in memory)"
            stem = str(posterior.run_attrs(idata).get("method", "run"))
        label = _slug(str(labels[i]) if labels is not None else stem)
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            label = f"{label}-{seen[label]}"
        entries.append(_Entry(label, source, idata))
    return entries


def _describe(entry: _Entry) -> list[str]:
    idata = entry.idata
    attrs = posterior.run_attrs(idata)
    image = idata.posterior_predictive["image"]
    chains, draws = int(image.sizes["chain"]), int(image.sizes["draw"])
    n = posterior.image_draws(idata).shape[0]
    items = [f"file `{entry.source}`, method **{attrs.get('method', '?')}**",
             f"{n} draw{'s' if n != 1 else ''} ({chains} chain{'s' if chains != 1 else ''} "
             f"x {draws}), image {image.sizes['y']} x {image.sizes['x']}"]
    obs = getattr(idata, "observed_data", None)
    if obs is not None and "sinogram" in obs:
        items[-1] += f", {obs['sinogram'].sizes['angle']} views"
    extra = []
    if "wall_time" in attrs:
        extra.append(f"wall time {float(attrs['wall_time']):.1f} s")
    for key, name in (("seed", "seed"), ("device", "device"),
                      ("bayes_inr_version", "bayes_inr"), ("created_at", "created")):
        if key in attrs:
            extra.append(f"{name} {attrs[key]}")
    if extra:
        items.append(", ".join(extra))
    return items


def _has_truth(idata) -> bool:
    constant = getattr(idata, "constant_data", None)
    return constant is not None and "ground_truth" in constant


def _scores(entries: list[_Entry]) -> list[dict]:
    rows = []
    for entry in entries:
        row = {"run": entry.label}
        if _has_truth(entry.idata):
            row.update(metrics.score(entry.idata))
        else:
            row["method"] = posterior.run_attrs(entry.idata).get("method")
            row["n_draws"] = int(posterior.image_draws(entry.idata).shape[0])
        rows.append(row)
    return rows


def _diagnostics_section(page: _Page, entry: _Entry, diag: Diagnostics, out: Path) -> None:
    page.heading(4, "MCMC diagnostics (ArviZ)")
    s = diag.image
    verdict = []
    if s["rhat_over"] > 0:
        verdict.append(f"R-hat > {RHAT_LIMIT} on {100 * s['rhat_over']:.1f} % of the pixels: "
                       + ("the chains disagree, the posterior is not converged"
                          if diag.chains > 1 else "the chain's halves disagree, it has not "
                          "reached its stationary distribution"))
    if not math.isnan(s["ess_bulk_min"]) and s["ess_bulk_min"] < ESS_LOW:
        verdict.append(f"bulk ESS below {ESS_LOW} on "
                       f"{100 * float((diag.ess_bulk < ESS_LOW).mean()):.1f} % of the pixels: "
                       "means and quantiles are imprecise")
    verdict += diag.warnings
    if diag.chains < MIN_CHAINS:
        verdict.append(f"one chain: R-hat cannot tell whether the run converged (run >= "
                       f"{MIN_CHAINS} chains)")
    page.para(f"{diag.chains} chain{'s' if diag.chains > 1 else ''} x {diag.draws} draws. "
              + ("**Warnings:** " + "; ".join(verdict) + "." if verdict
                 else f"No warning: R-hat <= {RHAT_LIMIT}, bulk ESS >= {ESS_LOW} everywhere, "
                 "no sampler warning."))
    page.items([rhat_statement(diag.rhat, diag.chains), *diag.notes])
    undefined = (f" ({s['rhat_undefined']} pixels undefined: constant draws)"
                 if s["rhat_undefined"] else "")
    page.table(
        ["quantity", "elements", "max R-hat", f"R-hat > {RHAT_LIMIT}", "ESS bulk min",
         "median", "max", "ESS tail min", "median", "max"],
        [[f"image pixels{undefined}", str(s["size"]), _num(s["rhat_max"]),
          f"{100 * s['rhat_over']:.1f} %", _num(s["ess_bulk_min"], 1),
          _num(s["ess_bulk_median"], 1), _num(s["ess_bulk_max"], 1),
          _num(s["ess_tail_min"], 1), _num(s["ess_tail_median"], 1),
          _num(s["ess_tail_max"], 1)]]
        + [[f"posterior.{p['variable']}", str(p["size"]), _num(p["rhat_max"]),
            f"{100 * p['rhat_over']:.1f} %", _num(p["ess_bulk_min"], 1),
            _num(p["ess_bulk_median"], 1), _num(p["ess_bulk_max"], 1),
            _num(p["ess_tail_min"], 1), _num(p["ess_tail_median"], 1),
            _num(p["ess_tail_max"], 1)] for p in diag.params])
    if diag.sampler:
        columns = ["chain", "draws", "divergences"] + [
            c for _, c, _ in SAMPLER_STATS if any(c in row for row in diag.sampler)]
        rows = [[str(row[c]) if c in ("chain", "draws", "divergences") and c in row
                 else _sig(row.get(c, math.nan)) for c in columns] for row in diag.sampler]
        page.para("Sampler statistics (`sample_stats`, after warmup; leapfrog steps = "
                  "gradient evaluations per draw):")
        page.table(columns, rows)
    if diag.draws >= 2:
        path = plotting.trace_figure(entry.idata, out / f"{entry.label}_trace.png",
                                     trace_pixels(entry.idata, diag), title=entry.label)
        page.figure(path, f"{entry.label}: traces")


def report(runs, out, *, labels: Sequence[str] | None = None, title: str | None = None) -> Path:
    """Write the figures and the page of one or more runs into ``out``.

    Parameters
    ----------
    runs : sequence of paths or arviz.InferenceData
        The runs, in display order (a single path is one run).
    out : str or Path
        Output folder; created if missing.
    labels : sequence of str, optional
        One name per run (file names and headings); default the file stems (the
        method for in-memory runs), numbered when repeated.
    title : str, optional
        Page title.

    Returns
    -------
    Path
        ``out / "report.html"``; ``report.md`` and the PNGs lie beside it.

    Raises
    ------
    InputError
        A missing, empty or invalid run file, or an output path that is not a folder.
    """
    entries = _entries(runs, labels)  # read every run before writing anything
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"cannot write the report into {out}: it is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    title = title or "bayes_inr report"

    page = _Page()
    page.heading(1, title)
    stamp = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    from . import __version__

    page.para(f"{len(entries)} run{'s' if len(entries) > 1 else ''}, generated {stamp} by "
              f"bayes_inr {__version__}. Images lie in [0, 1]; PSNR uses data range 1. "
              "Calibration is scored on the object (true value > 0) first: air is easy to "
              "be calibrated on; `_all` columns are over every pixel, `tied_all` is the "
              "share of pixels whose truth equals a draw. From the randomised PIT of each "
              "pixel (its truth ranked among its S draws plus itself, ties spread): "
              "coverage_90 is the share of PITs in [0.05, 0.95], below_90 / above_90 the "
              "shares under / over it (0.05 each when calibrated), ECE the mean |coverage(q) "
              "- q| over q = 0, 0.05, ..., 0.95 (no interval widening), PIT error the mean "
              "gap between the PITs' CDF and the uniform CDF. NLL is Gaussian per pixel "
              "with variance floor 1e-6; CRPS is that of the draws' empirical distribution "
              "(a one-draw reconstruction's is its mean absolute error). Ensemble members "
              "weigh 1/K each.")

    page.heading(2, "Scores")
    scores = _scores(entries)
    page.pre(metrics.score_table(scores, columns=SCORE_COLUMNS))
    notes = []
    if any(not _has_truth(e.idata) for e in entries):
        notes.append("Runs without a ground truth are not scored: PSNR, SSIM and "
                     "calibration (NLL, ECE, coverage, reliability) need a ground truth.")
    if any(row["n_draws"] < 2 for row in scores):
        notes.append("Runs with one draw (deterministic reconstructions) have no "
                     "uncertainty: NLL, ECE and coverage are undefined (-).")
    page.items(notes)

    if len(entries) >= 2:
        page.heading(2, "Comparison")
        page.para("One row per run; the colour scale of each column is shared.")
        path = plotting.comparison_figure([e.idata for e in entries], out / "comparison.png",
                                          labels=[e.label for e in entries],
                                          spread="variance")
        page.figure(path, "comparison of the runs")

    for entry, row in zip(entries, scores, strict=True):
        page.heading(2, f"Run {entry.label}")
        page.items(_describe(entry))
        n = posterior.image_draws(entry.idata).shape[0]
        if n < 2:
            page.para("One draw (a deterministic reconstruction): the reconstruction and "
                      "its error only; there is no uncertainty to show or calibrate.")
        if not _has_truth(entry.idata):
            page.para("No ground truth in this file: the predictive mean and variance are "
                      "shown; the squared error, coverage map, reliability curve and ECE "
                      "need a ground truth.")
        if n >= 2 and _has_truth(entry.idata):
            page.para("Calibration by pixel set (object: true value > 0):")
            page.pre(metrics.calibration_table(row))
        path = plotting.posterior_figure(entry.idata, out / f"{entry.label}_posterior.png",
                                         title=entry.label, spread="variance")
        page.figure(path, f"{entry.label}: posterior panel")
        diag = mcmc_diagnostics(entry.idata)
        if diag is not None:
            _diagnostics_section(page, entry, diag, out)

    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(page.markdown(), encoding="utf-8")
    target = out / "report.html"
    with atomic_path(target) as tmp:
        tmp.write_text(page.html(title), encoding="utf-8")
    return target


# ----------------------------------------------------------------------------- CLI


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bayes_inr.report",
        description="Report one or more saved runs: Figure-2 panels, MCMC diagnostics "
                    "(R-hat, ESS, divergences, traces), a side-by-side comparison, and one "
                    "page as Markdown (report.md) and self-contained HTML (report.html).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN.nc",
                   help="InferenceData files written by bayes_inr (fit, demo, baselines)")
    p.add_argument("--out", type=Path, default=Path("report"),
                   help="output folder (created if missing; the report's files in it are "
                        "replaced)")
    p.add_argument("--label", action="append", dest="labels", metavar="NAME",
                   help="name of a run, once per run in order (default: the file stems)")
    p.add_argument("--title", help="page title")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        check_output_dir(args.out)
        args.out.parent.mkdir(parents=True, exist_ok=True)  # for the lock beside --out
        with output_lock(args.out):
            target = report(args.runs, args.out, labels=args.labels, title=args.title)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {target} and {target.with_suffix('.md')} ({len(args.runs)} "
          f"run{'s' if len(args.runs) > 1 else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
