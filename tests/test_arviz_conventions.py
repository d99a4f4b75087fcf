"""Run files follow ArviZ's conventions: root attrs, log_likelihood (loo, waic), a
replicated sinogram (plot_ppc), partial runs without padding, one R-hat wording, sampler
warnings."""

from __future__ import annotations

import json
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from scipy import stats as scipy_stats  # noqa: E402

from bayes_inr import __version__, posterior
from bayes_inr.data.sample import phantom_sample
from bayes_inr.evaluation import convergence
from bayes_inr.fit import main
from bayes_inr.inference import mcmc as hmc
from bayes_inr.inference.config import FitConfig
from bayes_inr.inference.fit import fit
from bayes_inr.physics.radon import projection_matrix
from bayes_inr.plots import style
from bayes_inr.reports import report

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

N, V, D = 12, 4, 9
ANGLES = np.linspace(0.0, np.pi, V, endpoint=False)
SIGMA = 0.05
NUTS = {"depth": 1, "width": 8, "omega0": 1.0, "sigma": 0.1, "steps": 30, "lr": 1e-2,
        "warmup": 20, "draws": 10, "thin": 1, "max_tree_depth": 3, "chains": 1}


@pytest.fixture(scope="module")
def mcd(tmp_path_factory):
    """A tiny MCD fit on a 32 x 32 phantom, 8 views, saved and loaded."""
    sample = phantom_sample(0, 8, 32)
    config = FitConfig(inference="mcd", depth=1, width=16, steps=60, lr=1e-2, draws=20,
                       sigma=SIGMA, seed=3)
    path = tmp_path_factory.mktemp("mcd") / "mcd.nc"
    posterior.save(fit(sample, config, progress=False), path)
    return sample, posterior.load(path)


def matrix_forward(seed: int = 0):
    """A dense random forward operator (N x N images to V x D sinograms), numpy."""
    matrix = np.random.default_rng(seed).random((V * D, N * N)) / N

    def forward(images):
        return (images.reshape(len(images), -1) @ matrix.T).reshape(len(images), V, D)

    return forward


def synthetic(images, rng, **kwargs):
    """A run of ``images`` with the likelihood of :func:`matrix_forward`."""
    return posterior.build(images, sinogram=rng.random((V, D)), angles=ANGLES, method="nuts",
                           config=kwargs.pop("config", {"inference": "nuts"}),
                           forward=matrix_forward(), sigma=SIGMA, seed=1, **kwargs)


def test_root_attrs_hold_the_run_and_old_files_still_read(tmp_path, mcd):
    _, idata = mcd
    attrs = idata.attrs
    for key in ("method", "config", "seed", "device", "wall_time", "created_at", "git_commit",
                "bayes_inr_version", "config_hash", "data_hash"):  # git_dirty: in a checkout
        assert key in attrs, key
    assert attrs["method"] == "mcd" and int(attrs["seed"]) == 3
    assert attrs["bayes_inr_version"] == __version__
    assert json.loads(attrs["config"])["sigma_used"] == SIGMA
    assert posterior.run_attrs(idata) == dict(attrs)
    # a file written before: attrs on the groups only
    old = idata.copy()
    old.attrs = {}
    old.posterior_predictive.attrs = {**attrs, "method": "old"}
    posterior.save(old, tmp_path / "old.nc")
    loaded = posterior.load(tmp_path / "old.nc")
    assert dict(loaded.attrs) == {}
    assert posterior.run_attrs(loaded)["method"] == "old"
    assert posterior.config(loaded)["sigma_used"] == SIGMA


