"""Recalibration on validation: exact split-conformal coverage, shape, weights, files, CLI."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
from scipy import optimize, stats

from bayes_inr import posterior
from bayes_inr.core.errors import InputError
from bayes_inr.data.benchmark import benchmark_sample, build_benchmark, write_dataset
from bayes_inr.evaluation import metrics
from bayes_inr.evaluation.recalibration import (
    EPS,
    FORMAT,
    LEVELS,
    Calibration,
    apply,
    calibrate,
    check_applicable,
    conformal_quantile,
    fit_floor,
    held_out_scores,
    image_weights,
    interval,
    load_calibration,
    moments,
    recalibrated_draws,
    residuals,
    run_moments,
    save_calibration,
)
from bayes_inr.recalibration import main

SIGMA = 0.05


def predictive(rng, shape, factor, draws=50, skewed=False):
    """Truth x = m + SIGMA e (e standard normal, or Exp(1) - 1 when ``skewed``) and draws
    N(m, (factor SIGMA)^2): a predictive whose sd is wrong by ``factor``."""
    mean = rng.uniform(0.3, 0.7, shape)
    e = rng.exponential(size=shape) - 1.0 if skewed else rng.standard_normal(shape)
    truth = mean + SIGMA * e
    samples = mean + factor * SIGMA * rng.standard_normal((draws, *shape))
    return samples, truth


def fitted(rng, factor, skewed=False, pixels=(100, 100)) -> Calibration:
    samples, truth = predictive(rng, pixels, factor, skewed=skewed)
    return Calibration.from_residuals([residuals(samples, truth)])


# ----------------------------------------------------------------------------- guarantee


@pytest.mark.parametrize("q", [0.5, 0.9])
@pytest.mark.parametrize("factor", [2.0, 0.5])
def test_conformal_coverage_is_exact_in_finite_samples(q, factor):
    """R independent calibrations of n pixels, each scored on T fresh exchangeable pixels:
    the mean coverage is ceil((n + 1) q) / (n + 1), inside [q, q + 1 / (n + 1)]."""
    rng = np.random.default_rng(1)
    reps, n, fresh = 20000, 48, 50
    claimed = factor * SIGMA  # the predictive's sd, wrong by factor
    z = SIGMA * rng.standard_normal((reps, n)) / claimed
    k = conformal_quantile(np.abs(z), q)
    errors = SIGMA * rng.standard_normal((reps, fresh))
    per_rep = (np.abs(errors) <= k[:, None] * claimed).mean(axis=1)
    coverage, mc = per_rep.mean(), 4 * per_rep.std() / math.sqrt(reps)
    exact = math.ceil((n + 1) * q) / (n + 1)
    assert q - mc <= coverage <= q + 1 / (n + 1) + mc
    assert abs(coverage - exact) <= mc
    raw = (np.abs(errors) <= stats.norm.ppf(0.5 + q / 2) * claimed).mean()
    assert abs(raw - q) > 0.05  # the raw predictive is far off


def test_calibration_multipliers_are_the_conformal_order_statistics():
    z = np.random.default_rng(2).standard_normal(999)
    cal = Calibration.from_residuals([z[:500], z[500:]])
    ranked = np.sort(np.abs(z))
    assert cal.multiplier(0.9) == ranked[899]  # ceil(1000 * 0.9) = 900th smallest
    assert cal.multiplier(0.5) == ranked[499]
    assert cal.multiplier(0.9991) == math.inf  # next grid level 1.0: rank 1000 > 999
    assert cal.multiplier(0.8995) == cal.multiplier(0.9)  # off the grid: next level up
    assert (cal.n_pixels, cal.n_images) == (999, 2)
    np.testing.assert_allclose(cal.z_quantiles, np.quantile(z, LEVELS, method="weibull"))
    lo, hi = interval(np.zeros(3), np.full(3, 2.0), cal, 0.9)
    np.testing.assert_allclose(hi, 2 * ranked[899])
    np.testing.assert_allclose(lo, -hi)


def test_calibrated_predictive_is_left_nearly_unchanged():
    rng = np.random.default_rng(3)
    cal = fitted(rng, 1.0)
    assert cal.multiplier(0.9) == pytest.approx(stats.norm.ppf(0.95), abs=0.05)
    assert cal.multiplier(0.5) == pytest.approx(stats.norm.ppf(0.75), abs=0.03)
    central = (LEVELS >= 0.05) & (LEVELS <= 0.95)
    np.testing.assert_allclose(cal.z_quantiles[central], stats.norm.ppf(LEVELS[central]),
                               atol=0.06)
    samples, truth = predictive(rng, (100, 100), 1.0)
    mean, sd = moments(samples)
    recal = recalibrated_draws(mean, sd, cal)
    np.testing.assert_allclose(recal.mean(axis=0), mean, atol=0.03 * SIGMA)
    np.testing.assert_allclose(recal.std(axis=0) / sd, 1.0, atol=0.04)
    assert metrics.ece(recal, truth) < 0.015
    # levels (i + 1) / (S + 1): no over-coverage at small S (midpoints give 0.9 + 0.9 / S
    # = 0.945); the tolerance is 3 sd of the calibration's and the fresh pixels' noise
    assert metrics.coverage(recalibrated_draws(mean, sd, cal, 20), truth, 0.9) == \
        pytest.approx(0.9, abs=0.025)


def test_shape_error_is_corrected_on_fresh_data():
    """Over-dispersed symmetric draws for skewed truths: a hump-shaped, lopsided PIT. The
    recalibrated predictive takes the residuals' shape, not only their width."""
    rng = np.random.default_rng(4)
    cal = fitted(rng, 2.0, skewed=True)
    samples, truth = predictive(rng, (100, 100), 2.0, skewed=True)
    raw = metrics.calibration(samples, truth)
    hist = metrics.pit_histogram(samples, truth, bins=10)
    assert raw["ece"] > 0.1 and hist[4:6].sum() > 2 * hist[[0, 9]].sum()  # the hump
    mean, sd = moments(samples)
    fixed = metrics.calibration(recalibrated_draws(mean, sd, cal), truth)
    assert fixed["ece"] <= 0.03
    assert 0.88 <= fixed["coverage_90"] <= 0.92
    assert 0.035 <= fixed["below_90"] <= 0.065 and 0.035 <= fixed["above_90"] <= 0.065


