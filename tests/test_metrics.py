"""Metrics: known values, calibrated and miscalibrated draws, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from bayes_inr.core.errors import InputError
from bayes_inr.evaluation import metrics

N_PIX = 96
N_DRAWS = 400


def gaussian_case(scale: float, seed: int = 0):
    """Truth ~ N(m, s^2) per pixel; draws ~ N(m, (scale s)^2)."""
    rng = np.random.default_rng(seed)
    m = rng.uniform(0.2, 0.8, (N_PIX, N_PIX))
    s = rng.uniform(0.01, 0.1, (N_PIX, N_PIX))
    truth = m + s * rng.standard_normal((N_PIX, N_PIX))
    draws = m + scale * s * rng.standard_normal((N_DRAWS, N_PIX, N_PIX))
    return draws, truth


@pytest.fixture(scope="module")
def calibrated():
    return gaussian_case(1.0, seed=1)


@pytest.fixture(scope="module")
def narrow():
    return gaussian_case(0.5, seed=2)


# ----------------------------------------------------------------------------- PSNR / SSIM


def test_psnr_known_offset_uses_unit_data_range():
    truth = np.full((16, 16), 0.25)  # image max 0.25: a max-based PSNR would differ
    assert metrics.psnr(truth + 0.1, truth) == pytest.approx(20.0)
    assert metrics.psnr(truth + 0.01, truth) == pytest.approx(40.0)


def test_psnr_identical_is_inf():
    image = np.random.default_rng(0).random((8, 8))
    assert metrics.psnr(image, image) == math.inf


def test_ssim_identical_is_one_and_drops_with_noise():
    image = np.random.default_rng(0).random((32, 32))
    assert metrics.ssim(image, image) == pytest.approx(1.0)
    noisy = image + 0.2 * np.random.default_rng(1).standard_normal(image.shape)
    assert metrics.ssim(noisy, image) < 0.9


# ----------------------------------------------------------------------------- moments, NLL


def symmetric_draws(m: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Draws m - s and m + s: sample mean exactly m, ddof-0 variance exactly s^2."""
    return np.stack([m - s, m + s, m - s, m + s])


def test_predictive_moments_ddof0():
    m = np.array([[0.3, 0.5]])
    s = np.array([[0.1, 0.2]])
    mean, var = metrics.predictive_moments(symmetric_draws(m, s))
    np.testing.assert_allclose(mean, m)
    np.testing.assert_allclose(var, s**2)


def test_nll_closed_form():
    rng = np.random.default_rng(3)
    m = rng.uniform(0.2, 0.8, (10, 10))
    s = rng.uniform(0.01, 0.1, (10, 10))
    x = rng.uniform(0, 1, (10, 10))
    v = s**2 + metrics.EPS
    expected = np.mean(0.5 * np.log(2 * np.pi * v) + 0.5 * (x - m) ** 2 / v)
    assert metrics.nll(symmetric_draws(m, s), x) == pytest.approx(expected, rel=1e-10)
    # one constant draw: the variance is eps alone
    const = np.full((1, 2, 2), 0.5)
    expected_eps = 0.5 * np.log(2 * np.pi * 1e-6) + 0.5 * 0.01 / 1e-6
    assert metrics.nll(const, np.full((2, 2), 0.6)) == pytest.approx(expected_eps)


def test_nll_is_lower_for_calibrated_than_narrow(calibrated, narrow):
    assert metrics.nll(*calibrated) < metrics.nll(*narrow)


# ----------------------------------------------------------------------------- coverage, ECE


def test_calibrated_draws_have_small_ece(calibrated):
    draws, truth = calibrated
    assert metrics.ece(draws, truth) < 0.02
    curve = metrics.coverage_curve(draws, truth)
    np.testing.assert_allclose(curve, metrics.LEVELS, atol=0.03)


def test_narrow_draws_match_analytic_coverage(narrow):
    draws, truth = narrow
    curve = metrics.coverage_curve(draws, truth)
    z = norm.ppf((1 + metrics.LEVELS) / 2)
    expected = 2 * norm.cdf(z / 2) - 1  # |x - m| <= (s/2) z with x ~ N(m, s^2)
    np.testing.assert_allclose(curve, expected, atol=0.02)
    honest = metrics.ece(draws, truth)
    assert honest == pytest.approx(np.mean(np.abs(expected - metrics.LEVELS)), abs=0.01)
    assert honest > 0.1


