"""Classical baselines: accuracy on a smooth image, MLEM's objective, errors, the CLI."""

from __future__ import annotations

import csv
import sys
import types

import numpy as np
import pytest
import torch

from bayes_inr import baselines
from bayes_inr.baselines import DEFAULT_ITERATIONS, ITERATIVE, METHODS, main, reconstruct
from bayes_inr.errors import InputError
from bayes_inr.geometry import Geometry
from bayes_inr.radon import RadonOperator

SIZE = 32


def smooth_image(size: int = SIZE) -> np.ndarray:
    """Three overlapping smooth bumps (asymmetric, so flips show), values in [0, 1]."""
    centres = Geometry(size, 1).pixel_centers()
    x, y = centres[..., 0], centres[..., 1]
    image = np.zeros((size, size))
    for value, x0, y0, a, b in [(0.5, 0.0, 0.0, 0.7, 0.8), (0.3, 0.25, 0.1, 0.3, 0.2),
                                (0.2, -0.3, -0.2, 0.2, 0.35)]:
        r2 = ((x - x0) / a) ** 2 + ((y - y0) / b) ** 2
        image += value * np.clip(1.0 - r2, 0.0, None) ** 2
    return np.clip(image, 0.0, 1.0)


def psnr(estimate: np.ndarray, truth: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((estimate - truth) ** 2)))


@pytest.fixture(scope="module")
def problem():
    geometry = Geometry(SIZE, 60)
    image = smooth_image()
    sinogram = RadonOperator(geometry)(torch.tensor(image, dtype=torch.float32)).numpy()
    return geometry, image, sinogram


def test_method_lists():
    assert METHODS == ("fbp", "cgls", "em", "sart", "sirt")
    assert set(DEFAULT_ITERATIONS) == set(ITERATIVE) == set(METHODS) - {"fbp"}
    assert all(isinstance(v, int) and v > 0 for v in DEFAULT_ITERATIONS.values())


# Measured at 32 x 32, 60 views, noiseless: fbp 46.5, cgls(50) 62.0, em(50) 58.7,
# sart(10) 57.0, sirt(200) 60.1 dB. Thresholds leave about 5 dB of margin; a
# flipped image gives about 27 dB, a sinogram off by the pixel size about 16 dB.
@pytest.mark.parametrize("method, iterations, threshold", [
    ("fbp", None, 40.0), ("cgls", 50, 56.0), ("em", 50, 53.0), ("sart", 10, 52.0),
    ("sirt", 200, 55.0),
])
def test_noiseless_reconstruction_is_accurate(problem, method, iterations, threshold):
    geometry, image, sinogram = problem
    estimate = reconstruct(method, sinogram, geometry, iterations)
    assert estimate.shape == image.shape and estimate.dtype == np.float32
    assert estimate.min() >= 0.0 and estimate.max() <= 1.0
    assert psnr(estimate, image) > threshold


def test_default_iterations_and_torch_input(problem):
    geometry, image, sinogram = problem
    for method in METHODS:
        estimate = reconstruct(method, torch.tensor(sinogram), geometry)
        assert psnr(estimate, image) > 35.0, method


def test_sirt_converges_to_truth(problem):
    geometry, image, sinogram = problem
    estimate = reconstruct("sirt", sinogram, geometry, 500)
    assert np.abs(estimate - image).max() < 0.01


def test_sart_iteration_is_a_full_sweep(problem):
    # one astra SART step touches a single view; a full sweep already gets close
    geometry, image, sinogram = problem
    one, two = (reconstruct("sart", sinogram, geometry, k) for k in (1, 2))
    assert psnr(one, image) > 22.0
    assert psnr(two, image) > psnr(one, image) + 3.0
    np.testing.assert_array_equal(one, reconstruct("sart", sinogram, geometry, 1))


def test_mlem_decreases_poisson_objective(problem):
    geometry, _, sinogram = problem
    op = RadonOperator(geometry, dtype=torch.float64)
    p = torch.from_numpy(np.maximum(sinogram, 0.0).astype(np.float64))

    def kl(x):
        ax = op(torch.from_numpy(x))
        mask = p > 0
        return float((p[mask] * torch.log(p[mask] / ax[mask])).sum() - p.sum() + ax.sum())

    values = [kl(baselines._mlem(sinogram, geometry, k, "linear")) for k in (1, 2, 5, 10, 30)]
    assert all(b < a for a, b in zip(values[:-1], values[1:], strict=True)), values
    assert values[-1] < 0.01 * values[0]


