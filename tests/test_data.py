import re
import sys

import numpy as np
import pytest
import torch

from bayes_inr import Geometry, InputError, RadonOperator
from bayes_inr.data.benchmark import (
    REAL_SLICES,
    benchmark_ids,
    benchmark_sample,
    build_benchmark,
    build_real_benchmark,
    load_benchmark,
    real_images,
    write_dataset,
)
from bayes_inr.data.cli import main
from bayes_inr.data.phantoms import MODIFIED_SHEPP_LOGAN, random_ellipses, random_phantom, render
from bayes_inr.data.sample import (
    Sample,
    add_noise,
    integer_resample,
    phantom_sample,
    project_truth,
    simulate,
)


def test_phantom_seeded_perturbed_and_clipped():
    a, b = random_phantom(1, 32), random_phantom(1, 32)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, random_phantom(2, 32))
    assert a.min() >= 0 and a.max() <= 1
    np.testing.assert_array_equal(random_ellipses(0, std=0), MODIFIED_SHEPP_LOGAN)
    deltas = random_ellipses(7) - MODIFIED_SHEPP_LOGAN
    assert 0.03 < deltas[:, [0, 3, 4, 5]].std() < 0.07


def test_render_supersampling_is_consistent():
    table = random_ellipses(3)
    coarse = render(table, 16, supersample=4)
    fine = render(table, 32, supersample=2).reshape(16, 2, 16, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(coarse, fine, atol=1e-6)


def test_fine_protocol_is_close_but_not_the_inverse_crime():
    sample = phantom_sample(0, 12, size=32)
    same = project_truth(sample.ground_truth, sample.geometry, protocol="same")
    rel = np.linalg.norm(sample.sinogram - same) / np.linalg.norm(same)
    assert 1e-3 < rel < 0.05
    op = RadonOperator(sample.geometry)
    np.testing.assert_allclose(same, op(torch.from_numpy(sample.ground_truth)).numpy(), rtol=1e-5,
                               atol=1e-6)


def test_noise_by_snr_and_sigma():
    clean = np.ones((10, 20), np.float32)
    noisy, sigma = add_noise(clean, snr_db=20, seed=1)
    assert sigma == pytest.approx(0.1)
    assert np.std(noisy - clean) == pytest.approx(0.1, rel=0.15)
    again, _ = add_noise(clean, snr_db=20, seed=1)
    np.testing.assert_array_equal(noisy, again)
    assert add_noise(clean)[1] == 0.0
    with pytest.raises(InputError, match="either"):
        add_noise(clean, snr_db=1, sigma=1)


def test_benchmark_round_trip_and_bit_identical(tmp_path):
    ds = build_benchmark(size=16, views=(3, 5), n_phantoms=4)
    path = write_dataset(ds, tmp_path / "b.nc")
    loaded = load_benchmark(path)
    assert benchmark_ids(loaded, "val") == [0, 1, 2, 3]
    sample = benchmark_sample(loaded, 2, 5)
    assert sample.sinogram.shape == (5, Geometry(16, 5).n_detectors)
    np.testing.assert_array_equal(sample.ground_truth, ds.image.values[2])
    assert loaded.attrs["protocol"] == "fine"
    write_dataset(build_benchmark(size=16, views=(3, 5), n_phantoms=4), tmp_path / "c.nc")
    assert (tmp_path / "b.nc").read_bytes() == (tmp_path / "c.nc").read_bytes()
    with pytest.raises(InputError, match="no 7-view"):
        benchmark_sample(loaded, 0, 7)
    with pytest.raises(InputError, match="image id"):
        benchmark_sample(loaded, 11, 5)


def test_shipped_benchmark_matches_its_generator():
    ds = load_benchmark("data/benchmark_128.nc")
    assert list(ds.split.values) == ["val"] * 5 + ["test"] * 5
    fresh = phantom_sample(6, 20, 128)
    np.testing.assert_array_equal(ds.image.values[6], fresh.ground_truth)
    np.testing.assert_array_equal(ds.sinogram_20.values[6], fresh.sinogram)


def test_shipped_reference_data_matches_its_generator():
    """data/reference_64.nc (the reference posterior's data): 64 x 64, 20 views, 40 dB."""
    ds = load_benchmark("data/reference_64.nc")
    fresh = build_benchmark(64, (20,), snr_db=40.0)
    for name in ("image", "sinogram_20", "noise_sigma_20"):
        np.testing.assert_array_equal(ds[name].values, fresh[name].values, err_msg=name)
    assert float(ds.attrs["snr_db"]) == 40.0 and (ds.noise_sigma_20.values > 0).all()


def test_shipped_paper_protocol_data_matches_its_generator():
    """data/benchmark_256.nc (Table 1's ``paper5`` profile): the paper's protocol, the 256 x
    256 truth (rendered at 512, block-averaged) projected by the reconstruction operator."""
    ds = load_benchmark("data/benchmark_256.nc")
    assert ds.attrs["protocol"] == "same" and ds.attrs["size"] == 256
    fresh = phantom_sample(7, 5, 256, protocol="same")
    np.testing.assert_array_equal(ds.image.values[7], fresh.ground_truth)
    np.testing.assert_allclose(ds.sinogram_5.values[7], fresh.sinogram, rtol=1e-5, atol=1e-6)
    assert not ds.noise_sigma_5.values.any()


def test_bad_input(tmp_path, capsys):
    with pytest.raises(InputError, match="square"):
        simulate(np.zeros((4, 5)), 3)
    with pytest.raises(InputError, match="non-finite"):
        simulate(np.full((4, 4), np.nan), 3)
    with pytest.raises(InputError, match="n_views"):
        simulate(np.zeros((4, 4)), 0)
    with pytest.raises(InputError, match="protocol"):
        simulate(np.zeros((4, 4)), 3, protocol="exact")
    empty = tmp_path / "empty.nc"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        load_benchmark(empty)
    with pytest.raises(InputError, match="not found"):
        load_benchmark(tmp_path / "missing.nc")
    (tmp_path / "junk.nc").write_text("not netcdf")
    with pytest.raises(InputError, match="cannot read"):
        load_benchmark(tmp_path / "junk.nc")
    assert main(["--views", "0", "--out", str(tmp_path / "x.nc")]) == 2
    assert capsys.readouterr().err.startswith("error:")


def test_real_benchmark_layout_matches_the_phantom_benchmark():
    real, phantoms = load_benchmark("data/real_128.nc"), load_benchmark("data/benchmark_128.nc")
    assert benchmark_ids(real, "val") == [0, 1] and benchmark_ids(real, "test") == [2, 3]
    assert list(real.source_file.values) == [s.file for s in REAL_SLICES]
    assert len(set(real.patient_id.values[2:])) == 2  # two test patients
    assert real.attrs["views"].tolist() == [20, 60] and real.attrs["snr_db"] == 40
    def layout(ds):  # variable -> dimensions, view counts dropped
        return {re.sub(r"_\d+$", "", k): tuple(re.sub(r"_\d+$", "", d) for d in v.dims)
                for k, v in ds.data_vars.items()}

    assert layout(real) == layout(phantoms)
    assert set(real.data_vars) == {"image", "sinogram_20", "noise_sigma_20", "sinogram_60",
                                   "noise_sigma_60"}
    assert set(phantoms.attrs) - {"phantom", "views"} <= set(real.attrs)
    truth = real.image.values
    assert truth.shape == (4, 128, 128) and truth.dtype == np.float32
    assert truth.min() >= 0 and truth.max() <= 1 and truth.mean(axis=(1, 2)).min() > 0.05
    for views in (20, 60):
        sample = benchmark_sample(real, 3, views)
        assert sample.sinogram.shape == (views, 183)
        assert sample.meta["split"] == "test" and sample.noise_sigma > 0
        assert sample.air_level == 0.025 and benchmark_sample(phantoms, 3, 20).air_level == 0


def test_the_air_of_real_slices_is_above_0_and_below_the_air_level():
    """Why the object of a real slice stops at its air level: clipped scanner noise leaves
    the air of the 512-pixel slices above 0 (a fifth to two fifths of their pixels lie in
    (0, 0.005], -1000 to -990 HU), where the phantoms' air is exactly 0."""
    real, phantoms = load_benchmark("data/real_128.nc"), load_benchmark("data/benchmark_128.nc")
    for image_id in (0, 1, 3):  # the 512-pixel slices; CT_small (2) is cropped to the body
        truth = real.image.values[image_id]
        assert 0.15 < np.mean((truth > 0) & (truth <= 0.005)) < 0.45
        assert np.mean(truth <= benchmark_sample(real, image_id, 20).air_level) > 0.25
    assert np.mean(real.image.values[2] <= 0.025) == 0.0
    truth = phantoms.image.values
    assert np.mean((truth > 0) & (truth <= 0.005)) < 0.005
    sample = benchmark_sample(real, 0, 20)
    for bad in (-0.01, 1.0, float("nan")):
        with pytest.raises(InputError, match="air_level"):
            Sample(sample.geometry, sample.sinogram, sample.ground_truth, air_level=bad)


def test_real_benchmark_is_40_db_and_matches_its_generator():
    real = load_benchmark("data/real_128.nc")
    truth, fine, meta = real_images(REAL_SLICES[1])
    np.testing.assert_array_equal(truth, real.image.values[1])
    assert meta["patient_id"] == str(real.patient_id.values[1])
    sample = simulate(truth, 20, fine_image=fine, snr_db=40, seed=(0, 1, 20, 1))
    np.testing.assert_array_equal(sample.sinogram, real.sinogram_20.values[1])
    clean = project_truth(fine, sample.geometry)
    sigma = float(real.noise_sigma_20[1])
    assert 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / sigma**2) == pytest.approx(40)
    residual = real.sinogram_20.values[1] - clean
    assert np.std(residual) == pytest.approx(sigma, rel=0.05)
    assert abs(np.mean(residual)) < 3 * sigma / np.sqrt(residual.size)


