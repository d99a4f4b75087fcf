"""Distances of an approximate posterior to a reference one, against closed forms."""

import numpy as np
import pytest
from scipy import stats

from bayes_inr.core.errors import InputError
from bayes_inr.evaluation.reference import compare, reference_coverage, std_ratio, wasserstein


@pytest.fixture(scope="module")
def normal_draws():
    """Gaussian draws of 4 x 4 images: the reference N(0, 1) per pixel, 20,000 draws."""
    rng = np.random.default_rng(0)
    return rng, rng.standard_normal((20000, 4, 4))


def test_wasserstein_of_gaussians_has_the_closed_form(normal_draws):
    rng, ref = normal_draws
    shifted = 0.5 + rng.standard_normal((20000, 4, 4))
    wider = 2.0 * rng.standard_normal((20000, 4, 4))
    # W1(N(0, 1), N(m, 1)) = |m|; W1(N(0, 1), N(0, s^2)) = |s - 1| E|Z| = |s - 1| sqrt(2 / pi)
    np.testing.assert_allclose(wasserstein(shifted, ref), 0.5, atol=0.03)
    np.testing.assert_allclose(wasserstein(wider, ref), np.sqrt(2 / np.pi), atol=0.04)
    np.testing.assert_allclose(wasserstein(ref[:10000], ref[10000:]), 0.0, atol=0.06)
    # and against scipy's exact W1 of the two empirical distributions, pixel by pixel
    exact = [stats.wasserstein_distance(shifted[:, 0, k], ref[:, 0, k]) for k in range(4)]
    np.testing.assert_allclose(wasserstein(shifted, ref).reshape(4, 4)[0], exact, atol=2e-3)


def test_std_ratio_and_reference_coverage_of_gaussians(normal_draws):
    rng, ref = normal_draws
    narrow = 0.5 * rng.standard_normal((20000, 4, 4))
    np.testing.assert_allclose(std_ratio(narrow, ref), 0.5, rtol=0.03)
    np.testing.assert_allclose(reference_coverage(ref[:10000], ref[10000:]), 0.9, atol=0.015)
    # N(0, 0.25)'s 90 % interval holds P(|Z| <= 0.5 * 1.645) of the reference's draws
    expected = 2 * stats.norm.cdf(0.5 * stats.norm.ppf(0.95)) - 1
    np.testing.assert_allclose(reference_coverage(narrow, ref), expected, atol=0.015)


def test_an_equally_weighted_mixture_counts_members_not_draws(normal_draws):
    rng, ref = normal_draws
    # a one-draw member at 0 beside a 999-draw member from N(0, 1): weighted 1/2 each, the
    # mixture's std is sqrt(1/2) of the reference's; by draw count it would be ~1
    draws = np.concatenate([np.zeros((1, 4, 4)), rng.standard_normal((999, 4, 4))])
    weights = np.concatenate([[0.5], np.full(999, 0.5 / 999)])
    np.testing.assert_allclose(std_ratio(draws, ref, weights), np.sqrt(0.5), rtol=0.1)
    assert std_ratio(draws, ref).mean() > 0.9


def test_compare_summarises_over_the_mask_and_refuses_mismatches(normal_draws):
    rng, ref = normal_draws
    truth = np.zeros((4, 4))
    mask = np.zeros((4, 4), bool)
    mask[:2] = True
    draws = ref[:5000].copy()
    draws[:, 2:] *= 3.0  # wrong only outside the mask
    inside = compare(draws, ref[5000:], truth, mask=mask)
    everywhere = compare(draws, ref[5000:], truth)
    assert abs(inside["std_ratio_median"] - 1) < 0.05 and abs(inside["reference_coverage"]
                                                                - 0.9) < 0.02
    assert everywhere["std_ratio_q3"] > 2.5 and everywhere["w1_mean"] > inside["w1_mean"]
    with pytest.raises(InputError, match="one shape"):
        compare(draws[:, :3], ref, truth)
    with pytest.raises(InputError, match="weights"):
        compare(draws, ref, truth, weights=np.ones(len(draws)))
    with pytest.raises(InputError, match="one shape"):
        wasserstein(draws[:, :3], ref)
    with pytest.raises(InputError, match="non-finite"):
        std_ratio(np.full_like(draws, np.nan), ref)