def test_symmetric_predictive_keeps_the_image_and_gives_the_conformal_intervals():
    """The symmetric form: its mean is the method's image, its central 90 % interval the
    conformal one; calibrated where the errors are symmetric, while on skewed errors it keeps
    the lopsided tails that the residuals' form corrects (the control)."""
    rng = np.random.default_rng(6)
    samples, truth = predictive(rng, (100, 100), 2.0)
    cal = Calibration.from_residuals([residuals(samples, truth)], predictive="symmetric")
    samples, truth = predictive(rng, (100, 100), 2.0)
    mean, sd = moments(samples)
    draws = recalibrated_draws(mean, sd, cal, 99)  # levels (i + 1) / 100
    np.testing.assert_allclose(draws.mean(axis=0), mean, rtol=0, atol=1e-12)
    lo, hi = interval(mean, sd, cal, 0.9)
    np.testing.assert_allclose(draws[[4, 94]], np.stack([lo, hi]))  # levels 0.05, 0.95
    fixed = metrics.calibration(draws, truth)
    assert fixed["ece"] <= 0.03 and 0.88 <= fixed["coverage_90"] <= 0.92
    samples, truth = predictive(rng, (100, 100), 2.0, skewed=True)
    mean, sd = moments(samples)
    for form, lopsided in (("symmetric", True), ("residuals", False)):
        z = residuals(*predictive(rng, (100, 100), 2.0, skewed=True))
        tails = metrics.calibration(recalibrated_draws(
            mean, sd, Calibration.from_residuals([z], predictive=form)), truth)
        assert (abs(tails["below_90"] - tails["above_90"]) > 0.03) == lopsided, form