def test_loo_and_waic_are_finite_on_a_fit(mcd):
    sample, idata = mcd
    ll = idata.log_likelihood["sinogram"]
    assert ll.dims == ("chain", "draw", "angle", "detector") and ll.dtype == np.float32
    assert ll.shape[2:] == idata.observed_data["sinogram"].shape == sample.sinogram.shape
    np.testing.assert_allclose(ll["angle"].values, idata.observed_data["angle"].values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Pareto k of a 60-step fit
        loo, waic = az.loo(idata, pointwise=True), az.waic(idata)
    assert np.isfinite(loo.elpd_loo) and np.isfinite(waic.elpd_waic)
    assert loo.n_data_points == sample.sinogram.size  # rays of one scan, not images
    assert loo.n_samples == 20


def test_log_likelihood_is_the_closed_form_gaussian(mcd):
    sample, idata = mcd
    sigma = posterior.config(idata)["sigma_used"]
    matrix = projection_matrix(sample.geometry).astype(np.float64)
    y = idata.observed_data["sinogram"].values.astype(np.float64)
    for draw in (0, 13):
        image = idata.posterior_predictive["image"].values[0, draw].astype(np.float64)
        mean = (matrix @ image.ravel()).reshape(y.shape)
        expected = scipy_stats.norm.logpdf(y, loc=mean, scale=sigma)
        np.testing.assert_allclose(idata.log_likelihood["sinogram"].values[0, draw], expected,
                                   rtol=1e-4, atol=1e-3)
    # the replicate is A x plus N(0, sigma^2) noise: standardised, a standard normal sample
    images = idata.posterior_predictive["image"].values[0].astype(np.float64)
    means = (images.reshape(len(images), -1) @ matrix.T).reshape(-1, *y.shape)
    z = (idata.posterior_predictive["sinogram"].values[0] - means) / sigma
    assert abs(z.mean()) < 0.05 and abs(z.std() - 1) < 0.05
    assert idata.posterior_predictive["sinogram"].dtype == np.float32


def test_replicates_are_seeded_and_stable_across_checkpoints():
    rng = np.random.default_rng(0)
    images = rng.random((2, 6, N, N))
    whole = synthetic(images, np.random.default_rng(1))
    again = synthetic(images, np.random.default_rng(1))
    np.testing.assert_array_equal(whole.posterior_predictive["sinogram"].values,
                                  again.posterior_predictive["sinogram"].values)
    # a checkpoint (fewer draws so far) holds the first draws of the finished run's noise
    early = synthetic([images[0], images[1, :2]], np.random.default_rng(1))
    np.testing.assert_array_equal(early.posterior_predictive["sinogram"].values[:, :2],
                                  whole.posterior_predictive["sinogram"].values[:, :2])
    other = posterior.build(images, sinogram=rng.random((V, D)), angles=ANGLES,
                            method="nuts", config={}, forward=matrix_forward(), sigma=SIGMA,
                            seed=2)
    assert not np.allclose(other.posterior_predictive["sinogram"].values,
                           whole.posterior_predictive["sinogram"].values)


def test_plot_ppc_compares_the_sinograms(mcd):
    _, idata = mcd
    try:
        axes = az.plot_ppc(idata, var_names=["sinogram"], num_pp_samples=5, random_seed=0)
        assert np.size(axes) == 1
    finally:
        plt.close("all")


def test_baselines_store_no_likelihood():
    rng = np.random.default_rng(0)
    recon = posterior.from_reconstruction(rng.random((N, N)), sinogram=rng.random((V, D)),
                                          angles=ANGLES, method="fbp")
    assert "log_likelihood" not in recon.groups() and "sinogram" not in recon.posterior_predictive
    assert recon.attrs["method"] == "fbp"


def test_a_partial_file_reads_as_the_draws_every_chain_has(tmp_path):
    rng = np.random.default_rng(0)
    chains = [rng.random((8, N, N)), rng.random((5, N, N))]  # chain 1 interrupted
    idata = synthetic(chains, rng, posterior={"w": [rng.standard_normal(8),
                                                    rng.standard_normal(5)]},
                      sample_stats={"diverging": [np.zeros(8, bool), np.zeros(5, bool)],
                                    "lp": [rng.standard_normal(8), rng.standard_normal(5)]})
    path = posterior.save(idata, tmp_path / "partial.nc")
    stored = posterior.load(path, trim=False)
    assert stored.posterior_predictive["n_draws"].values.tolist() == [8, 5]
    assert np.isnan(stored.log_likelihood["sinogram"].values[1, 5:]).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert az.summary(stored)["mean"].isna().any()  # the padding poisons the means

    loaded = posterior.load(path)
    for group in ("posterior", "posterior_predictive", "sample_stats", "log_likelihood"):
        assert loaded[group].sizes["draw"] == 5, group
    assert "n_draws" not in loaded.posterior_predictive
    summary = az.summary(loaded, round_to="none")
    assert np.isfinite(summary[["mean", "sd", "ess_bulk", "r_hat"]].values).all()
    assert summary.loc["w", "mean"] == pytest.approx(idata.posterior["w"].values[:, :5].mean())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert np.isfinite(az.loo(loaded).elpd_loo)
    np.testing.assert_array_equal(posterior.image_draws(loaded),
                                  np.concatenate([chains[0][:5], chains[1]]))
    # ensembles are ragged by design: never cut
    ensemble = posterior.build(chains, sinogram=rng.random((V, D)), angles=ANGLES,
                               method="DE-2", config={}, chain_labels=["a", "b"])
    assert posterior.trim_partial(ensemble) is ensemble


def _one_chain_run(rng):
    draws = 40
    images = 0.5 + 0.1 * rng.standard_normal((1, draws, N, N))
    images[0, draws // 2:] += 0.3  # the second half has drifted
    stats = {"diverging": np.zeros((1, draws), bool),
             "acceptance_rate": np.full((1, draws), 0.8), "n_steps": np.full((1, draws), 7),
             "tree_depth": np.full((1, draws), 3), "step_size": np.full((1, draws), 0.1)}
    return synthetic(images, rng, sample_stats=stats,
                     config={"inference": "nuts", "max_tree_depth": 8})


def test_one_chain_r_hat_is_said_one_way(tmp_path, monkeypatch):
    idata = _one_chain_run(np.random.default_rng(0))
    image = idata.posterior_predictive[["image"]]
    values = image["image"].values[0]
    halves = az.convert_to_dataset({"image": np.stack([values[:20], values[20:]])})
    rhat = convergence.split_rhat(image)["image"].values
    np.testing.assert_allclose(rhat, az.rhat(halves)["image"].values)
    assert np.isnan(az.rhat(image)["image"].values).all()  # what ArviZ itself gives
    statement = convergence.rhat_statement(rhat, 1)
    assert statement.startswith(f"split R-hat within 1 chain: max {np.nanmax(rhat):.3f} over "
                                f"{N * N} image pixels")
    assert statement.endswith("(not a convergence check: run >= 2 chains)")
    assert not convergence.converged(rhat, 1)
    assert statement in hmc.diagnostics(idata).splitlines()
    monkeypatch.setattr(style, "DPI", 40)
    report.report([idata], tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert f"- {statement}" in md and "R-hat cannot tell whether the run converged" in md
    # two well-mixed chains are called converged; the wording names them
    mixed = az.convert_to_dataset({"image": np.random.default_rng(1).standard_normal(
        (2, 400, 3, 3))})
    two = convergence.split_rhat(mixed)["image"].values
    assert convergence.converged(two, 2)
    assert convergence.rhat_statement(two, 2).endswith("(converged by R-hat)")


def test_fit_cli_prints_the_same_statement_and_warnings(tmp_path, capsys):
    out = tmp_path / "nuts.nc"
    args = ["--config", "none", "--size", "16", "--views", "4", "--inference", "nuts", "--quiet",
            "--out",
            str(out), "--init", "prior"] + [f"--{k.replace('_', '-')}={v}"
                                            for k, v in NUTS.items()]
    assert main(args) == 0
    printed = capsys.readouterr()
    idata = posterior.load(out)
    rhat = convergence.split_rhat(idata.posterior_predictive[["image"]])["image"].values
    assert convergence.rhat_statement(rhat, 1) in printed.out.splitlines()
    expected = [f"warning: {line}" for line in convergence.sampler_warnings(idata)]
    assert expected  # the tiny run diverges
    assert [line for line in printed.err.splitlines() if line.startswith("warning:")] == expected


def test_sampler_warnings_fire_on_saturated_trees_and_divergences():
    rng = np.random.default_rng(0)
    images = rng.random((2, 100, N, N))
    config = {"inference": "nuts", "max_tree_depth": 6}  # saturated: 63 leapfrog steps

    def warnings_of(n_steps, diverging):
        stats = {"n_steps": n_steps, "tree_depth": np.floor(np.log2(n_steps)).astype(int) + 1,
                 "diverging": diverging}
        return convergence.sampler_warnings(synthetic(images, rng, sample_stats=stats,
                                                      config=config))

    healthy = np.full((2, 100), 15)
    healthy[0, :20] = 63  # 20 of 200: 10 %, not over
    healthy[1, :50] = 40  # depth 6 too, but a U-turn ended the last doubling
    calm = np.zeros((2, 100), bool)
    calm[1, 7:9] = True  # 2 of 200: 1 %, not over
    assert warnings_of(healthy, calm) == []

    saturated = healthy.copy()
    saturated[1, :80] = 63  # 100 of 200
    (line,) = warnings_of(saturated, calm)
    assert line.startswith("NUTS saturated its maximum tree depth 6 (63 leapfrog steps, no "
                           "U-turn) on 98 of 200 kept transitions (49.0 %, over 10 %)")
    stormy = calm.copy()
    stormy[0, :3] = True  # 5 of 200
    (line,) = warnings_of(healthy, stormy)
    assert line.startswith("5 divergent transitions of 200 kept (2.5 %, over 1 %)")
    assert "\n" not in line