def test_pit_is_the_randomised_rank_among_s_plus_1():
    draws = np.array([[[0.0]], [[1.0]], [[2.0]], [[3.0]]])
    # two draws below 1.5, none tied: PIT uniform on [2/5, 3/5]
    lo, hi = metrics.pit_interval(draws, np.array([[1.5]]))
    assert (lo.item(), hi.item()) == pytest.approx((0.4, 0.6))
    # q = 0.2: central interval [0.4, 0.6] holds all of it; q = 0.1: half
    assert metrics.coverage(draws, np.array([[1.5]]), 0.2) == pytest.approx(1.0)
    assert metrics.coverage(draws, np.array([[1.5]]), 0.1) == pytest.approx(0.5)
    # the truth tied with draw 1.0: r = 1, t = 1, PIT uniform on [1/5, 3/5]
    lo, hi = metrics.pit_interval(draws, np.array([[1.0]]))
    assert (lo.item(), hi.item()) == pytest.approx((0.2, 0.6))
    rng = np.random.default_rng(4)
    d, t = rng.random((50, 6, 6)), rng.random((6, 6))
    curve = metrics.coverage_curve(d, t)
    for q, c in zip(metrics.LEVELS, curve, strict=True):
        assert metrics.coverage(d, t, q) == pytest.approx(c)


@pytest.mark.parametrize("n_draws", [5, 20, 100])
def test_calibrated_at_any_draw_count(n_draws):
    # truth exchangeable with the draws: the rank PIT is exactly uniform, so the ECE is
    # only sampling noise over pixels, whatever S
    rng = np.random.default_rng(n_draws)
    draws, truth = rng.standard_normal((n_draws, 100, 100)), rng.standard_normal((100, 100))
    assert metrics.ece(draws, truth) < 0.01
    assert metrics.pit_error(draws, truth) < 0.01
    if n_draws > 20:
        return  # at S = 100 the floor (0.009) is within the pixel sampling noise
    # negative control: the interpolated-quantile interval of S draws covers only about
    # q (S - 1) / (S + 1), the finite-draw floor this definition removes
    lv = metrics.LEVELS
    q = np.quantile(draws, np.concatenate([0.5 - lv / 2, 0.5 + lv / 2]), axis=0)
    interval = ((truth >= q[:20]) & (truth <= q[20:])).mean(axis=(1, 2))
    floor = np.mean(lv * 2 / (n_draws + 1))
    assert np.mean(np.abs(interval - lv)) == pytest.approx(floor, rel=0.25)


def test_ties_count_with_the_randomised_pit():
    # truth at an atom of all draws: PIT uniform on [0, 1], calibrated at every level
    atom = np.zeros((40, 1, 1))
    np.testing.assert_allclose(metrics.coverage_curve(atom, np.zeros((1, 1))), metrics.LEVELS)
    # all draws at the truth's one side but touching it: 30 below, 10 tied of 40;
    # PIT uniform on [30/41, 1]
    quarter = np.concatenate([np.zeros((30, 1, 1)), np.ones((10, 1, 1))])
    levels = np.array([0.0, 0.5, 0.6, 0.9])
    lo = 30 / 41
    expected = np.clip(np.minimum(0.5 + levels / 2, 1) - np.maximum(0.5 - levels / 2, lo),
                       0, None) / (1 - lo)
    np.testing.assert_allclose(metrics.coverage_curve(quarter, np.ones((1, 1)), levels),
                               expected)
    # tied and untied pixels mix pixel by pixel
    mixed = np.concatenate([atom, np.linspace(0.5, 1.5, 40).reshape(40, 1, 1)], axis=2)
    truth = np.array([[0.0, 1.0]])
    curve = metrics.coverage_curve(mixed, truth)
    untied = metrics.coverage_curve(mixed[:, :, 1:], truth[:, 1:])
    np.testing.assert_allclose(curve, (metrics.LEVELS + untied) / 2)
    assert metrics.calibration(mixed, truth)["tied"] == 0.5


