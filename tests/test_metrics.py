"""Metrics: known values, calibrated and miscalibrated draws, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from bayes_inr import metrics
from bayes_inr.errors import InputError

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


def test_coverage_matches_curve_and_is_inclusive():
    draws = np.array([[[0.0]], [[1.0]], [[2.0]], [[3.0]]])
    # q = 0: interval [median, median] = [1.5, 1.5], inclusive
    assert metrics.coverage(draws, np.array([[1.5]]), 0.0) == 1.0
    assert metrics.coverage(draws, np.array([[1.501]]), 0.0) == 0.0
    # q = 0.5: quantiles 0.25, 0.75 -> [0.75, 2.25] (linear interpolation)
    assert metrics.coverage(draws, np.array([[0.75]]), 0.5) == 1.0
    assert metrics.coverage(draws, np.array([[0.74]]), 0.5) == 0.0
    rng = np.random.default_rng(4)
    d, t = rng.random((50, 6, 6)), rng.random((6, 6))
    curve = metrics.coverage_curve(d, t)
    for q, c in zip(metrics.LEVELS, curve, strict=True):
        assert metrics.coverage(d, t, q) == c
        lo, hi = np.quantile(d, [0.5 - q / 2, 0.5 + q / 2], axis=0)
        assert c == np.mean((t >= lo) & (t <= hi))


def test_ties_count_with_the_randomised_pit():
    # truth at an atom of the draws: the PIT is uniform on [F(x-), F(x)]
    atom = np.zeros((40, 1, 1))
    np.testing.assert_allclose(metrics.coverage_curve(atom, np.zeros((1, 1))), metrics.LEVELS)
    assert metrics.ece(atom, np.zeros((1, 1))) == pytest.approx(0.0)
    # half the draws at the truth 0, half above: PIT uniform on [0, 0.5], so covered at q
    # with probability (q / 2) / 0.5 = q
    half = np.concatenate([np.zeros((20, 1, 1)), np.linspace(0.1, 1, 20).reshape(20, 1, 1)])
    np.testing.assert_allclose(metrics.coverage_curve(half, np.zeros((1, 1))), metrics.LEVELS)
    # all draws at the truth's one side but touching it: F(x-) = 0.75, F(x) = 1
    quarter = np.concatenate([np.zeros((30, 1, 1)), np.ones((10, 1, 1))])
    levels = np.array([0.0, 0.5, 0.6, 0.9])
    expected = np.clip(np.minimum(0.5 + levels / 2, 1) - 0.75, 0, None) / 0.25
    np.testing.assert_allclose(metrics.coverage_curve(quarter, np.ones((1, 1)), levels), expected)
    # tied pixels mix with untied ones pixel by pixel, in the curve and the paper variant
    mixed = np.concatenate([atom, np.linspace(0.5, 1.5, 40).reshape(40, 1, 1)], axis=2)
    truth = np.array([[0.0, 1.0]])
    curve = metrics.coverage_curve(mixed, truth)
    untied = metrics.coverage_curve(mixed[:, :, 1:], truth[:, 1:])
    np.testing.assert_allclose(curve, (metrics.LEVELS + untied) / 2)
    assert metrics.paper_delta_ece(mixed, truth, deltas=[0.0]) == pytest.approx(
        metrics.ece(mixed, truth))


def test_ece_sums_over_levels_times_005():
    rng = np.random.default_rng(5)
    d, t = rng.random((30, 5, 5)), rng.random((5, 5))
    curve = metrics.coverage_curve(d, t)
    assert metrics.ece(d, t) == pytest.approx(np.sum(np.abs(curve - metrics.LEVELS)) * 0.05)


def test_widened_and_paper_ece_are_optimistic(narrow):
    draws, truth = narrow
    honest = metrics.ece(draws, truth)
    widened = metrics.ece(draws, truth, widen=0.01)
    assert widened < honest
    paper, delta = metrics.paper_delta_ece(draws, truth, return_delta=True)
    assert paper <= widened + 1e-12 and paper <= honest
    assert delta > 0


def test_paper_delta_ece_is_the_minimum_of_widened_ece():
    rng = np.random.default_rng(6)
    d = 0.5 + 0.02 * rng.standard_normal((100, 24, 24))
    t = 0.5 + 0.04 * rng.standard_normal((24, 24))
    deltas = [0.0, 0.005, 0.01, 0.02, 0.04]
    paper, delta = metrics.paper_delta_ece(d, t, deltas=deltas, return_delta=True)
    scores = [metrics.ece(d, t, widen=x) for x in deltas]
    assert paper == pytest.approx(min(scores))
    assert delta == deltas[int(np.argmin(scores))]
    assert metrics.paper_delta_ece(d, t, deltas=[0.0]) == pytest.approx(scores[0])


def test_coverage_map_known_case():
    m = np.array([[0.5, 0.5, 0.5]])
    s = np.array([[0.1, 0.0, 0.0]])
    truth = np.array([[0.7, 0.5, 0.6]])
    cmap = metrics.coverage_map(symmetric_draws(m, s), truth)
    np.testing.assert_allclose(cmap, [[2.0, 0.0, np.inf]])


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "func", [metrics.nll, metrics.ece, metrics.coverage_curve, metrics.coverage_map]
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
