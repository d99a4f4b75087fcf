"""Bayesian TV: the isotropic TV of the model against its closed form and the baseline's,
the posterior's mode against the TV solver, the method's checks, a small fit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from bayes_inr.core.errors import InputError
from bayes_inr.data.sample import phantom_sample
from bayes_inr.fit import main
from bayes_inr.inference import mcmc
from bayes_inr.inference.baselines.tv import _grad
from bayes_inr.inference.config import FitConfig
from bayes_inr.inference.fit import fit
from bayes_inr.inference.single import build_model
from bayes_inr.model.ctmodel import ISOTROPIC_EPS, total_variation
from bayes_inr.physics.radon import RadonOperator
from bayes_inr.posterior import image_draws, run_attrs

BTV = {"inference": "btv", "model": "gop", "head": "sigmoid", "prior": "normal:10",
       "tv_weight": 3e-3, "sigma": 0.01, "init": "tv", "steps": 300}


def test_isotropic_tv_of_a_ramp_is_its_closed_form():
    """x = a i + b j on N x N: (N-1)^2 interior pixels of gradient length sqrt(a^2 + b^2),
    and N-1 pixels each on the last column (|a|) and the last row (|b|), Neumann boundary."""
    n, a, b = 9, 0.03, -0.04
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    ramp = a * i.double() + b * j.double()
    expected = (n - 1) ** 2 * np.hypot(a, b) + (n - 1) * (abs(a) + abs(b))
    eps_total = n * n * ISOTROPIC_EPS  # the smoothing moves each pixel's term by < eps
    assert total_variation(ramp, "isotropic").item() == pytest.approx(expected, abs=eps_total)
    assert total_variation(ramp).item() == pytest.approx(2 * n * (n - 1) * 0.035, rel=1e-9)


def test_smoothed_tv_of_a_ramp_is_its_closed_form():
    """With smoothing eps every |d| (anisotropic) or gradient length (isotropic) t becomes
    sqrt(t^2 + eps^2) - eps, exactly; the exact anisotropic TV is the limit eps -> 0."""
    n, a, b, eps = 9, 0.03, -0.04, 0.02
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    ramp = a * i.double() + b * j.double()

    def smooth(t):
        return np.sqrt(t ** 2 + eps ** 2) - eps

    anisotropic = n * (n - 1) * (smooth(a) + smooth(b))
    isotropic = (n - 1) ** 2 * smooth(np.hypot(a, b)) + (n - 1) * (smooth(a) + smooth(b))
    assert total_variation(ramp, "anisotropic", eps).item() == pytest.approx(anisotropic,
                                                                             rel=1e-12)
    assert total_variation(ramp, "isotropic", eps).item() == pytest.approx(isotropic, rel=1e-12)
    assert total_variation(ramp, "anisotropic", 1e-9).item() == pytest.approx(
        total_variation(ramp).item(), abs=2 * n * (n - 1) * 1e-9)
    assert anisotropic < total_variation(ramp).item() - 1.0  # the smoothing is not a no-op


def test_isotropic_tv_is_the_baselines():
    image = torch.rand(2, 12, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for k in range(2):
        g = _grad(image[k], torch.zeros(2, 12, 12, dtype=torch.float64))
        expected = g.square().sum(0).sqrt().sum()
        torch.testing.assert_close(total_variation(image, "isotropic")[k], expected,
                                   rtol=0, atol=144 * ISOTROPIC_EPS)
    with pytest.raises(InputError, match="tv norm"):
        total_variation(image, "huber")


def lifted_sample():
    """A 16 x 16, 8-view phantom lifted into [0.2, 0.8], so that the box is not active at
    the TV solution and the linear link reaches the same mode."""
    sample = phantom_sample(0, 8, 16)
    lifted = 0.2 + 0.6 * torch.as_tensor(sample.ground_truth, dtype=torch.float32)
    return dataclasses.replace(sample, sinogram=RadonOperator(sample.geometry)(lifted).numpy(),
                               ground_truth=lifted.numpy())


@pytest.mark.parametrize(("norm", "moves"), [("isotropic", False), ("anisotropic", True)])
def test_the_posterior_mode_is_the_tv_solution(norm, moves):
    """L-BFGS on the BTV potential from the TV start (init tv) stays there; with the
    anisotropic TV, the negative control, it finds a lower point 0.07 away."""
    torch.set_num_threads(1)
    config = FitConfig(**BTV | {"head": "linear", "prior": "normal:100", "steps": 3000})
    model = build_model(lifted_sample(), config)
    assert model.tv_weight == pytest.approx(3e-3 / 0.01**2) and model.tv_norm == "isotropic"
    model.tv_norm = norm
    potential = mcmc.FlatPotential(model)
    start = mcmc.initial_points(potential, "tv", 1, 0, steps=3000)[0]
    x = start.clone().requires_grad_()
    optimizer = torch.optim.LBFGS([x], max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        value, x.grad = potential.value_and_grad(x.detach())
        return value

    optimizer.step(closure)
    before = potential.value_and_grad(start)[0].item()
    after = potential.value_and_grad(x.detach())[0].item()
    moved = (x.detach() - start).abs().max().item()
    if moves:
        assert (before - after) / before > 5e-3 and moved > 0.02
    else:
        assert (before - after) / before < 1e-5 and moved < 1e-4


def test_btv_checks_its_settings():
    with pytest.raises(InputError, match="btv samples the pixel grid"):
        FitConfig(inference="btv")
    with pytest.raises(InputError, match="btv samples the pixel grid"):
        FitConfig(**BTV | {"infer_sigma": True})
    with pytest.raises(InputError, match="init tv starts at the TV solution"):
        FitConfig(inference="nuts", init="tv")
    FitConfig(**BTV | {"inference": "nuts"})  # any pixel-grid TV model may start at TV


def test_a_small_btv_fit_stays_near_the_tv_image():
    sample = phantom_sample(1, 10, 16)
    config = FitConfig(**BTV | {"warmup": 30, "draws": 20, "chains": 2, "threads": 1,
                                "max_tree_depth": 4})
    idata = fit(sample, config, progress=False)
    draws = image_draws(idata)
    assert draws.shape == (40, 16, 16) and draws.std(0).mean() > 1e-3
    stored = run_attrs(idata)
    assert stored["method"] == "btv"
    start = mcmc.initial_points(mcmc.FlatPotential(build_model(sample, config)), "tv", 1, 0,
                                steps=300)[0]
    tv_image = torch.sigmoid(start).reshape(16, 16).numpy()
    # sigma 0.01 on 10 views: the mean stays within a few hundredths of the mode
    assert np.abs(draws.mean(0) - tv_image).mean() < 0.05


def test_the_cli_runs_btv_from_its_shipped_configuration(tmp_path, capsys):
    out = tmp_path / "btv.nc"
    assert main(["--inference", "btv", "--size", "16", "--views", "12", "--warmup", "5",
                 "--draws", "3", "--steps", "50", "--max-tree-depth", "3", "--quiet",
                 "--threads", "1", "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith("config: btv_20 (shipped")
    assert main(["--inference", "btv", "--config", "none", "--size", "16", "--views", "12",
                 "--out", str(tmp_path / "bad.nc")]) == 2
    assert "btv samples the pixel grid" in capsys.readouterr().err


@pytest.mark.parametrize(("prior", "uniform"), [("logistic:1", True), ("normal:10", False)])
def test_a_logistic_prior_on_the_logits_makes_the_image_uniform(prior, uniform):
    """The pixel grid's prior pushed through the sigmoid link: Kolmogorov-Smirnov against
    Uniform(0, 1); the wide Normal on the logits, the negative control, piles the image up
    at 0 and 1."""
    from scipy import stats

    from bayes_inr.model.priors import as_prior, site_distribution

    torch.manual_seed(0)
    logits = site_distribution(as_prior(prior), "pixels", (64, 64), 1).sample()
    p_value = stats.kstest(torch.sigmoid(logits).flatten().numpy(), "uniform").pvalue
    assert (p_value > 0.01) == uniform