def test_half_on_the_truth_is_not_calibrated():
    # half the draws exactly at the truth 0, half above: the PIT is uniform on about
    # [0, 0.5]. The two-sided coverage looks calibrated (ECE near 0); the PIT error and
    # the one-sided coverage expose it.
    rng = np.random.default_rng(7)
    draws = np.concatenate([np.zeros((50, 32, 32)), rng.uniform(0.01, 1, (50, 32, 32))])
    truth = np.zeros((32, 32))
    assert metrics.ece(draws, truth) < 0.01
    assert metrics.pit_error(draws, truth) > 0.2
    below, above = metrics.tail_coverage(draws, truth, 0.9)
    assert below == pytest.approx(0.1, abs=0.005) and above == 0.0
    hist = metrics.pit_histogram(draws, truth, bins=10)
    assert hist.sum() == pytest.approx(1.0)
    hi = 51 / 101  # 50 tied draws and the truth: ranks 0-50 of 101
    expected = np.diff(np.clip(np.linspace(0, 1, 11) / hi, 0, 1))
    np.testing.assert_allclose(hist, expected, atol=1e-12)


def test_one_sided_coverage_catches_a_shift():
    rng = np.random.default_rng(8)
    draws = rng.standard_normal((100, 64, 64))
    truth = rng.standard_normal((64, 64)) + 1.0  # predictive biased low by one sd
    below, above = metrics.tail_coverage(draws, truth, 0.9)
    # truth - draw ~ N(1, 2): P(truth > 95 % quantile of N(0, 1)) = 1 - Phi(1.645 - 1)
    assert above == pytest.approx(1 - norm.cdf(norm.ppf(0.95) - 1), abs=0.03)
    assert below == pytest.approx(norm.cdf(norm.ppf(0.05) - 1), abs=0.01)
    calib = metrics.calibration(draws, truth)
    assert calib["above_90"] == pytest.approx(above)
    assert calib["below_90"] == pytest.approx(below)


def test_ece_sums_over_levels_times_005():
    rng = np.random.default_rng(5)
    d, t = rng.random((30, 5, 5)), rng.random((5, 5))
    curve = metrics.coverage_curve(d, t)
    assert metrics.ece(d, t) == pytest.approx(np.sum(np.abs(curve - metrics.LEVELS)) * 0.05)


def test_paper_delta_ece_is_optimistic_and_uses_the_interval_rule(narrow):
    draws, truth = narrow
    paper, delta = metrics.paper_delta_ece(draws, truth, return_delta=True)
    assert paper < metrics.ece(draws, truth) and delta > 0
    # delta = 0 is the paper's interval rule: interpolated quantiles, inclusive bounds
    rng = np.random.default_rng(6)
    d, t = rng.random((50, 6, 6)), rng.random((6, 6))
    lv = metrics.LEVELS
    q = np.quantile(d, np.concatenate([0.5 - lv / 2, 0.5 + lv / 2]), axis=0)
    interval = ((t >= q[:20]) & (t <= q[20:])).mean(axis=(1, 2))
    assert metrics.paper_delta_ece(d, t, deltas=[0.0]) == pytest.approx(
        np.mean(np.abs(interval - lv)))
    # tied pixels (the truth equals draws) count with their PIT share, not as covered at
    # every level: an atom at the truth is calibrated, not over-covered
    atom = np.zeros((40, 4, 4))
    assert metrics.paper_delta_ece(atom, np.zeros((4, 4)), deltas=[0.0]) == pytest.approx(0.0)


# ----------------------------------------------------------------------------- CRPS


def test_crps_of_a_gaussian_ensemble_matches_the_closed_form():
    # CRPS(N(m, s^2), y) = s (z (2 Phi(z) - 1) + 2 phi(z) - 1 / sqrt(pi)), z = (y - m) / s
    rng = np.random.default_rng(9)
    m, s = 0.3, 0.05
    truth = rng.uniform(0.2, 0.4, (20, 20))
    draws = m + s * rng.standard_normal((4000, 20, 20))
    z = (truth - m) / s
    exact = s * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / np.sqrt(np.pi))
    # the empirical predictive's CRPS exceeds the exact one by E|X - X'| / (2 S) on
    # average; Monte Carlo error of the mean over 400 pixels is far below 1 %
    assert metrics.crps(draws, truth) == pytest.approx(exact.mean(), rel=0.01)
    # negative control: a too-narrow ensemble scores worse
    assert metrics.crps(m + 0.2 * s * rng.standard_normal((4000, 20, 20)), truth) \
        > 1.05 * exact.mean()


