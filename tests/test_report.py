"""Reports: the CLI writes a Markdown page, a self-contained HTML page and the figures;
the MCMC diagnostics on the page are ArviZ's own numbers; bad input exits with 2."""

from __future__ import annotations

import base64
import re
import warnings

import numpy as np
import pytest

from bayes_inr import posterior
from bayes_inr.core.errors import InputError
from bayes_inr.data.sample import phantom_sample
from bayes_inr.inference.baselines.classical import reconstruct
from bayes_inr.inference.config import FitConfig
from bayes_inr.inference.fit import fit
from bayes_inr.plots import style
from bayes_inr.plots.comparison import comparison_figure
from bayes_inr.plots.posterior import posterior_figure
from bayes_inr.plots.trace import trace_figure
from bayes_inr.report import main
from bayes_inr.reports.diagnostics import mcmc_diagnostics, trace_pixels
from bayes_inr.reports.report import report

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

PNG = b"\x89PNG\r\n\x1a\n"
NUTS = {"depth": 1, "width": 8, "omega0": 1.0, "sigma": 0.1, "steps": 30, "lr": 1e-2,
        "warmup": 20, "draws": 12, "thin": 2, "max_tree_depth": 4, "chains": 2}


@pytest.fixture(autouse=True)
def _low_dpi(monkeypatch):
    monkeypatch.setattr(style, "DPI", 40)  # layout unchanged, rasterising faster


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Four run files: MCD, two-chain NUTS, an FBP baseline, MCD without ground truth."""
    folder = tmp_path_factory.mktemp("runs")
    sample = phantom_sample(0, 8, 16)
    mcd = fit(sample, FitConfig(inference="mcd", depth=1, width=16, steps=30, draws=10),
              progress=False)
    nuts = fit(sample, FitConfig(inference="nuts", **NUTS), progress=False)
    fbp = posterior.from_reconstruction(
        reconstruct("fbp", sample.sinogram, sample.geometry), sinogram=sample.sinogram,
        angles=sample.geometry.angles, method="fbp", ground_truth=sample.ground_truth)
    blind = mcd.copy()
    del blind.constant_data["ground_truth"]
    paths = {}
    for name, idata in (("mcd", mcd), ("nuts", nuts), ("fbp", fbp), ("blind", blind)):
        paths[name] = posterior.save(idata, folder / f"{name}.nc")
    return paths


@pytest.fixture(scope="module")
def page(runs, tmp_path_factory):
    """The CLI's report of all four runs: (output folder, Markdown, HTML)."""
    out = tmp_path_factory.mktemp("report") / "new" / "dir"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(style, "DPI", 40)
        code = main([str(runs[k]) for k in ("mcd", "nuts", "fbp", "blind")]
                           + ["--out", str(out)])
    assert code == 0
    return out, (out / "report.md").read_text(), (out / "report.html").read_text()


def test_cli_writes_the_page_and_every_figure(page):
    out, md, _ = page
    expected = {"report.md", "report.html", "comparison.png", "nuts_trace.png"} | {
        f"{name}_posterior.png" for name in ("mcd", "nuts", "fbp", "blind")}
    assert {p.name for p in out.iterdir()} == expected  # no temporary files left over
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == PNG
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert sorted(links) == sorted(p.name for p in out.glob("*.png"))
    assert "## Scores" in md and "## Comparison" in md and "#### MCMC diagnostics" in md
    assert md.count("#### MCMC diagnostics") == 1  # only the NUTS run is MCMC
    # the score table is metrics.score_table over the runs
    for name, method in (("mcd", "mcd"), ("nuts", "nuts"), ("fbp", "fbp")):
        row = next(line for line in md.splitlines() if line.startswith(f"{name} "))
        assert method in row
    assert "calibration" in md and "need a ground truth" in md
    assert "One draw (a deterministic reconstruction)" in md


def test_html_is_self_contained(page):
    out, _, text = page
    sources = re.findall(r'src="([^"]*)"', text)
    assert len(sources) == len(list(out.glob("*.png")))
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert "http://" not in text and "https://" not in text and "<link" not in text
    embedded = {base64.b64decode(s.split(",", 1)[1]) for s in sources}
    assert embedded == {p.read_bytes() for p in out.glob("*.png")}


def _arviz_numbers(idata):
    image = idata.posterior_predictive[["image"]]
    rhat = az.rhat(image)["image"].values
    bulk = az.ess(image, method="bulk")["image"].values
    tail = az.ess(image, method="tail")["image"].values
    return rhat, bulk, tail