def test_calibration_files_keep_their_predictive_and_old_files_read_as_residuals(tmp_path):
    z = np.random.default_rng(7).standard_normal(500)
    cal = Calibration.from_residuals([z], predictive="symmetric")
    path = save_calibration(cal, tmp_path / "cal.json")
    assert load_calibration(path)[0].predictive == "symmetric"
    content = json.loads(path.read_text())
    content.pop("predictive")  # a file written before the fields existed
    content.pop("held_out")
    path.write_text(json.dumps(content))
    old = load_calibration(path)[0]
    assert old.predictive == "residuals" and old.held_out == () and old.held_out_mean() == {}
    content["held_out"] = [{"ece": 0.1}]  # a corrupt entry: one clear error
    path.write_text(json.dumps(content))
    with pytest.raises(InputError, match="malformed calibration file: held_out entries"):
        load_calibration(path)
    with pytest.raises(InputError, match="unknown recalibrated predictive 'mean'"):
        Calibration.from_residuals([z], predictive="mean")
    with pytest.raises(InputError, match="bound no interval"):  # 500 pixels: k_0.999 = inf
        recalibrated_draws(np.zeros(2), np.ones(2), cal, 2000)


def test_negative_control_no_guarantee_under_a_different_distribution():
    """Calibrated where the sd is 2x too wide, applied where it is 2x too narrow."""
    rng = np.random.default_rng(5)
    cal = fitted(rng, 2.0)
    samples, truth = predictive(rng, (100, 100), 0.5)
    mean, sd = moments(samples)
    lo, hi = interval(mean, sd, cal, 0.9)
    assert np.mean((truth >= lo) & (truth <= hi)) < 0.5
    assert metrics.ece(recalibrated_draws(mean, sd, cal), truth) > 0.2


def test_pixel_units_fail_when_pixels_of_an_image_move_together():
    """Every pixel of an image shares its |z|: pooling 5 images' pixels covers only 5/6 at
    0.9; the image-level multiplier (unbounded above 5/6 with 5 images) keeps q."""
    rng = np.random.default_rng(6)
    reps, images, size = 4000, 5, 20
    shared = rng.standard_normal((reps, images + 1, 1))
    z = np.abs(shared + 1e-3 * rng.standard_normal((reps, images + 1, size)))
    calib, new = z[:, :images].reshape(reps, -1), z[:, images, 0]
    weights = image_weights([size] * images)
    for q, pixel_units_hold in ((0.9, False), (0.6, True)):
        by_pixel = np.mean(new <= conformal_quantile(calib, q))
        by_image = np.mean(new <= conformal_quantile(calib, q, weights))
        assert by_image >= q - 0.02
        assert (by_pixel >= q - 0.02) == pixel_units_hold
    assert np.mean(new <= conformal_quantile(calib, 0.9)) == pytest.approx(5 / 6, abs=0.02)
    cal = Calibration.from_residuals(list(z[0, :images]))
    assert cal.multiplier(0.9, "image") == math.inf and math.isfinite(cal.multiplier(0.9))