def test_mlem_clips_negative_data(problem):
    geometry, image, sinogram = problem
    rng = np.random.default_rng(0)
    noisy = sinogram + 0.01 * rng.standard_normal(sinogram.shape)
    noisy[noisy.shape[0] // 2] = -1.0  # a whole negative view
    estimate = reconstruct("em", noisy, geometry, 20)
    assert np.isfinite(estimate).all() and psnr(estimate, image) > 20.0


@pytest.mark.parametrize("projector", ["strip", "line"])
def test_other_projectors(problem, projector):
    geometry, image, _ = problem
    sinogram = RadonOperator(geometry, projector)(torch.tensor(image, dtype=torch.float32))
    for method in ("fbp", "em"):
        estimate = reconstruct(method, sinogram.numpy(), geometry, projector=projector)
        assert psnr(estimate, image) > 35.0, method


def test_bad_inputs(problem):
    geometry, _, sinogram = problem
    with pytest.raises(InputError, match="shape"):
        reconstruct("fbp", sinogram[:, :-1], geometry)
    with pytest.raises(InputError, match="shape"):
        reconstruct("sirt", sinogram[None], geometry)
    bad = sinogram.copy()
    bad[3, 4] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        reconstruct("cgls", bad, geometry)
    with pytest.raises(InputError, match="method"):
        reconstruct("art", sinogram, geometry)
    with pytest.raises(InputError, match="projector"):
        reconstruct("fbp", sinogram, geometry, projector="cuda")
    for count in (0, -3, 2.5, True):
        with pytest.raises(InputError, match="iterations"):
            reconstruct("sirt", sinogram, geometry, count)
    with pytest.raises(InputError, match="iterations"):
        reconstruct("fbp", sinogram, geometry, 10)


def test_cli_unknown_method_exits_2(tmp_path, capsys):
    code = main(["--dataset", str(tmp_path / "missing.nc"), "--methods", "fbp,art"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and "art" in err and err.count("\n") == 1


def test_cli_bad_iterations_exit_2(tmp_path, capsys):
    for text in ("sirt=0", "fbp=3", "sirt", "sirt=ten"):
        code = main(["--dataset", str(tmp_path / "missing.nc"), "--iterations", text])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, text


def test_cli_missing_dataset_exits_2(tmp_path, capsys):
    pytest.importorskip("bayes_inr.data")
    code = main(["--dataset", str(tmp_path / "missing.nc"), "--methods", "fbp"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1


def test_cli_scores_a_split_and_writes_csv(tmp_path, capsys, monkeypatch):
    """The CLI on a stand-in dataset (the loader and metrics are faked)."""
    import xarray as xr

    geometry = Geometry(SIZE, 20)
    op = RadonOperator(geometry)
    truths = {i: smooth_image() * (0.6 + 0.1 * i) for i in range(4)}
    dataset = xr.Dataset(coords={"phantom": [0, 1, 2, 3],
                                 "split": ("phantom", ["val", "test", "val", "test"])})

    def benchmark_sample(ds, image_id, views):
        assert views == 20
        sino = op(torch.tensor(truths[image_id], dtype=torch.float32)).numpy()
        return types.SimpleNamespace(geometry=geometry, sinogram=sino,
                                     ground_truth=truths[image_id], name=f"phantom {image_id}")

    fake_data = types.ModuleType("bayes_inr.data")
    fake_data.load_benchmark = lambda path: dataset
    fake_data.benchmark_sample = benchmark_sample
    fake_data.benchmark_ids = lambda ds, split: [
        int(i) for i in ds.phantom.values[ds.split.values == split]]
    fake_metrics = types.ModuleType("bayes_inr.metrics")
    fake_metrics.psnr = psnr
    fake_metrics.ssim = lambda estimate, truth: 1.0 - float(np.abs(estimate - truth).mean())
    monkeypatch.setitem(sys.modules, "bayes_inr.data", fake_data)
    monkeypatch.setitem(sys.modules, "bayes_inr.metrics", fake_metrics)

    out = tmp_path / "sub" / "results.csv"
    code = main(["--dataset", "whatever.nc", "--views", "20", "--split", "test",
                 "--methods", "fbp,sirt", "--iterations", "sirt=30", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "fbp" in printed and "sirt" in printed
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == list(baselines.CSV_COLUMNS)
    assert [(r["method"], r["image_id"]) for r in rows] == [
        ("fbp", "1"), ("fbp", "3"), ("sirt", "1"), ("sirt", "3")]
    assert {r["split"] for r in rows} == {"test"} and {r["views"] for r in rows} == {"20"}
    assert [r["iterations"] for r in rows] == ["", "", "30", "30"]
    assert all(float(r["psnr"]) > 30 for r in rows)
    assert not [p for p in out.parent.iterdir() if p.name != "results.csv"]  # no temp left
