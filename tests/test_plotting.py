"""Figures: each one writes a valid PNG atomically, handles deterministic and
truth-less runs, and rejects a bad output path before drawing anything."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bayes_inr import posterior
from bayes_inr.core.errors import InputError
from bayes_inr.plots import style
from bayes_inr.plots.comparison import comparison_figure
from bayes_inr.plots.posterior import posterior_figure
from bayes_inr.plots.reconstruction import reconstruction_figure

N, S = 32, 20
V, D = 5, 47
ANGLES = np.linspace(0.0, np.pi, V, endpoint=False)
PNG = b"\x89PNG\r\n\x1a\n"


def _phantom() -> np.ndarray:
    yy, xx = np.mgrid[-1 : 1 : N * 1j, -1 : 1 : N * 1j]
    truth = np.where(xx**2 / 0.8**2 + yy**2 / 0.9**2 < 1, 0.8, 0.0)
    truth[(xx - 0.3) ** 2 + (yy + 0.2) ** 2 < 0.08] = 0.3
    return truth


@pytest.fixture(autouse=True)
def _low_dpi(monkeypatch):
    # Rasterising at a low resolution keeps the module fast; layout is unchanged.
    monkeypatch.setattr(style, "DPI", 40)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    truth = _phantom()
    sinogram = rng.random((V, D))
    std = 0.02 + 0.05 * np.abs(np.linspace(-1, 1, N))[None, :]
    draws = truth + std * rng.standard_normal((2, S // 2, N, N))
    stochastic = posterior.build(draws, sinogram=sinogram, angles=ANGLES, method="MCD",
                                 config={"p": 0.1}, ground_truth=truth)
    no_truth = posterior.build(draws, sinogram=sinogram, angles=ANGLES, method="BBB",
                               config={})
    single = posterior.from_reconstruction(
        np.clip(truth + 0.05 * rng.standard_normal((N, N)), 0, 1), sinogram=sinogram,
        angles=ANGLES, method="FBP", ground_truth=truth)
    return {"truth": truth, "sinogram": sinogram, "stochastic": stochastic,
            "no_truth": no_truth, "single": single, "draws": draws}


def _check_png(path: Path, written: Path) -> None:
    assert written == path
    assert path.read_bytes()[:8] == PNG
    leftovers = [p.name for p in path.parent.iterdir() if p.name != path.name]
    assert leftovers == [], f"temporary files left behind: {leftovers}"


def test_reconstruction_figure(tmp_path, data):
    path = tmp_path / "recon.png"
    recons = {"FBP": posterior.image_draws(data["single"])[0],
              "MCD": data["draws"].reshape(-1, N, N).mean(axis=0)}
    written = reconstruction_figure(data["truth"], data["sinogram"], recons, path,
                                             title="phantom 0", angles=ANGLES)
    _check_png(path, written)


def test_reconstruction_figure_without_truth_wraps(tmp_path, data):
    path = tmp_path / "recon.png"
    recons = {f"method {i}": data["truth"] for i in range(3)}
    written = reconstruction_figure(None, data["sinogram"], recons, str(path),
                                             max_columns=3)
    _check_png(path, written)


def test_reconstruction_figure_rejects_bad_input(tmp_path, data):
    path = tmp_path / "recon.png"
    with pytest.raises(InputError, match="non-empty"):
        reconstruction_figure(data["truth"], data["sinogram"], {}, path)
    with pytest.raises(InputError, match="shape"):
        reconstruction_figure(data["truth"], data["sinogram"],
                                       {"bad": np.zeros((N, N + 1))}, path)
    with pytest.raises(InputError, match="angles"):
        reconstruction_figure(data["truth"], data["sinogram"],
                                       {"ok": data["truth"]}, path, angles=ANGLES[:3])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("run", ["stochastic", "single", "no_truth"])
def test_posterior_figure(tmp_path, data, run):
    import sys

    had_pyplot = "matplotlib.pyplot" in sys.modules
    path = tmp_path / f"{run}.png"
    written = posterior_figure(data[run], path)
    _check_png(path, written)
    assert ("matplotlib.pyplot" in sys.modules) == had_pyplot  # no global figure state


def test_posterior_figure_reads_a_saved_file(tmp_path, data):
    nc = posterior.save(data["single"], tmp_path / "run.nc")
    path = tmp_path / "out.png"
    assert posterior_figure(nc, path, title="FBP baseline") == path
    assert path.read_bytes()[:8] == PNG


def test_comparison_figure_mixed_runs(tmp_path, data):
    path = tmp_path / "comparison.png"
    runs = [data["stochastic"], data["single"], data["no_truth"]]
    written = comparison_figure(runs, path, labels=["MCD", "FBP", "BBB"],
                                         title="three runs")
    _check_png(path, written)


def test_comparison_figure_rejects_bad_input(tmp_path, data):
    path = tmp_path / "comparison.png"
    with pytest.raises(InputError, match="at least one"):
        comparison_figure([], path)
    with pytest.raises(InputError, match="labels"):
        comparison_figure([data["stochastic"]], path, labels=["a", "b"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["recon", "posterior", "comparison"])
def test_bad_path_raises_before_drawing(tmp_path, data, kind):
    missing = tmp_path / "no" / "such" / "dir" / "figure.png"
    with pytest.raises(InputError, match="does not exist"):
        if kind == "recon":
            reconstruction_figure(data["truth"], data["sinogram"],
                                           {"x": data["truth"]}, missing)
        elif kind == "posterior":
            posterior_figure(data["stochastic"], missing)
        else:
            comparison_figure([data["stochastic"]], missing)


def test_bad_suffix_and_directory_target(tmp_path, data):
    with pytest.raises(InputError, match="format"):
        posterior_figure(data["stochastic"], tmp_path / "figure.jpg")
    with pytest.raises(InputError, match="directory"):
        posterior_figure(data["stochastic"], tmp_path)


def test_failed_write_leaves_no_temporary_file(tmp_path, data, monkeypatch):
    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(style.os, "replace", boom)
    path = tmp_path / "figure.png"
    with pytest.raises(OSError, match="disk full"):
        reconstruction_figure(None, data["sinogram"], {"x": data["truth"]}, path)
    assert list(tmp_path.iterdir()) == []