@pytest.mark.parametrize("predictive", ["residuals", "symmetric"])
def test_held_out_images_estimate_the_calibration_on_a_new_image(predictive):
    """Exchangeable images: each held-out image is calibrated (ECE near the 100-draw floor,
    coverage 0.9). Images whose z differ in scale (sd 0.5, 1, 2): the held-out coverage of
    each is the closed form 2 Phi(k / sd_j) - 1, k solving the others' pooled coverage
    mean_i (2 Phi(k / sd_i) - 1) = 0.9, so the widest image is under-covered and the
    narrowest over-covered (the negative control)."""
    rng = np.random.default_rng(11)

    def errors(sd):  # z = e / sqrt(1 + EPS): the draw variances are 1, no floor fitted
        return sd * rng.standard_normal(20000), np.ones(20000)

    alike = held_out_scores([errors(1.0) for _ in range(3)], predictive, "none")
    for image in alike:
        assert image["coverage_90"] == pytest.approx(0.9, abs=0.01)
        assert image["ece"] < 0.02
    scales = (0.5, 1.0, 2.0)
    unlike = held_out_scores([errors(sd) for sd in scales], predictive, "none")
    for j, sd in enumerate(scales):
        others = [v for i, v in enumerate(scales) if i != j]
        k = optimize.brentq(lambda t, o=others: np.mean([2 * stats.norm.cdf(t / v) - 1
                                                         for v in o]) - 0.9, 1e-3, 50)
        expected = 2 * stats.norm.cdf(k / sd) - 1
        assert unlike[j]["coverage_90"] == pytest.approx(expected, abs=0.015)
    assert unlike[0]["coverage_90"] > 0.97 and unlike[2]["coverage_90"] < 0.75
    assert unlike[0]["ece"] > 0.2 and unlike[2]["ece"] > 0.2  # against < 0.02 above
    with pytest.raises(InputError, match="at least 2"):
        held_out_scores([errors(1.0)])


# ----------------------------------------------------------------------------- runs


N, V, D = 8, 3, 12
ANGLES = np.linspace(0.0, np.pi, V, endpoint=False)


def run(images, truth, sinogram=None, **kwargs):
    kwargs.setdefault("method", "mcd")
    kwargs.setdefault("config", {"inference": "mcd"})
    return posterior.build(images, sinogram=np.ones((V, D)) if sinogram is None else sinogram,
                           angles=ANGLES, ground_truth=truth, **kwargs)


def test_ensemble_member_weights_are_respected():
    """A one-draw member beside a 99-draw member: each weighs 1/2."""
    rng = np.random.default_rng(7)
    truth = rng.uniform(0.2, 0.8, (N, N))
    single = truth + 0.1
    wide = truth + 0.05 * rng.standard_normal((99, N, N))
    idata = run([single[None], wide], truth, chain_labels=["map", "mcd"], method="DE-2")
    weights = np.r_[0.5, np.full(99, 0.5 / 99)]
    pooled = np.concatenate([single[None], wide])
    z = residuals(pooled, truth, weights)
    assert not np.allclose(z, residuals(pooled, truth))
    mean, _ = run_moments(idata)
    np.testing.assert_allclose(mean, 0.5 * single + 0.5 * wide.mean(axis=0))
    cal = calibrate([idata], vouch=True, floor="none")
    np.testing.assert_allclose(cal.z_quantiles, np.quantile(z, LEVELS, method="weibull"))


def test_a_calibration_fits_one_member_count():
    """A selection of an ensemble's first members keeps the job's config hash: the member
    count tells a 2-member calibration from a 3-member run; files without it accept both."""
    rng = np.random.default_rng(9)

    def ensemble(k):
        truth = rng.uniform(0.2, 0.8, (N, N))
        members = [truth + 0.05 * rng.standard_normal((10, N, N)) for _ in range(k)]
        return run(members, truth, chain_labels=[f"m{i}" for i in range(k)], method="DE")

    val, two, three = ensemble(2), ensemble(2), ensemble(3)
    cal = calibrate([val], vouch=True)
    assert cal.members == 2 and cal.runs[0]["members"] == 2
    check_applicable(cal, two)
    with pytest.raises(InputError, match="members 3"):
        check_applicable(cal, three)
    with pytest.raises(InputError, match="differ in members"):
        calibrate([val, three], vouch=True)
    old = cal.to_json()
    old.pop("members")
    check_applicable(Calibration.from_json(old), three)
    truth = rng.uniform(0.2, 0.8, (N, N))
    single = run((truth + 0.05 * rng.standard_normal((10, N, N)))[None], truth)
    assert calibrate([single], vouch=True).members == 1


