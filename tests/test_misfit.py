"""Data misfit of posterior means and the ensemble's poor-member flag."""

import numpy as np
import pytest

from bayes_inr import posterior
from bayes_inr.evaluation import misfit
from bayes_inr.physics.geometry import Geometry
from bayes_inr.physics.radon import projection_matrix

SIZE, VIEWS = 16, 6


def ensemble(errors, seed=0):
    """Members whose draws scatter (sd 1e-4) around truth + errors[k] E, with one error
    image E for all and alternating signs, so that equal errors give equal misfits; the
    sinogram is the truth's exact projection."""
    rng = np.random.default_rng(seed)
    geometry = Geometry(SIZE, VIEWS)
    a = projection_matrix(geometry)
    truth = rng.uniform(0.2, 0.8, (SIZE, SIZE))
    sinogram = (a @ truth.ravel()).reshape(geometry.sino_shape)
    pattern = rng.standard_normal((SIZE, SIZE))
    members = [truth + (-1) ** k * e * pattern + 1e-4 * rng.standard_normal((4, SIZE, SIZE))
               for k, e in enumerate(errors)]
    idata = posterior.build(members, sinogram=sinogram, angles=geometry.angles,
                            method=f"DE-{len(errors)}", config={}, ground_truth=truth,
                            chain_labels=[f"member{k}-mcd" for k in range(len(errors))])
    return idata, a


def test_member_misfits_are_the_mean_squared_residuals_of_the_member_means():
    idata, a = ensemble([0.01, 0.02, 0.03])
    sinogram = idata.observed_data["sinogram"].values.ravel()
    expected = []
    for k in range(3):
        mean = posterior.image_draws(idata.isel(chain=[k])).mean(axis=0)
        residual = a @ mean.ravel() - sinogram
        expected.append(np.mean(residual ** 2))
    np.testing.assert_allclose(misfit.member_misfits(idata), expected, rtol=1e-5)
    np.testing.assert_allclose(posterior.chain_means(idata)[1],
                               posterior.image_draws(idata.isel(chain=[1])).mean(axis=0))


def test_a_member_far_from_the_data_is_flagged_and_only_it():
    idata, _ = ensemble([0.01, 0.01, 0.01, 0.012, 0.01])  # misfit 1.44 x the median
    misfits = misfit.member_misfits(idata)
    assert misfit.poor_members(misfits) == [3]
    lines = misfit.poor_member_warnings(idata)
    assert len(lines) == 1 and lines[0].startswith("member3-mcd:")
    # negative controls: members of one quality, and two members, are not flagged
    assert misfit.poor_members(misfit.member_misfits(ensemble([0.01] * 5, seed=1)[0])) == []
    below = ensemble([0.01, 0.01, 0.01, 0.0112, 0.01])[0]  # 1.26 x the median: under 1.3
    assert misfit.poor_members(misfit.member_misfits(below)) == []
    assert misfit.poor_members(misfits[[0, 3]]) == []
    assert misfit.misfit_ratios([1.0, 2.0, 4.0]) == pytest.approx([0.5, 1.0, 2.0])


def test_fit_warns_of_flagged_members(tmp_path, capsys, monkeypatch):
    from bayes_inr.fit import main as fit_main

    monkeypatch.setattr(misfit, "POOR_FACTOR", 0.0)  # every member above 0 x the median
    assert fit_main(["--inference", "ensemble", "--member-inference", "mcd", "--members", "3",
                     "--config", "none", "--size", "16", "--views", "6", "--steps", "5",
                     "--draws", "4", "--width", "8", "--depth", "1", "--threads", "1",
                     "--quiet", "--out", str(tmp_path / "de.nc")]) == 0
    err = capsys.readouterr().err
    assert err.count("likely a poor optimum") == 3
