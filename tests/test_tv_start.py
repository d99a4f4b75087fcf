"""Fits that start at the TV image (init tv), and the TV weight in TV's units."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bayes_inr.core.errors import InputError
from bayes_inr.data.sample import phantom_sample
from bayes_inr.evaluation.metrics import psnr
from bayes_inr.inference.config import FitConfig
from bayes_inr.inference.fit import fit
from bayes_inr.inference.method import get_method
from bayes_inr.inference.single import build_model
from bayes_inr.inference.tv_start import fit_to_image, tv_image, tv_start
from bayes_inr.posterior import image_draws

SMALL = {"inference": "mcd", "depth": 2, "width": 32, "omega0": 2.0,
         "head": "clipped_sigmoid", "tv_weight": 3e-4, "tv_units": "objective",
         "sigma": 0.01, "dropout": 0.02, "dropout_scope": "pixel", "threads": 1}


@pytest.mark.parametrize("units, factor", [("factor", 3e-4), ("objective", 3.0)])
def test_the_tv_factor_in_tv_units_is_w_over_sigma_squared(units, factor):
    config = FitConfig(**SMALL | {"tv_units": units})
    weight, norm = get_method("mcd").tv_factor(config, 0.01)
    assert weight == pytest.approx(factor) and norm == "anisotropic"


def test_tv_units_is_checked():
    with pytest.raises(InputError, match="tv_units"):
        FitConfig(**SMALL | {"tv_units": "lambda"})


def test_a_network_starts_at_the_tv_image():
    sample = phantom_sample(1, 12, 24)
    model = build_model(sample, FitConfig(**SMALL))
    target = tv_image(model, 300)
    # the weight is the model's factor back in TV's units: 3e-4
    assert model.tv_weight * model.sigma ** 2 == pytest.approx(3e-4)
    fitted = model.inr.render(tv_start(model, 300).params).detach().numpy()
    initial = model.inr.render(model.init_params(0)).detach().numpy()
    assert psnr(fitted, target) > 30  # the network renders TV's image closely ...
    assert psnr(initial, target) < 20  # ... which its initial weights do not


def test_a_network_on_some_pixels_renders_those_pixels():
    model = build_model(phantom_sample(1, 12, 24), FitConfig(**SMALL))
    params = model.init_params(3)
    index = torch.tensor([0, 7, 575, 7, 300])
    whole = model.inr.render(params).reshape(-1)[index]
    part = model.inr.at_pixels(index)
    torch.testing.assert_close(part.render(params), whole)
    torch.testing.assert_close(part.render_vjp(params)[0], whole)
    assert model.inr.render(params).shape == (24, 24)  # the whole network is unchanged


@pytest.mark.parametrize("batch, steps", [(96, 1000), (24 * 24, 300)])
def test_the_fit_to_the_tv_image_on_pixel_batches(batch, steps):
    """Batches of a sixth of the pixels render TV's image closely, given more steps; the
    initial weights do not (negative control)."""
    model = build_model(phantom_sample(1, 12, 24), FitConfig(**SMALL))
    target = tv_image(model, 300)
    weights = fit_to_image(model.inr, model.init_params(0), target, steps=steps, batch=batch)
    assert psnr(model.inr.render(weights).numpy(), target) > 30
    assert psnr(model.inr.render(model.init_params(0)).numpy(), target) < 20


def test_the_fit_to_an_image_checks_its_input():
    model = build_model(phantom_sample(1, 12, 24), FitConfig(**SMALL))
    with pytest.raises(InputError, match="batch"):
        fit_to_image(model.inr, model.init_params(0), np.zeros((24, 24)), batch=0)
    with pytest.raises(InputError, match="100 pixels"):
        fit_to_image(model.inr, model.init_params(0), np.zeros((10, 10)))


def test_an_svi_fit_from_init_tv_keeps_the_tv_image():
    """A few MCD steps at a small learning rate: from the TV start the posterior mean is
    TV's image; from the network's initial weights it is far from it (negative control)."""
    sample = phantom_sample(2, 12, 24)
    config = FitConfig(**SMALL | {"init": "tv", "steps": 5, "lr": 1e-5, "draws": 10})
    target = tv_image(build_model(sample, config), 2000)
    mean = image_draws(fit(sample, config, progress=False)).mean(0)
    cold = image_draws(fit(sample, config.replace(init="map"), progress=False)).mean(0)
    assert psnr(mean, target) > 25
    assert psnr(cold, target) < 20
    assert np.isfinite(mean).all()


def test_a_start_is_computed_once_per_data_network_and_seed(monkeypatch):
    """The same model and seed reuse the start (no second TV solve, no second fit) and get
    an equal copy; another seed or network is fitted anew on the same TV image, another
    sinogram is solved anew."""
    from bayes_inr.inference import tv_start as module

    monkeypatch.setattr(module, "_starts", type(module._starts)())
    monkeypatch.setattr(module, "_images", type(module._images)())
    fits = []
    real_fit = module.fit_to_image
    monkeypatch.setattr(module, "fit_to_image", lambda *a, **k: fits.append(1)
                        or real_fit(*a, **k))
    solves = []
    real = module.tv_image
    monkeypatch.setattr(module, "tv_image", lambda *a: solves.append(1) or real(*a))
    sample = phantom_sample(1, 12, 24)
    model = build_model(sample, FitConfig(**SMALL))
    first = tv_start(model, 100).params
    first["layer0.weight"].zero_()  # a caller's change does not reach the kept start
    again = tv_start(build_model(sample, FitConfig(**SMALL | {"dropout": 0.2})), 100).params
    assert len(solves) == 1 and len(fits) == 1
    torch.testing.assert_close(again, tv_start(model, 100).params)
    assert again["layer0.weight"].abs().sum() > 0
    tv_start(model, 100, seed=1)
    tv_start(build_model(sample, FitConfig(**SMALL | {"width": 16})), 100)
    assert len(solves) == 1 and len(fits) == 3
    tv_start(build_model(phantom_sample(2, 12, 24), FitConfig(**SMALL)), 100)
    assert len(solves) == 2 and len(fits) == 4


def _counted_fits(monkeypatch, failing: set[int]) -> list[int]:
    """Count the fits to the TV image (returns their seeds); the fits with the seeds in
    ``failing`` fail: they return the initial weights, which render far from the image."""
    from bayes_inr.inference import tv_start as module

    monkeypatch.setattr(module, "_starts", type(module._starts)())
    monkeypatch.setattr(module, "_images", type(module._images)())
    seeds = []
    real = module.fit_to_image

    def fit(inr, params, image, seed=0):
        seeds.append(seed)
        return params if seed in failing else real(inr, params, image, seed=seed)

    monkeypatch.setattr(module, "fit_to_image", fit)
    return seeds


def test_a_start_is_scored_by_its_misfit_over_the_tv_images():
    """The ratio is the start image's mean squared sinogram residual over the TV image's
    (computed here by hand): near 1 for a fitted network, far above for its initial
    weights."""
    sample = phantom_sample(1, 12, 24)
    model = build_model(sample, FitConfig(**SMALL))
    start = tv_start(model, 300)
    target = torch.as_tensor(tv_image(model, 300))

    def misfit(image):
        return float(((model.operator(image.float()) - model.sinogram) ** 2).mean())

    image = model.inr.render(start.params).detach()
    assert start.misfit_ratio == pytest.approx(misfit(image) / misfit(target), rel=1e-5)
    assert start.misfit_ratio < 2 and start.chosen == 0
    initial = model.inr.render(model.init_params(0)).detach()
    assert misfit(initial) / misfit(target) > 50


def test_the_best_of_several_fits_is_the_start_of_lowest_misfit(monkeypatch):
    """Three tries make three fits, from seed s and s + t * stride; a failed first fit is
    passed over for the next, and a good first fit is kept only if no later one beats it:
    the start equals the single-try start at the seed of the lowest ratio (the control: with
    one try the failed fit is the start)."""
    from bayes_inr.inference.tv_start import START_SEED_STRIDE

    sample = phantom_sample(1, 12, 24)
    model = build_model(sample, FitConfig(**SMALL))
    seeds = _counted_fits(monkeypatch, {5})
    alone = tv_start(model, 300, seed=5)
    assert seeds == [5] and alone.misfit_ratio > 50
    seeds = _counted_fits(monkeypatch, {5})
    best = tv_start(model, 300, seed=5, tries=3)
    assert seeds == [5 + t * START_SEED_STRIDE for t in range(3)]
    singles = [tv_start(model, 300, seed=seed) for seed in seeds]
    chosen = int(np.argmin([start.misfit_ratio for start in singles]))
    assert best.chosen == chosen > 0 and best.misfit_ratio < 2
    torch.testing.assert_close(best.params, singles[chosen].params)
    with pytest.raises(InputError, match="at least 1 try"):
        tv_start(model, 300, tries=0)


def test_a_fit_records_its_start(monkeypatch):
    """An MCD fit from init tv stores the start's ratio and which try it is in its config:
    one try keeps a failed fit, two pass it over."""
    from bayes_inr.posterior import config as run_config

    sample = phantom_sample(2, 12, 24)
    config = FitConfig(**SMALL | {"init": "tv", "steps": 3, "lr": 1e-5, "draws": 4})
    _counted_fits(monkeypatch, {0})
    poor = run_config(fit(sample, config, progress=False))
    assert poor["start_chosen"] == 0 and poor["start_misfit_ratio"] > 50
    _counted_fits(monkeypatch, {0})
    good = run_config(fit(sample, config.replace(start_tries=2), progress=False))
    assert good["start_chosen"] == 1
    assert good["start_misfit_ratio"] < poor["start_misfit_ratio"] / 5
    assert good["start_tries"] == 2


def test_a_chain_from_init_tv_records_its_start_and_keeps_it_on_resume(monkeypatch):
    """NUTS from init tv stores its start like an SVI fit (two tries pass over a failed
    first fit), and a resumed run keeps the start it did not redo."""
    from bayes_inr.posterior import config as run_config

    sample = phantom_sample(2, 12, 24)
    config = FitConfig(**SMALL | {"inference": "nuts", "init": "tv", "start_tries": 2,
                                  "warmup": 4, "draws": 2, "max_tree_depth": 3})
    seeds = _counted_fits(monkeypatch, {0})
    first = fit(sample, config, progress=False)
    stored = run_config(first)
    # a failed fit (the initial weights) scores above 50 (the test above)
    assert len(seeds) == 2 and stored["start_chosen"] == 1 and stored["start_misfit_ratio"] < 20
    seeds.clear()
    resumed = run_config(fit(sample, config, progress=False, resume=first))
    assert not seeds  # no fit to the TV image on resume
    assert {key: resumed[key] for key in ("start_chosen", "start_misfit_ratio")} == {
        key: stored[key] for key in ("start_chosen", "start_misfit_ratio")}