def test_zero_sd_pixels_use_the_variance_floor():
    rng = np.random.default_rng(8)
    truth = rng.uniform(0.2, 0.8, (N, N))
    draws = truth + 0.05 * rng.standard_normal((20, N, N))
    draws[:, 0, :] = 0.5  # every draw agrees: s_draws = 0
    truth[0, 0] = 0.5  # ... and equals the truth there
    z = residuals(draws, truth).reshape(N, N)
    assert np.isfinite(z).all()
    np.testing.assert_allclose(z[0], (truth[0] - 0.5) / math.sqrt(EPS))
    assert z[0, 0] == 0.0
    cal = calibrate([run(draws[None], truth)], vouch=True, floor="none")
    assert cal.n_zero_sd == N and cal.floor == EPS
    mean, sd = moments(draws)
    recal = recalibrated_draws(mean, sd, cal)
    assert np.isfinite(recal).all() and (recal[:, 0].std(axis=0) > 0).all()
    np.testing.assert_allclose(sd[0], math.sqrt(EPS))


def floored_errors(rng, n, floor, factor=1.0, tiny_share=0.5):
    """Errors e ~ Normal(0, factor^2 (v + floor)) of n pixels, a ``tiny_share`` of them with
    draws that nearly agree (v ~ 1e-8) and the rest spread (v ~ U(1e-4, 1e-3))."""
    v = np.where(rng.uniform(size=n) < tiny_share, 1e-8, rng.uniform(1e-4, 1e-3, n))
    return factor * np.sqrt(v + floor) * rng.standard_normal(n), v


def test_fitted_floor_recovers_the_variance_the_draws_miss():
    """The maximum-likelihood floor of errors with a known floor, over a scale factor that
    the profile likelihood ignores; with no floor in the errors it stays near EPS."""
    rng = np.random.default_rng(12)
    for factor in (0.7, 2.0):
        pairs = [floored_errors(rng, 20000, 2e-4, factor) for _ in range(2)]
        assert fit_floor(pairs) == pytest.approx(2e-4, rel=0.1)
    assert fit_floor([floored_errors(rng, 20000, 0.0)]) < 2e-6
    with pytest.raises(InputError, match="same object pixels"):
        fit_floor([(np.zeros(3), np.zeros(2))])
    for bad in ([], [(np.array([np.nan]), np.ones(1))], [(np.zeros(2), -np.ones(2))]):
        with pytest.raises(InputError):
            Calibration.from_errors(bad, "none")


def test_fitted_floor_carries_to_images_with_another_mix_of_pixels():
    """Two images with one error model, e ~ N(0, v + 2e-4), but different shares of pixels
    whose draws agree (10 % and 90 %): with the fitted floor each is calibrated when held
    out; with the draws' own spread (no floor) z is not alike across the images and each
    held-out image misses (the control)."""
    rng = np.random.default_rng(13)
    pairs = [floored_errors(rng, 20000, 2e-4, tiny_share=share) for share in (0.1, 0.9)]
    fitted_out = held_out_scores(pairs, "residuals", "fit")
    plain_out = held_out_scores(pairs, "residuals", "none")
    for fit_image, plain_image in zip(fitted_out, plain_out, strict=True):
        assert fit_image["ece"] < 0.02
        assert abs(fit_image["coverage_90"] - 0.9) < 0.015
        assert plain_image["ece"] > 0.1


def test_calibrations_keep_their_floor_and_old_files_read_as_eps(tmp_path):
    rng = np.random.default_rng(14)
    pairs = [floored_errors(rng, 5000, 2e-4)]
    cal = Calibration.from_errors(pairs)
    assert cal.floor == pytest.approx(2e-4, rel=0.2)
    np.testing.assert_allclose(  # quantiles of the floored z
        cal.z_quantiles, np.quantile(pairs[0][0] / np.sqrt(pairs[0][1] + cal.floor), LEVELS,
                                     method="weibull"))
    path = save_calibration(cal, tmp_path / "cal.json")
    assert load_calibration(path)[0].floor == cal.floor
    content = json.loads(path.read_text())
    content.pop("floor")  # a file written before the floor existed
    path.write_text(json.dumps(content))
    assert load_calibration(path)[0].floor == EPS
    for bad in (0.0, math.nan):
        with pytest.raises(InputError, match="variance floor must be"):
            Calibration.from_residuals([pairs[0][0]], floor=bad)
    with pytest.raises(InputError, match="unknown floor 'zero'"):
        Calibration.from_errors(pairs, floor="zero")