def test_real_build_is_deterministic(tmp_path):
    kwargs = dict(size=32, views=(3,), slices=REAL_SLICES[2:3])
    ds = build_real_benchmark(**kwargs)
    assert list(ds.split.values) == ["test"] and ds.source_file.values[0] == "CT_small.dcm"
    write_dataset(ds, tmp_path / "a.nc")
    write_dataset(build_real_benchmark(**kwargs), tmp_path / "b.nc")
    assert (tmp_path / "a.nc").read_bytes() == (tmp_path / "b.nc").read_bytes()
    assert build_real_benchmark(**kwargs, seed=1).sinogram_3.values.tolist() != \
        ds.sinogram_3.values.tolist()


def test_integer_resample():
    image = np.arange(16.0).reshape(4, 4)
    np.testing.assert_array_equal(integer_resample(image, 2), [[2.5, 4.5], [10.5, 12.5]])
    up = integer_resample(image, 8)
    np.testing.assert_array_equal(up[::2, ::2], image)
    np.testing.assert_array_equal(integer_resample(up, 4), image)
    with pytest.raises(InputError, match="integer factor"):
        integer_resample(image, 3)


@pytest.mark.parametrize("argv", [["--size", "100"], ["--phantoms", "3"], ["--views", "0"]])
def test_real_cli_bad_arguments(tmp_path, capsys, argv):
    assert main(["--real", *argv, "--out", str(tmp_path / "x.nc")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1
    assert not (tmp_path / "x.nc").exists()


def test_real_without_pydicom_data(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "data_store", None)  # import data_store now fails
    assert main(["--real", "--out", str(tmp_path / "x.nc")]) == 2
    err = capsys.readouterr().err
    assert "pip install pydicom-data" in err and err.count("\n") == 1
