"""analysis/data_floor.py: the floor the sinogram implies, against closed forms."""

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

from bayes_inr import posterior
from bayes_inr.data.sample import phantom_sample
from bayes_inr.physics.radon import projection_matrix

sys.path.insert(0, str(Path(__file__).parents[1] / "analysis"))
data_floor = pytest.importorskip("data_floor")

SIGMA = 0.005


def terms(draws, error, seed=0):
    """data_terms of ``draws`` (S, N, N) whose mean misses the truth by ``error``, for the
    sinogram A truth + noise SIGMA."""
    rng = np.random.default_rng(seed)
    sample = phantom_sample(0, views=20, size=32)
    mean = draws.mean(axis=0)
    matrix = projection_matrix(sample.geometry)
    y = matrix @ (mean + error).ravel() + SIGMA * rng.standard_normal(matrix.shape[0])
    sample = dataclasses.replace(sample, sinogram=y.reshape(sample.sinogram.shape),
                                 ground_truth=mean + error, noise_sigma=SIGMA)
    idata = posterior.build(draws[None], sinogram=sample.sinogram,
                            angles=sample.geometry.angles, ground_truth=mean + error,
                            method="mcd", config={"inference": "mcd"})
    return data_floor.data_terms(idata, sample)


def test_an_error_the_draws_miss_is_read_back_from_the_sinogram():
    """One draw (no spread), truth = draw + tau e with e white: the data-implied floor is tau,
    and without the error it is near 0 (the control); the misfit of a noise-only sinogram is
    the noise energy."""
    rng = np.random.default_rng(1)
    image = rng.uniform(0.2, 0.8, (1, 32, 32))
    tau = 0.05
    hit = terms(image, tau * rng.standard_normal((32, 32)))
    assert hit["tau_data"] == pytest.approx(tau, rel=0.2)
    assert hit["rms_object"] == pytest.approx(tau, rel=0.1)
    none = terms(image, np.zeros((32, 32)))
    assert abs(none["tau_data"]) < tau / 3
    assert none["misfit"] == pytest.approx(1.0, abs=0.15) and none["spread"] == 0.0


def test_draws_that_spread_more_than_the_misfit_imply_a_negative_floor():
    """Draws with white spread s around the truth and a noise-only sinogram: the spread term
    predicts s^2 tr(A^T A) of misfit that is not there, so the data-implied floor is -s."""
    rng = np.random.default_rng(2)
    s = 0.04
    draws = rng.uniform(0.2, 0.8, (32, 32)) + s * rng.standard_normal((400, 32, 32))
    out = terms(draws, np.zeros((32, 32)))
    assert out["tau_data"] == pytest.approx(-s, rel=0.2)
    assert out["misfit"] == pytest.approx(1.0, abs=0.15) and out["spread"] > 0
