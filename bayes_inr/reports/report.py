"""Reports of saved runs: Figure-2 panels, MCMC diagnostics, a comparison, one page.

For every run (an InferenceData file of :mod:`bayes_inr.posterior`) the report holds

- its scores (:func:`bayes_inr.evaluation.metrics.score`: PSNR, SSIM, and CRPS, NLL, ECE, PIT
  error and one- and two-sided coverage on the object first) in one table over all
  runs, and per run the calibration figures on each pixel set (object, background,
  all) side by side;
- its Figure-2 panel (:func:`bayes_inr.plots.posterior.posterior_figure`): ground truth,
  pixel-wise predictive mean and variance, squared error, coverage map, reliability
  curves and PIT histograms of the object and of all pixels. A run without ground
  truth shows mean and variance only (calibration needs a ground truth); a
  deterministic run (one draw, e.g. a classical baseline) shows the
  reconstruction and its error;
- for MCMC runs (``hmc``/``nuts``) the ArviZ diagnostics, computed on the stored draws:
  rank-normalised split R-hat (:func:`bayes_inr.evaluation.convergence.split_rhat`, stated as
  :func:`~bayes_inr.evaluation.convergence.rhat_statement`) and bulk/tail ESS over every pixel of
  ``posterior_predictive.image`` and over each ``posterior`` variable, the divergences
  and the sampler's warnings (:func:`~bayes_inr.evaluation.convergence.sampler_warnings`),
  a per-chain table of step size, acceptance rate, leapfrog steps and tree depth, and a
  trace figure (:func:`bayes_inr.plots.trace.trace_figure`) of the log density and four
  pixels (highest variance, median variance, the centre, the worst R-hat or ESS).

With two runs or more, :func:`bayes_inr.plots.comparison.comparison_figure` shows them side by
side. Output in ``DIR``: the PNG figures, ``report.md`` (figures linked by relative
path) and ``report.html`` (self-contained: figures embedded as base64 data URIs). Every
file is written atomically.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import posterior
from ..core.atomic import atomic_path
from ..core.errors import InputError
from ..evaluation import metrics
from ..evaluation.convergence import (
    ESS_LOW,
    MIN_CHAINS,
    RHAT_LIMIT,
    rhat_statement,
)
from ..evaluation.recalibration import apply, check_applicable, load_calibration
from ..plots.comparison import comparison_figure
from ..plots.posterior import posterior_figure
from ..plots.trace import trace_figure
from .diagnostics import SAMPLER_STATS, Diagnostics, mcmc_diagnostics, trace_pixels
from .page import _num, _Page, _sig

SCORE_COLUMNS = ("run", "method", "n_draws", *metrics.SUMMARY)


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


def _with_recalibrated(entries: list[_Entry], calibrations: Sequence) -> list[_Entry]:
    """Every run followed by its recalibrated predictive
    (:func:`~bayes_inr.evaluation.recalibration.apply`) under each calibration file that
    applies to it, labelled ``LABEL+recal`` (``LABEL+recal-STEM`` with several files);
    :class:`InputError` for a file that applies to none of the runs."""
    loaded = [(Path(path), load_calibration(path)[0]) for path in calibrations]
    used, out = set(), []
    for entry in entries:
        out.append(entry)
        for path, calibration in loaded:
            try:
                check_applicable(calibration, entry.idata, entry.label)
            except InputError:
                continue
            used.add(path)
            suffix = "+recal" if len(loaded) == 1 else f"+recal-{_slug(path.stem)}"
            out.append(_Entry(entry.label + suffix, str(path), apply(entry.idata, path)))
    unused = [str(path) for path, _ in loaded if path not in used]
    if unused:
        raise InputError(f"calibration {', '.join(unused)} applies to none of the runs (it "
                         "calibrates another method, configuration, view count or image "
                         "size, or the runs are its own calibration images)")
    return out


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
        path = trace_figure(entry.idata, out / f"{entry.label}_trace.png",
                                     trace_pixels(entry.idata, diag), title=entry.label)
        page.figure(path, f"{entry.label}: traces")


def report(runs, out, *, labels: Sequence[str] | None = None, title: str | None = None,
           calibrations: Sequence = ()) -> Path:
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
    calibrations : sequence of paths
        Calibration files (``python -m bayes_inr.recalibration fit``): each run they apply
        to is followed by its recalibrated predictive, scored side by side.

    Returns
    -------
    Path
        ``out / "report.html"``; ``report.md`` and the PNGs lie beside it.

    Raises
    ------
    InputError
        A missing, empty or invalid run file, or an output path that is not a folder.
    """
    # read (and recalibrate) every run before writing anything
    entries = _with_recalibrated(_entries(runs, labels), calibrations)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"cannot write the report into {out}: it is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    title = title or "bayes_inr report"

    page = _Page()
    page.heading(1, title)
    stamp = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    from .. import __version__

    page.para(f"{len(entries)} run{'s' if len(entries) > 1 else ''}, generated {stamp} by "
              f"bayes_inr {__version__}. Images lie in [0, 1]; PSNR uses data range 1. "
              "Calibration is scored on the object (true value above the air level: 0 for "
              "phantoms, -950 HU for CT slices) first: air is easy to be calibrated on; "
              "`_all` columns are over every pixel, `tied_all` is the share of pixels whose "
              "truth equals a draw. From the randomised PIT of each pixel (its truth ranked "
              "among its S draws plus itself, ties spread): "
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
        path = comparison_figure([e.idata for e in entries], out / "comparison.png",
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
            page.para(f"Calibration by pixel set (object: true value > {row['air_level']:g}):")
            page.pre(metrics.calibration_table(row))
        path = posterior_figure(entry.idata, out / f"{entry.label}_posterior.png",
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