def test_diagnostics_are_arviz_numbers(runs, page):
    _, md, _ = page
    idata = posterior.load(runs["nuts"])
    rhat, bulk, tail = _arviz_numbers(idata)
    row = next(line for line in md.splitlines() if line.startswith("| image pixels"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == str(rhat.size)
    assert cells[2] == f"{np.nanmax(rhat):.3f}"
    assert cells[3] == f"{100 * np.mean(rhat > 1.01):.1f} %"
    assert cells[4:7] == [f"{v:.1f}" for v in (bulk.min(), np.median(bulk), bulk.max())]
    assert cells[7:10] == [f"{v:.1f}" for v in (tail.min(), np.median(tail), tail.max())]
    pixel = az.rhat(idata, var_names=["pixel"])["pixel"].values
    row = next(line for line in md.splitlines() if line.startswith("| posterior.pixel"))
    assert f"| {np.nanmax(pixel):.3f} |" in row
    stats = idata.sample_stats
    divergences = int(stats["diverging"].sum())
    assert divergences > 0  # the tiny run diverges: the count must show
    row = next(line for line in md.splitlines() if line.startswith("| all |"))
    assert row.startswith(f"| all | {stats['diverging'].size} | {divergences} |")
    assert f"{divergences} divergent transitions" in md
    assert f"{float(stats['acceptance_rate'].mean()):.3g}" in row


def test_one_chain_uses_the_split_halves(runs, tmp_path):
    idata = posterior.load(runs["nuts"]).isel(chain=[0])
    diag = mcmc_diagnostics(idata)
    values = idata.posterior_predictive["image"].values[0]  # (draw, y, x)
    half = values.shape[0] // 2
    halves = np.stack([values[:half], values[half: 2 * half]])  # (2 chains, draw, y, x)
    expected = az.rhat(az.convert_to_dataset({"image": halves}))["image"].values
    np.testing.assert_allclose(diag.rhat, expected)
    assert az.rhat(halves[:, :, 5, 7]) == pytest.approx(diag.rhat[5, 7])
    np.testing.assert_allclose(diag.ess_bulk, az.ess(idata.posterior_predictive[["image"]],
                                                     method="bulk")["image"].values)
    assert [row["chain"] for row in diag.sampler] == ["0"]
    assert "two halves" in " ".join(diag.notes)
    pixels = trace_pixels(idata, diag)
    assert any(label.startswith("lowest bulk ESS") or ", lowest bulk ESS" in label
               for label in pixels)  # no worst R-hat between chains with one chain
    path = trace_figure(idata, tmp_path / "one.png", pixels)
    assert path.read_bytes()[:8] == PNG


def test_api_takes_in_memory_runs_and_numbers_repeated_labels(runs, tmp_path):
    fbp = posterior.load(runs["fbp"])
    report([fbp, runs["fbp"]], tmp_path, labels=["a", "a"], title="two of a kind")
    names = {p.name for p in tmp_path.iterdir()}
    assert {"a_posterior.png", "a-2_posterior.png", "comparison.png"} <= names
    assert (tmp_path / "report.md").read_text().startswith("# two of a kind")
    assert mcmc_diagnostics(fbp) is None
    assert mcmc_diagnostics(posterior.load(runs["mcd"])) is None
    with pytest.raises(InputError, match="labels"):
        report([fbp], tmp_path, labels=["a", "b"])


def test_bad_input_exits_with_2(runs, tmp_path, capsys):
    empty = tmp_path / "empty.nc"
    empty.touch()
    junk = tmp_path / "junk.nc"
    junk.write_text("not a netCDF file\n")
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    cases = [[str(tmp_path / "missing.nc")], [str(empty)], [str(junk)],
             [str(runs["mcd"]), str(junk)], [str(runs["mcd"]), "--out", str(a_file)]]
    for args in cases:
        out = tmp_path / "out"
        assert main(args + ([] if "--out" in args else ["--out", str(out)])) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error:") and err.count("\n") == 1, (args, err)
        assert not out.exists()  # nothing written before every run was read
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0 and "--out" in capsys.readouterr().out


def test_figures_show_the_variance_and_reject_bad_options(runs, tmp_path):
    idata = posterior.load(runs["nuts"])
    path = posterior_figure(idata, tmp_path / "var.png", spread="variance")
    assert path.read_bytes()[:8] == PNG
    with pytest.raises(InputError, match="spread"):
        posterior_figure(idata, tmp_path / "x.png", spread="sd")
    with pytest.raises(InputError, match="spread"):
        comparison_figure([idata], tmp_path / "x.png", spread="sd")
    with pytest.raises(InputError, match="outside"):
        trace_figure(idata, tmp_path / "x.png", {"far": (99, 0)})
    with pytest.raises(InputError, match="non-empty"):
        trace_figure(idata, tmp_path / "x.png", {})
    assert {p.name for p in tmp_path.iterdir()} == {"var.png"}