def test_crps_of_one_draw_is_the_absolute_error():
    rng = np.random.default_rng(10)
    image, truth = rng.random((8, 8)), rng.random((8, 8))
    assert metrics.crps(image[None], truth) == pytest.approx(np.abs(image - truth).mean())
    assert metrics.calibration(image[None], truth) == {
        "crps": pytest.approx(np.abs(image - truth).mean())}


# ----------------------------------------------------------------------------- weights


def test_mixture_weights_each_member_equally():
    # a MAP member (one draw at 0) beside a 99-draw member at 1: equal member weights
    # put the mixture's mean at 0.5, draw-count weights would put it at 0.99
    draws = np.concatenate([np.zeros((1, 2, 2)), np.ones((99, 2, 2))])
    weights = np.concatenate([[0.5], np.full(99, 0.5 / 99)])
    mean, var = metrics.predictive_moments(draws, weights)
    np.testing.assert_allclose(mean, 0.5)
    np.testing.assert_allclose(var, 0.25)
    # the truth 0.5 lies between the members: weight 0.5 below it, so PIT ~ 0.5
    lo, hi = metrics.pit_interval(draws, np.full((2, 2), 0.5), weights)
    np.testing.assert_allclose(lo, 0.5 / 1.01)
    assert metrics.crps(draws, np.zeros((2, 2)), weights) == pytest.approx(0.25)
    assert metrics.crps(draws, np.zeros((2, 2))) == pytest.approx(0.99**2)
    # the paper's weighted quantiles reduce to np.quantile for equal weights
    equal = np.full(100, 0.01)
    d = np.random.default_rng(11).random((100, 3, 3))
    assert metrics.paper_delta_ece(d, d[0] * 0.9, weights=equal) == pytest.approx(
        metrics.paper_delta_ece(d, d[0] * 0.9))


def test_supports_split_object_and_background():
    rng = np.random.default_rng(12)
    truth = np.zeros((20, 20))
    truth[5:15, 5:15] = 0.5
    draws = truth + 0.05 * rng.standard_normal((200, 20, 20))
    draws[:, truth == 0] = 0.0  # air exactly 0 in every draw: tied
    obj = metrics.calibration(draws, truth, mask=truth > 0)
    air = metrics.calibration(draws, truth, mask=truth == 0)
    full = metrics.calibration(draws, truth)
    assert air["tied"] == 1.0 and obj["tied"] == 0.0
    assert full["tied"] == pytest.approx(0.75)
    share = 0.25
    assert full["crps"] == pytest.approx(share * obj["crps"] + (1 - share) * air["crps"])
    assert air["crps"] == 0.0 and air["ece"] == pytest.approx(0.0, abs=1e-12)


def test_noisy_air_counts_as_background_above_the_air_level():
    """A CT truth's air is a little above 0 (clipped scanner noise). A predictive calibrated
    on the body and certain of 0 in the air scores as calibrated on the object only when the
    run's air level sends that air to the background; at level 0 the same draws look badly
    over-confident (the negative control), while 'all' does not depend on the level."""
    from bayes_inr import posterior

    rng = np.random.default_rng(13)
    truth = rng.uniform(0.0, 0.006, (32, 32))  # air at -1000 to -988 HU in the CT window
    truth[4:28, 4:28] = 0.5
    mean = truth + 0.02 * rng.standard_normal((32, 32))  # the truth is a draw
    draws = mean + 0.02 * rng.standard_normal((400, 32, 32))
    draws[:, truth < 0.1] = 0.0
    runs = {level: posterior.build(draws[None], sinogram=np.zeros((4, 35)),
                                   angles=np.arange(4) * np.pi / 4, method="MCD", config={},
                                   ground_truth=truth, air_level=level)
            for level in (0.0, 0.025)}
    air, clipped = metrics.score(runs[0.025]), metrics.score(runs[0.0])
    assert air["air_level"] == 0.025 and clipped["air_level"] == 0.0
    assert air["object_share"] == pytest.approx(0.5625)
    assert air["ece_object"] < 0.03 and abs(air["coverage_90_object"] - 0.9) < 0.04
    assert clipped["ece_object"] > 0.15 and clipped["coverage_90_object"] < 0.6
    assert air["ece_all"] == clipped["ece_all"]
    masks = metrics.support_masks(truth, 0.025)
    assert (masks["object"] == (truth == 0.5)).all()
    assert (masks["background"] == ~masks["object"]).all()
    header = metrics.score_table([air]).splitlines()[0].split()
    assert "ece_object" in header and "air_level" not in header  # a set's definition