def test_apply_normalises_with_the_calibration_floor(bench):
    """The recalibrated draws are m + sqrt(s_draws^2 + floor) Z_i."""
    idata = bench["idata"]
    cal_path = bench["folder"] / "floor_cal.json"
    cal = calibrate([idata[i] for i in range(5)], benchmark=bench["dataset"])
    assert cal.floor > EPS
    save_calibration(cal, cal_path)
    recal = apply(idata[5], cal_path, 30)
    mean, sd = run_moments(idata[5], cal.floor)
    np.testing.assert_allclose(recal.posterior_predictive["image"].values[0],
                               recalibrated_draws(mean, sd, cal, 30))
    assert not np.allclose(sd, run_moments(idata[5])[1])


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """A tiny benchmark (ids 0-4 validation, 5 test) and runs of it, on disk."""
    folder = tmp_path_factory.mktemp("recal")
    dataset = build_benchmark(size=16, views=(4,), n_phantoms=6)
    path = write_dataset(dataset, folder / "bench.nc")
    rng = np.random.default_rng(9)
    runs = {}
    for image_id in range(6):
        sample = benchmark_sample(dataset, image_id, 4)
        truth = sample.ground_truth
        mean = truth + SIGMA * rng.standard_normal(truth.shape)
        draws = mean + 2 * SIGMA * rng.standard_normal((30, *truth.shape))
        idata = posterior.build(draws[None], sinogram=sample.sinogram,
                                angles=sample.geometry.angles, method="mcd",
                                config={"inference": "mcd"}, ground_truth=truth)
        runs[image_id] = posterior.save(idata, folder / f"run_{image_id}.nc")
    return {"dataset": dataset, "path": path, "runs": runs, "folder": folder,
            "idata": {i: posterior.load(p) for i, p in runs.items()}}


def test_test_split_runs_are_refused(bench):
    idata, dataset = bench["idata"], bench["dataset"]
    with pytest.raises(InputError, match="test split"):
        calibrate([idata[0], idata[5]], benchmark=dataset, vouch=True)
    stranger = idata[1]
    moved = run(posterior.image_draws(stranger)[None],
                stranger.constant_data["ground_truth"].values)
    with pytest.raises(InputError, match="cannot establish the split"):
        calibrate([moved], benchmark=dataset)
    with pytest.raises(InputError, match="no --dataset"):
        calibrate([idata[0]])
    assert not calibrate([moved], benchmark=dataset, vouch=True).split_verified
    cal = calibrate([idata[i] for i in range(5)], benchmark=dataset)
    assert cal.split_verified and [r["image_id"] for r in cal.runs] == list(range(5))
    with pytest.raises(InputError, match="same data"):
        calibrate([idata[0]] * 2, benchmark=dataset)


def test_calibration_leaves_out_the_air_of_the_benchmark(bench):
    """The object residuals stop at the image's air level: the benchmark's when it knows
    it (windowed CT, here declared on the phantoms), so that run files written before the
    level was recorded calibrate the same object; else the run's own."""
    idata, dataset = bench["idata"], bench["dataset"]
    runs = [idata[i] for i in range(5)]
    truths = [r.constant_data["ground_truth"].values for r in runs]
    plain = calibrate(runs, benchmark=dataset)
    assert plain.n_pixels == sum(int((t > 0).sum()) for t in truths)
    ct = dataset.copy()
    ct.attrs["hu_window"] = [-1000.0, 1000.0]
    windowed = calibrate(runs, benchmark=ct)
    assert windowed.n_pixels == sum(int((t > 0.025).sum()) for t in truths) < plain.n_pixels
    assert {r["air_level"] for r in windowed.runs} == {0.025}
    own = [posterior.with_air_level(r.copy(), 0.025) for r in runs]
    assert calibrate(own, benchmark=dataset).n_pixels == plain.n_pixels  # the benchmark's
    assert calibrate(own, vouch=True).n_pixels == windowed.n_pixels  # the run's


