"""InferenceData build / save / load round trips, atomic writes, load errors, scoring."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from bayes_inr import __version__, posterior
from bayes_inr.core.errors import InputError
from bayes_inr.evaluation import metrics

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

N = 16
V, D = 5, 24
ANGLES = np.linspace(0.0, np.pi, V, endpoint=False)
CONFIG = {"method": "MCD", "inr": {"width": 64, "depth": 3}, "lr": 1e-3, "views": V,
          "p": np.float32(0.25), "sizes": (1, 2)}


@pytest.fixture()
def rng():
    return np.random.default_rng(0)


def make(rng, images, **kwargs):
    kwargs.setdefault("method", "MCD")
    kwargs.setdefault("config", CONFIG)
    return posterior.build(
        images,
        sinogram=rng.random((V, D)),
        angles=ANGLES,
        **kwargs,
    )


def test_round_trip_values_dims_attrs(tmp_path, rng):
    images = rng.random((2, 7, N, N)).astype(np.float32)
    truth = rng.random((N, N))
    stats = {"diverging": rng.random((2, 7)) < 0.1, "step_size": rng.random((2, 7))}
    params = {"w": rng.standard_normal((2, 7, 3, 4))}
    idata = make(rng, images, ground_truth=truth, seed=7, wall_time=12.5, device="cuda:0",
                 sample_stats=stats, posterior=params,
                 extra_constant={"sigma": np.float64(0.01), "mask": (("y", "x"), truth > 0.5)})
    path = tmp_path / "run.nc"
    assert posterior.save(idata, path) == path
    loaded = posterior.load(path)

    image = loaded.posterior_predictive["image"]
    assert image.dims == ("chain", "draw", "y", "x")
    np.testing.assert_array_equal(image.values, images)
    np.testing.assert_array_equal(loaded.constant_data["ground_truth"].values, truth)
    np.testing.assert_allclose(loaded.constant_data["angle"].values, ANGLES)
    assert loaded.constant_data["angle"].attrs["units"] == "rad"
    assert loaded.observed_data["sinogram"].dims == ("angle", "detector")
    np.testing.assert_array_equal(loaded.observed_data["sinogram"].values,
                                  idata.observed_data["sinogram"].values)
    assert loaded.constant_data["mask"].dims == ("y", "x")
    assert float(loaded.constant_data["sigma"]) == 0.01
    assert loaded.posterior["w"].dims == ("chain", "draw", "w_dim_0", "w_dim_1")
    np.testing.assert_array_equal(loaded.sample_stats["diverging"].values, stats["diverging"])
    assert posterior.image_draws(loaded).shape == (14, N, N)
    assert "n_draws" not in loaded.posterior_predictive
    assert posterior.air_level(loaded) == 0.0
    for group in loaded.groups():
        attrs = loaded[group].attrs
        assert attrs["method"] == "MCD"
        assert int(attrs["seed"]) == 7
        assert float(attrs["wall_time"]) == 12.5
        assert attrs["device"] == "cuda:0"
        assert attrs["bayes_inr_version"] == __version__
        assert attrs["created_at"].endswith("+00:00")
        assert json.loads(attrs["config"]) == posterior.config(loaded)
    cfg = posterior.config(loaded)
    assert cfg["inr"] == {"width": 64, "depth": 3}
    assert cfg["p"] == 0.25 and cfg["sizes"] == [1, 2]


def test_air_level_is_stored_with_the_truth(tmp_path, rng):
    images = rng.random((1, 3, N, N))
    truth = rng.random((N, N))
    path = posterior.save(make(rng, images, ground_truth=truth, air_level=0.025),
                          tmp_path / "run.nc")
    assert posterior.air_level(posterior.load(path)) == 0.025
    old = posterior.load(path)
    del old.constant_data["ground_truth"].attrs["air_level"]  # a file from before the level
    assert posterior.air_level(old) == 0.0
    assert posterior.air_level(posterior.with_air_level(old, 0.025)) == 0.025
    assert posterior.air_level(make(rng, images)) == 0.0  # no truth: no air level
    for bad in (-0.1, 1.0):
        with pytest.raises(InputError, match="air_level"):
            make(rng, images, ground_truth=truth, air_level=bad)
        with pytest.raises(InputError, match="air_level"):
            posterior.with_air_level(old, bad)


def test_none_attrs_are_omitted(tmp_path, rng):
    idata = make(rng, rng.random((1, 2, N, N)), config=None)
    posterior.save(idata, tmp_path / "a.nc")
    attrs = posterior.load(tmp_path / "a.nc").posterior_predictive.attrs
    assert "seed" not in attrs and "wall_time" not in attrs
    assert posterior.config(idata) == {}


def test_ragged_ensemble_with_member_labels(tmp_path, rng):
    members = [rng.random((5, N, N)), rng.random((1, N, N)), rng.random((3, N, N))]
    idata = make(rng, members, method="DE-3", chain_labels=["mcd-a", "fbp", "mcd-b"],
                 ground_truth=rng.random((N, N)),
                 sample_stats={"loss": [rng.random(5), rng.random(1), rng.random(3)]})
    path = tmp_path / "de.nc"
    posterior.save(idata, path)
    loaded = posterior.load(path)
    pp = loaded.posterior_predictive
    assert pp["image"].shape == (3, 5, N, N)
    assert list(pp["member"].values) == ["mcd-a", "fbp", "mcd-b"]
    assert list(loaded.sample_stats["member"].values) == ["mcd-a", "fbp", "mcd-b"]
    assert pp["n_draws"].values.tolist() == [5, 1, 3]
    assert np.isnan(pp["image"].values[1, 1:]).all()
    draws = posterior.image_draws(loaded)
    assert draws.shape == (9, N, N)
    assert np.isfinite(draws).all()
    np.testing.assert_array_equal(draws, np.concatenate(members))
    result = metrics.score(loaded)
    assert result["n_draws"] == 9 and np.isfinite(result["nll_all"])


def test_arviz_diagnostics_on_loaded_file(tmp_path, rng):
    params = {"theta": rng.standard_normal((2, 50)), "w": rng.standard_normal((2, 50, 3))}
    stats = {"diverging": np.zeros((2, 50), bool), "step_size": np.full((2, 50), 0.1),
             "acceptance_rate": rng.random((2, 50)), "lp": rng.standard_normal((2, 50))}
    idata = make(rng, rng.random((2, 50, N, N)), method="HMC", posterior=params,
                 sample_stats=stats)
    posterior.save(idata, tmp_path / "hmc.nc")
    loaded = posterior.load(tmp_path / "hmc.nc")
    summary = az.summary(loaded)
    assert "theta" in summary.index and "r_hat" in summary.columns
    ess = az.ess(loaded.posterior_predictive[["image"]])
    assert ess["image"].shape == (N, N)
    assert np.isfinite(ess["image"].values).all()


def test_save_is_atomic(tmp_path, rng, monkeypatch):
    path = tmp_path / "run.nc"
    old = make(rng, rng.random((1, 2, N, N)))
    posterior.save(old, path)
    before = path.read_bytes()

    def broken(self, filename, *args, **kwargs):
        with open(filename, "wb") as handle:
            handle.write(b"\x89HDF half a file")
        raise OSError("disk full")

    monkeypatch.setattr(az.InferenceData, "to_netcdf", broken)
    with pytest.raises(OSError, match="disk full"):
        posterior.save(make(rng, rng.random((1, 3, N, N))), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.nc"]
    monkeypatch.undo()
    np.testing.assert_array_equal(posterior.load(path).posterior_predictive["image"].values,
                                  old.posterior_predictive["image"].values)


def test_load_then_overwrite_same_path(tmp_path, rng):
    path = tmp_path / "run.nc"
    posterior.save(make(rng, rng.random((1, 2, N, N))), path)
    loaded = posterior.load(path)
    new = make(rng, rng.random((1, 4, N, N)))
    posterior.save(new, path)
    assert posterior.image_draws(loaded).shape == (2, N, N)  # still readable from memory
    assert posterior.image_draws(posterior.load(path)).shape == (4, N, N)


def test_load_errors(tmp_path, rng):
    with pytest.raises(InputError, match="no such file"):
        posterior.load(tmp_path / "missing.nc")
    (tmp_path / "empty.nc").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        posterior.load(tmp_path / "empty.nc")
    (tmp_path / "text.nc").write_text("not a netCDF file\n")
    with pytest.raises(InputError, match="not an InferenceData"):
        posterior.load(tmp_path / "text.nc")
    # a valid InferenceData netCDF without posterior_predictive.image
    other = az.from_dict(posterior={"a": rng.standard_normal((1, 5))})
    other.to_netcdf(str(tmp_path / "other.nc"))
    with pytest.raises(InputError, match="posterior_predictive.image"):
        posterior.load(tmp_path / "other.nc")


def test_build_validates(rng):
    with pytest.raises(InputError, match="chain, draw, y, x"):
        make(rng, rng.random((2, N, N)))
    with pytest.raises(InputError, match="ground_truth shape"):
        make(rng, rng.random((1, 1, N, N)), ground_truth=np.zeros((N, N + 1)))
    with pytest.raises(InputError, match="chain_labels"):
        make(rng, rng.random((2, 1, N, N)), chain_labels=["a"])
    bad = rng.random((1, 2, N, N))
    bad[0, 1, 3, 3] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        make(rng, bad)
    with pytest.raises(InputError, match="angles"):
        posterior.build(rng.random((1, 1, N, N)), sinogram=rng.random((V, D)),
                        angles=ANGLES[:-1], method="x", config={})
    with pytest.raises(InputError, match="JSON"):
        make(rng, rng.random((1, 1, N, N)), config={"f": object()})


def test_score_reconstruction_and_missing_truth(tmp_path, rng):
    truth = rng.random((N, N))
    recon = posterior.from_reconstruction(truth + 0.1, sinogram=rng.random((V, D)),
                                          angles=ANGLES, method="FBP", ground_truth=truth,
                                          wall_time=0.2)
    posterior.save(recon, tmp_path / "fbp.nc")
    loaded = posterior.load(tmp_path / "fbp.nc")
    assert loaded.posterior_predictive["image"].shape == (1, 1, N, N)
    result = metrics.score(loaded)
    assert result["psnr"] == pytest.approx(20.0)
    assert result["method"] == "FBP" and result["n_draws"] == 1
    assert "nll_all" not in result and "ece_object" not in result
    assert result["crps_all"] == pytest.approx(0.1)  # one draw: the absolute error
    table = metrics.score_table([result])
    assert "FBP" in table and "20.000" in table

    no_truth = posterior.from_reconstruction(truth, sinogram=rng.random((V, D)),
                                             angles=ANGLES, method="FBP")
    with pytest.raises(InputError, match="no ground truth"):
        metrics.score(no_truth)
    assert metrics.score(no_truth, truth=truth)["psnr"] == np.inf


def test_score_pools_chains(rng):
    truth = rng.random((N, N))
    truth[:, : N // 3] = 0.0  # air: the background set
    images = truth + 0.05 * rng.standard_normal((3, 40, N, N))
    idata = make(rng, images, ground_truth=truth)
    result = metrics.score(idata)
    draws = images.reshape(-1, N, N)
    assert result["n_draws"] == 120
    assert result["nll_all"] == pytest.approx(metrics.nll(draws, truth))
    assert result["ece_all"] == pytest.approx(metrics.ece(draws, truth))
    assert result["coverage_90_all"] == pytest.approx(metrics.coverage(draws, truth, 0.9))
    assert result["crps_all"] == pytest.approx(metrics.crps(draws, truth))
    assert result["psnr"] == pytest.approx(metrics.psnr(draws.mean(0), truth))
    obj = truth > 0
    assert result["ece_object"] == pytest.approx(
        metrics.ece(draws[:, obj], truth[obj]))
    assert result["object_share"] == pytest.approx(obj.mean())


def test_ensemble_members_weigh_equally_whatever_their_draw_counts(rng):
    # a MAP member (one draw) beside a 100-draw MCD member: 1/2 each, not 1/101
    truth = rng.random((N, N))
    mcd = truth + 0.05 * rng.standard_normal((100, N, N))
    map_draw = truth[None] + 0.2
    idata = make(rng, [mcd, map_draw], method="DE-2", chain_labels=["mcd", "map"],
                 ground_truth=truth)
    weights = posterior.draw_weights(idata)
    np.testing.assert_allclose(weights[:100], 0.5 / 100)
    assert weights[100] == pytest.approx(0.5)
    mixture_mean = 0.5 * mcd.mean(0) + 0.5 * map_draw[0]
    result = metrics.score(idata)
    assert result["psnr"] == pytest.approx(metrics.psnr(mixture_mean, truth))
    pooled = np.concatenate([mcd, map_draw])
    assert result["psnr"] != pytest.approx(metrics.psnr(pooled.mean(0), truth))
    assert result["crps_all"] == pytest.approx(metrics.crps(pooled, truth, weights))
    # chains of one sampler (no member labels) pool their draws equally
    plain = make(rng, [mcd[:10], mcd[10:12]], ground_truth=truth)
    np.testing.assert_allclose(posterior.draw_weights(plain), 1 / 12)