def test_coverage_map_known_case():
    m = np.array([[0.5, 0.5, 0.5]])
    s = np.array([[0.1, 0.0, 0.0]])
    truth = np.array([[0.7, 0.5, 0.6]])
    cmap = metrics.coverage_map(symmetric_draws(m, s), truth)
    np.testing.assert_allclose(cmap, [[2.0, 0.0, np.inf]])


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "func", [metrics.nll, metrics.ece, metrics.coverage_curve, metrics.coverage_map,
             metrics.crps, metrics.pit_error, metrics.calibration]
)
def test_shape_mismatch_and_nan_raise(func):
    draws = np.zeros((3, 4, 4))
    with pytest.raises(InputError, match="does not match"):
        func(draws, np.zeros((4, 5)))
    bad = draws.copy()
    bad[1, 2, 2] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        func(bad, np.zeros((4, 4)))
    with pytest.raises(InputError, match="non-finite"):
        func(draws, np.full((4, 4), np.nan))


def test_image_metrics_validate():
    with pytest.raises(InputError, match="does not match"):
        metrics.psnr(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(InputError, match="non-finite"):
        metrics.ssim(np.full((8, 8), np.nan), np.zeros((8, 8)))
    with pytest.raises(InputError):
        metrics.coverage(np.zeros((3, 2, 2)), np.zeros((2, 2)), 1.5)


def test_weights_validate():
    with pytest.raises(InputError, match="weights"):
        metrics.nll(np.zeros((3, 2, 2)), np.zeros((2, 2)), weights=[1.0, 2.0])
    with pytest.raises(InputError, match="non-negative"):
        metrics.ece(np.zeros((2, 2, 2)), np.zeros((2, 2)), weights=[1.0, -1.0])


def test_score_table_formats_missing_as_dash():
    rows = [
        {"method": "MCD", "psnr": 33.08, "nll": 1.093, "ece": 0.113},
        {"method": "FBP", "psnr": 15.71, "nll": float("nan")},
    ]
    table = metrics.score_table(rows).splitlines()
    assert table[0].split() == ["method", "psnr", "nll", "ece"]
    assert table[2].split() == ["MCD", "33.080", "1.093", "0.113"]
    assert table[3].split() == ["FBP", "15.710", "-", "-"]
    assert len({len(line) for line in table[:3]}) == 1
    # small values keep three significant digits: two TV weights of a sweep stay apart
    small = metrics.score_table([{"tv_weight": 5.48e-4}, {"tv_weight": 1.75e-4},
                                 {"tv_weight": 0.0}]).split()
    assert small[2:] == ["0.000548", "0.000175", "0.000"]


def test_summary_and_ranking_columns_come_from_the_metric_table():
    from bayes_inr.evaluation.metrics import RANKING, SUMMARY, metric_of, rank_key

    assert all(metric_of(column) for column in SUMMARY)  # every column is a known metric
    assert metric_of("crps_object").better == "lower" and metric_of("psnr").better == "higher"
    rows = [{"crps_object": 0.02, "psnr": 30.0}, {"crps_object": 0.01, "psnr": 20.0},
            {"crps_object": 0.01, "psnr": 25.0}, {"crps_object": float("nan"), "psnr": 40.0}]
    assert [rows.index(r) for r in sorted(rows, key=rank_key)] == [2, 1, 0, 3]
    assert RANKING[0] == "crps_object"
    with pytest.raises(ValueError, match="cannot rank"):
        rank_key({"coverage_90_object": 0.9}, ("coverage_90_object",))
    with pytest.raises(KeyError):
        metric_of("sharpness_object")