def test_cli_round_trip(bench, capsys):
    folder, runs = bench["folder"], bench["runs"]
    cal_path, out = folder / "cal.json", folder / "test_5_recal.nc"
    val = [str(runs[i]) for i in range(5)]
    code = main(["fit", *val, "--dataset", str(bench["path"]), "--floor", "none",
                 "--out", str(cal_path)])
    assert code == 0, capsys.readouterr().err
    content = json.loads(cal_path.read_text())
    assert content["format"] == FORMAT
    assert (content["method"], content["views"], content["split"]) == ("mcd", 4, "val")
    assert content["split_verified"] and content["n_images"] == 5 and content["floor"] == EPS
    loaded = [bench["idata"][i] for i in range(5)]
    objects = sum(int((r.constant_data["ground_truth"].values > 0).sum()) for r in loaded)
    assert content["n_pixels"] == objects and len(content["z_quantiles"]) == LEVELS.size
    assert {r["data_hash"] for r in content["runs"]} == {
        posterior.run_attrs(r)["data_hash"] for r in loaded}
    assert content["config_hash"] == posterior.run_attrs(loaded[0])["config_hash"]
    assert len(content["held_out"]) == 5 and "each validation image held out" in (
        capsys.readouterr().out)
    assert load_calibration(cal_path)[0].held_out_mean()["coverage_90"] == pytest.approx(
        np.mean([h["coverage_90"] for h in content["held_out"]]))

    code = main(["apply", str(runs[5]), "--calibration", str(cal_path),
                               "--out", str(out), "--draws", "40"])
    printed = capsys.readouterr().out
    assert code == 0 and "raw predictive" in printed and "recalibrated" in printed
    assert "object coverage" in printed
    recal = posterior.load(out)
    attrs = posterior.run_attrs(recal)
    assert attrs["calibration_sha256"] == hashlib.sha256(cal_path.read_bytes()).hexdigest()
    assert attrs["calibration_file"] == str(cal_path.resolve())
    assert attrs["method"] == "mcd+recal"
    assert recal.posterior_predictive["image"].shape == (1, 40, 16, 16)
    raw = bench["idata"][5]
    assert attrs["data_hash"] == posterior.run_attrs(raw)["data_hash"]
    assert metrics.score(recal)["ece_object"] < metrics.score(raw)["ece_object"]


@pytest.mark.parametrize("case, message", [
    ("exists", "exists"), ("test", "test split"), ("unknown", "cannot establish"),
    ("calibration run", "one of the calibration runs"), ("bad file", "not JSON"),
    ("out dir", "does not exist"),
])
def test_cli_bad_input_is_one_line_and_exit_2(bench, capsys, case, message):
    folder, runs = bench["folder"], bench["runs"]
    cal_path = folder / "cli_cal.json"
    if not cal_path.exists():
        assert main(["fit", *(str(runs[i]) for i in range(4)), "--vouch-validation",
                                   "--out", str(cal_path)]) == 0
    (folder / "bad.json").write_text("{not json")
    argv = {
        "exists": ["fit", str(runs[0]), "--vouch-validation", "--out", str(cal_path)],
        "test": ["fit", str(runs[5]), "--dataset", str(bench["path"]), "--out",
                 str(folder / "t.json")],
        "unknown": ["fit", str(runs[0]), "--out", str(folder / "u.json")],
        "calibration run": ["apply", str(runs[0]), "--calibration", str(cal_path), "--out",
                            str(folder / "c.nc")],
        "bad file": ["apply", str(runs[5]), "--calibration", str(folder / "bad.json"),
                     "--out", str(folder / "b.nc")],
        "out dir": ["fit", str(folder / "missing.nc"), "--out", str(folder / "no" / "x.json")],
    }[case]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err


def test_report_scores_the_recalibrated_predictive_beside_the_run(bench, tmp_path):
    from bayes_inr.report import main as report_main

    folder, runs = bench["folder"], bench["runs"]
    cal_path = folder / "report_cal.json"
    assert main(["fit", *(str(runs[i]) for i in range(5)), "--dataset", str(bench["path"]),
                 "--out", str(cal_path)]) == 0
    out = tmp_path / "report"
    assert report_main([str(runs[5]), str(runs[0]), "--calibration", str(cal_path),
                        "--out", str(out)]) == 0
    page = (out / "report.md").read_text()
    # the test image gets its recalibrated row; validation image 0 (a calibration run) not
    assert "run_5+recal" in page and "run_0+recal" not in page
    rows = [line.split() for line in page.splitlines() if line.startswith("run_5")]
    ece = {row[0]: float(row[3 + metrics.SUMMARY.index("ece_object")]) for row in rows[:2]}
    assert ece["run_5+recal"] < ece["run_5"]
    # a calibration that applies to no run is refused before anything is written
    assert report_main([str(runs[0]), "--calibration", str(cal_path),
                        "--out", str(tmp_path / "none")]) == 2
    assert not (tmp_path / "none").exists()


def test_fit_writes_and_scores_the_recalibrated_predictive(tmp_path, capsys):
    from bayes_inr.fit import main as fit_main

    tiny = ["--inference", "mcd", "--config", "none", "--size", "16", "--views", "6",
            "--steps", "5", "--draws", "8", "--width", "8", "--depth", "1", "--threads", "1",
            "--quiet"]
    runs = [tmp_path / f"val_{k}.nc" for k in range(2)]
    for k, path in enumerate(runs):
        assert fit_main([*tiny, "--phantom", str(k), "--out", str(path)]) == 0
    cal_path = tmp_path / "cal.json"
    assert main(["fit", *map(str, runs), "--vouch-validation", "--out", str(cal_path)]) == 0
    capsys.readouterr()
    out = tmp_path / "new.nc"
    assert fit_main([*tiny, "--phantom", "2", "--calibration", str(cal_path),
                     "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "recalibrated" in printed and (tmp_path / "new_recal.nc").exists()
    recal = posterior.load(tmp_path / "new_recal.nc")
    assert posterior.run_attrs(recal)["method"] == "mcd+recal"
    # another configuration or view count is refused before the fit, with nothing written
    for change in (["--width", "9"], ["--views", "7"]):
        bad = tmp_path / f"bad{change[1]}.nc"
        assert fit_main([*tiny, *change, "--calibration", str(cal_path), "--out",
                         str(bad)]) == 2
        assert "calibrates another predictive" in capsys.readouterr().err
        assert not bad.exists()
    # an ensemble's calibration is for its member count
    de = [*tiny, "--inference", "ensemble", "--member-inference", "mcd"]
    assert fit_main([*de, "--members", "2", "--phantom", "0", "--out",
                     str(tmp_path / "de.nc")]) == 0
    de_cal = tmp_path / "de_cal.json"
    assert main(["fit", str(tmp_path / "de.nc"), "--vouch-validation", "--out",
                 str(de_cal)]) == 0
    capsys.readouterr()
    assert fit_main([*de, "--members", "2", "--phantom", "2", "--calibration", str(de_cal),
                     "--out", str(tmp_path / "de2.nc")]) == 0
    assert posterior.run_attrs(posterior.load(tmp_path / "de2_recal.nc"))["method"] == (
        "DE-2+recal")
    bad = tmp_path / "de3.nc"
    assert fit_main([*de, "--members", "3", "--phantom", "2", "--calibration", str(de_cal),
                     "--out", str(bad)]) == 2
    assert "calibrates method DE-2, this fit has DE-3" in capsys.readouterr().err
    assert not bad.exists()
