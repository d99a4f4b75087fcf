"""HMC/NUTS: the flat potential, the exact linear-Gaussian posterior, resume, GOP and the CLI."""

import math
import warnings

import numpy as np
import pyro
import pytest
import torch
from pyro import poutine

from bayes_inr import posterior
from bayes_inr.core.errors import InputError
from bayes_inr.data.sample import phantom_sample
from bayes_inr.fit import main
from bayes_inr.inference import mcmc as hmc
from bayes_inr.inference.config import FitConfig
from bayes_inr.inference.fit import fit
from bayes_inr.inference.single import build_model
from bayes_inr.model.ctmodel import total_variation
from bayes_inr.model.priors import PRIORS, Laplace, Normal, PerLayer, as_prior
from bayes_inr.physics.radon import projection_matrix

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

TINY = {"depth": 1, "width": 8, "omega0": 1.0, "sigma": 0.1, "steps": 30, "lr": 1e-2,
        "warmup": 20, "draws": 6, "thin": 2, "num_steps": 3, "max_tree_depth": 4}
# The exact check: depth 0 (a linear read-out of fixed Fourier features), Normal prior,
# fixed sigma; 9 weights, 16 x 16 pixels, 4 views. The per-pixel std within 10% needs an
# ESS of the squared deviations of several hundred: NUTS at a target acceptance of 0.65
# (reaching about 0.8) gives about 0.5 per draw, HMC with 3 steps about 0.45.
EXACT = {"depth": 0, "width": 8, "n_features": 4, "omega0": 2.0, "sigma": 0.2,
         "prior": "normal:1.0", "init": "prior", "warmup": 200, "chains": 2}


@pytest.fixture(scope="module")
def sample16():
    return phantom_sample(0, 4, 16)


def trace_log_joint(model, potential, theta):
    """The Pyro model's log joint at ``theta`` (sigma constrained), from a trace."""
    params = potential.unflatten(theta)
    if "log_sigma" in params:
        params["sigma"] = params.pop("log_sigma").exp()
    trace = poutine.trace(poutine.condition(model, data=params)).get_trace()
    return trace.log_prob_sum()


@pytest.mark.parametrize("kind, extra", [
    ("inr", {"activation": "relu", "head": "sigmoid", "prior": "fan_in_normal:0.2"}),
    ("inr", {"activation": "tanh", "head": "clipped_sigmoid", "prior": "laplace:1",
             "depth": 2}),
    ("inr", {"activation": "sine", "sine_w0": 2.0, "head": "linear", "prior": "normal:1",
             "tv_weight": 0.0}),
    ("inr", {"activation": "silu", "head": "sigmoid", "prior": "normal:1"}),
    ("inr", {"head": "clipped_sigmoid", "prior": "normal:1", "depth": 0}),
    ("inr", {"activation": "softplus", "head": "linear", "prior": "normal:1",
             "infer_sigma": False}),
    ("gop", {"head": "sigmoid", "prior": "laplace:2"}),
    ("gop", {"head": "linear", "prior": "normal:1"}),
    ("gop", {"inference": "btv", "head": "sigmoid", "prior": "normal:10", "infer_sigma": False,
             "tv_weight": 1e-3, "sigma": 0.05}),  # isotropic TV, factor w / sigma^2
])
def test_potential_is_minus_the_pyro_log_joint(sample16, kind, extra):
    """Value and hand-written gradient against the Pyro model's trace and autograd."""
    config = FitConfig(inference="hmc", model=kind, depth=1, width=8, infer_sigma=True,
                       tv_weight=0.5).replace(**extra)
    model = build_model(sample16, config)
    potential = hmc.FlatPotential(model)
    gen = torch.Generator().manual_seed(1)
    theta = 0.3 * torch.randn(potential.dim, generator=gen)
    potential.value_and_grad(-theta)  # the workspace then holds another point's buffers
    value, grad = potential.value_and_grad(theta)
    # log sigma carries the Jacobian of sigma = exp(u): U = -log_prob_sum - u
    jacobian = (lambda t: t[-1]) if model.infer_sigma else (lambda t: 0.0)
    expected = -trace_log_joint(model, potential, theta) - jacobian(theta)
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    leaf = theta.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(-trace_log_joint(model, potential, leaf) - jacobian(leaf),
                                  leaf)
    torch.testing.assert_close(grad, auto, rtol=1e-4, atol=1e-3)


PRIOR_CONTRACT = [pytest.param(f"{name}:0.7", id=name) for name in sorted(PRIORS)] + [
    pytest.param(PerLayer({0: Normal(2.0)}, default=Laplace(0.5)), id="per_layer"),
    pytest.param(lambda name, shape: torch.distributions.StudentT(3.0, 0.0, 0.5).expand(shape),
                 id="python_callable")]


@pytest.mark.parametrize("prior", PRIOR_CONTRACT)
def test_every_prior_keeps_the_contract(sample16, prior):
    """Every registered prior (and the Python forms): the model's weight sites carry the
    prior's own densities at their fan-in, and the HMC potential is minus the log joint."""
    config = FitConfig(inference="hmc", depth=2, width=8, sigma=0.1)
    model = build_model(sample16, config, prior=as_prior(prior))
    potential = hmc.FlatPotential(model)
    theta = 0.3 * torch.randn(potential.dim, generator=torch.Generator().manual_seed(2))
    params = potential.unflatten(theta)
    trace = poutine.trace(poutine.condition(model, data=params)).get_trace()
    trace.compute_log_prob()
    by_prior = as_prior(prior)
    for name, (shape, fan_in) in model.inr.param_shapes().items():
        expected = by_prior(name, shape, fan_in).log_prob(params[name]).sum()
        torch.testing.assert_close(trace.nodes[name]["log_prob_sum"], expected)
    value, grad = potential.value_and_grad(theta)
    assert value.item() == pytest.approx(-trace.log_prob_sum().item(), rel=1e-5)
    leaf = theta.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(-trace_log_joint(model, potential, leaf), leaf)
    torch.testing.assert_close(grad, auto, rtol=1e-4, atol=1e-3)


def test_the_prior_contract_can_fail(sample16):
    """Negative control: a prior that reports another scale than it samples is caught."""
    class Liar(Normal):
        def __call__(self, name, shape, fan_in):
            return torch.distributions.Normal(0.0, 2.0 * self.scale).expand(shape)

    model = build_model(sample16, FitConfig(inference="hmc", depth=1, width=8, sigma=0.1),
                        prior=Liar(1.0))
    potential = hmc.FlatPotential(model)
    params = potential.unflatten(torch.full((potential.dim,), 0.5))
    trace = poutine.trace(poutine.condition(model, data=params)).get_trace()
    trace.compute_log_prob()
    name, (shape, fan_in) = next(iter(model.inr.param_shapes().items()))
    honest = Normal(1.0)(name, shape, fan_in).log_prob(params[name]).sum()
    assert not torch.allclose(trace.nodes[name]["log_prob_sum"], honest)


def test_the_potential_is_accumulated_in_float64(sample16):
    """With a tight sigma U is about 1.6e8, where float32's resolution is 16, far above the
    energy differences the sampler decides on: the value is a float64 sum (of the float32
    residuals and prior terms) and equals a double-precision sum of them to 1e-12."""
    config = FitConfig(inference="nuts", **TINY | {"sigma": 1e-4})
    potential = hmc.FlatPotential(build_model(sample16, config))
    theta = potential.initial(0)
    value, grad = potential.value_and_grad(theta)
    assert value.dtype == torch.float64 and grad.dtype == torch.float32
    model = potential.model
    image = model.inr.render(potential.unflatten(theta)).reshape(-1)
    residual = model.operator.matrices[0] @ image - model.sinogram.reshape(-1)
    loc, inv_scale, _ = potential._normal
    z = (theta - loc) * inv_scale
    terms = (0.5 * residual.double().square() / model.sigma**2, 0.5 * z.double().square())
    exact = sum(float(t.sum()) for t in terms) + potential._constant
    single = sum(float(t.float().sum()) for t in terms) + potential._constant
    assert value > 1e8 and abs(float(value) - exact) < 1e-12 * exact
    assert abs(single - exact) > 1.0  # float32 sums: the negative control
    theta.requires_grad_()
    potential.energy(theta).backward()  # float64 value, float32 gradient for Pyro
    torch.testing.assert_close(theta.grad, grad)


def test_potential_flatten_round_trip(sample16):
    model = build_model(sample16, FitConfig(depth=2, width=8, infer_sigma=True, sigma=0.05))
    potential = hmc.FlatPotential(model)
    params = model.inr.init_params(3)
    theta = potential.flatten(params)
    assert theta.shape == (potential.dim,) and theta[-1].item() == pytest.approx(math.log(0.05))
    back = potential.unflatten(theta)
    for name, value in params.items():
        torch.testing.assert_close(back[name], value)
    stacked = potential.unflatten(torch.stack([theta, 2 * theta]))
    assert stacked["layer1.weight"].shape == (2, 8, 8)
    with pytest.raises(InputError, match="flat vector"):
        potential.value_and_grad(theta[:-1])
    images = potential.images(torch.stack([theta] * 3), chunk=2)
    np.testing.assert_allclose(images[1], model.inr.render(params).numpy(), rtol=1e-5)


@pytest.mark.parametrize("kernel, extra", [
    ("nuts", {"draws": 700, "target_accept": 0.65}), ("hmc", {"draws": 1200, "num_steps": 3})])
def test_recovers_the_exact_posterior(sample16, kernel, extra):
    config = FitConfig(inference=kernel, **EXACT, **extra)
    model = build_model(sample16, config)
    potential = hmc.FlatPotential(model)
    mean, sd = hmc.exact_posterior(potential)
    settings = hmc.MCMCSettings.from_config(config, kernel=config.inference)
    run = hmc.MCMCRun(potential, settings, hmc.initial_points(potential, "prior", 2, 0))
    run.run(progress=False)
    idata = run.inference_data(sinogram=sample16.sinogram, angles=sample16.geometry.angles,
                               method=kernel, config={})
    image = idata.posterior_predictive["image"]
    mcse = az.mcse(image.to_dataset(), method="mean")["image"].values
    error = np.abs(image.mean(("chain", "draw")).values - mean)
    # the largest of 256 pixel errors (functions of 9 parameters): a 3-MCSE bound fails a
    # correct sampler a few percent of the time (it did, at 3.4, when the sampler's state
    # moved to float64 and drew other momenta), 4 almost never
    assert (error < 4 * mcse).all(), (error / mcse).max()
    ratio = image.std(("chain", "draw")).values / sd
    assert np.abs(ratio - 1).max() < 0.1, np.abs(ratio - 1).max()
    assert not idata.sample_stats["diverging"].values.any()


def whitened_norms(sample16, temper: float = 1.0, kernel: str = "nuts", **extra
                   ) -> tuple[float, float, int]:
    """``kernel`` on the exact posterior of :data:`EXACT`: the mean over draws of ||z||^2 for
    the whitened parameter draws z = L^T (theta - mean) (chi-squared with dim degrees of
    freedom under the exact posterior), its standard error from the ESS, and dim.
    ``temper`` multiplies the potential the sampler sees (1.2: a temperature of 1/1.2)."""
    config = FitConfig(inference=kernel, **EXACT | {"chains": 2, "draws": 700,
                                                    "target_accept": 0.65} | extra)
    potential = hmc.FlatPotential(build_model(sample16, config))
    mean, chol = hmc.exact_parameter_posterior(potential)
    exact_call = potential.value_and_grad

    def tempered(theta, with_grad=True):
        value, grad = exact_call(theta, with_grad=with_grad)
        return temper * value, None if grad is None else temper * grad

    potential.value_and_grad = tempered
    settings = hmc.MCMCSettings.from_config(config.replace(save_params=True), kernel=kernel)
    run = hmc.MCMCRun(potential, settings, hmc.initial_points(potential, "prior", 2, 0))
    run.run(progress=False)
    idata = run.inference_data(sinogram=sample16.sinogram, angles=sample16.geometry.angles,
                               method="nuts", config={})
    post = idata.posterior
    theta = np.stack([potential.flatten({name: torch.from_numpy(post[name].values[c, d])
                                         for name in potential.priors}).numpy()
                      for c in range(post.sizes["chain"]) for d in range(post.sizes["draw"])])
    norms = (((theta - mean) @ chol) ** 2).sum(1).reshape(post.sizes["chain"], -1)
    ess = float(az.ess(norms))
    return float(norms.mean()), math.sqrt(2 * len(mean) / ess), len(mean)


def test_whitened_draws_are_chi_squared():
    """Stronger than the per-pixel check: the draws' whitened squared norm has the
    chi-squared mean dim; a sampler at the temperature 1/1.2 misses it by many standard
    errors (the negative control), where the per-pixel sd check's 10 % bound lets it pass."""
    sample = phantom_sample(0, 4, 16)
    value, se, dim = whitened_norms(sample)
    assert abs(value - dim) < 4 * se, (value, se, dim)
    value, se, dim = whitened_norms(sample, temper=1.2)
    assert abs(value - dim) > 4 * se, (value, se, dim)  # about dim / 1.2


def test_gauss_newton_mass_matrix_samples_the_exact_posterior():
    """With the dense mass matrix of the Gauss-Newton precision (the exact precision here)
    NUTS passes the chi-squared check, and the tempered potential still fails it."""
    sample = phantom_sample(0, 4, 16)
    value, se, dim = whitened_norms(sample, mass_matrix="gauss_newton")
    assert abs(value - dim) < 4 * se, (value, se, dim)
    value, se, dim = whitened_norms(sample, temper=1.2, mass_matrix="gauss_newton")
    assert abs(value - dim) > 4 * se, (value, se, dim)


def test_whitened_potential_is_the_potential_under_a_linear_map(sample16):
    """u = L^T (theta - theta0): the value is U(theta(u)), the gradient L^{-1} grad U (what a
    unit mass matrix on u needs to be the mass matrix G = L L^T on theta), and the maps
    invert each other; a gradient through L^T instead (the wrong side) is not it."""
    config = FitConfig(inference="nuts", head="sigmoid", prior="fan_in_normal:0.2",
                       **TINY | {"sigma": 0.05})
    potential = hmc.FlatPotential(build_model(sample16, config))
    center = potential.initial(1).double()
    precision = hmc.gauss_newton_precision(potential, center)
    whitened = hmc.Whitened(potential, center, precision)
    u = torch.randn(potential.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    theta = whitened.to_theta(u)
    np.testing.assert_allclose(whitened.to_u(theta.double()), u, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(whitened.to_theta(torch.zeros_like(u)), center.float())
    z = u.clone().requires_grad_()
    value = whitened({hmc.SITE: z})
    (grad_u,) = torch.autograd.grad(value, z)
    want_value, grad_theta = potential.value_and_grad(theta)
    assert float(value) == float(want_value)
    lower = torch.linalg.cholesky(precision)
    want = torch.linalg.solve_triangular(lower, grad_theta.double()[:, None], upper=False)[:, 0]
    np.testing.assert_allclose(grad_u, want, rtol=1e-3, atol=1e-3 * float(want.abs().max()))
    wrong = lower.T @ grad_theta.double()
    assert not np.allclose(grad_u, wrong, rtol=1e-2, atol=1e-2 * float(wrong.abs().max()))
    np.testing.assert_allclose(whitened.inverse_mass_diagonal,
                               torch.linalg.inv(precision).diagonal(), rtol=1e-6)


def test_gauss_newton_precision_is_the_laplace_precision(sample16):
    """On a linear-Gaussian model it is the exact posterior precision; on a network with a
    sigmoid head it is J^T J / sigma^2 + diag(1 / prior variance) with J from autograd."""
    potential = hmc.FlatPotential(build_model(sample16, FitConfig(inference="nuts", **EXACT)))
    _, chol = hmc.exact_parameter_posterior(potential)
    theta = potential.initial(3)
    exact = chol @ chol.T
    np.testing.assert_allclose(hmc.gauss_newton_precision(potential, theta).numpy(), exact,
                               rtol=1e-5, atol=1e-6 * np.abs(exact).max())
    config = FitConfig(inference="nuts", head="sigmoid", prior="fan_in_normal:0.2",
                       **TINY | {"sigma": 0.05})
    model = build_model(sample16, config)
    potential = hmc.FlatPotential(model)
    theta = potential.initial(1)
    a = torch.from_numpy(projection_matrix(model.operator.geometry,
                                           model.operator.projector).toarray()).float()
    jac = torch.autograd.functional.jacobian(
        lambda t: a @ model.inr.render(potential.unflatten(t)).reshape(-1), theta).double()
    prior = torch.cat([d.variance.reshape(-1) for d in potential.priors.values()]).double()
    expected = (jac.T @ jac / 0.05 ** 2 + torch.diag(1 / prior)).numpy()
    tolerance = {"rtol": 1e-4, "atol": 1e-5 * float(np.abs(expected).max())}
    got = hmc.gauss_newton_precision(potential, theta).numpy()
    np.testing.assert_allclose(got, expected, **tolerance)
    for bad, match in ((config.replace(width=128), "at most"),
                       (FitConfig(inference="nuts", model="gop", head="sigmoid"), "not gop")):
        with pytest.raises(InputError, match=match):
            hmc.gauss_newton_precision(hmc.FlatPotential(build_model(sample16, bad)), theta)
    scaled = hmc.FlatPotential(build_model(sample16, config.replace(sigma=0.06)))
    assert not np.allclose(hmc.gauss_newton_precision(scaled, theta).numpy(), expected,
                           **tolerance)  # the check sees a 20 % change of sigma


def test_gauss_newton_precision_includes_a_smoothed_tv(sample16):
    """With a linear read-out (data and image differences linear in the weights) the
    Gauss-Newton precision of a Charbonnier-smoothed TV factor is the potential's exact
    Hessian; the same model with the exact TV (no curvature in G) misses it."""
    config = FitConfig(inference="nuts", **EXACT | {"tv_weight": 3.0, "tv_smoothing": 0.05})
    model = build_model(sample16, config)
    potential = hmc.FlatPotential(model)
    theta = potential.initial(2)
    a = torch.from_numpy(projection_matrix(model.operator.geometry,
                                           model.operator.projector).toarray()).float()

    def curved_terms(t):  # the potential less its terms linear in theta
        image = model.inr.render(potential.unflatten(t))
        return ((a @ image.reshape(-1)).square().sum() / (2 * 0.2 ** 2) + 0.5 * t.square().sum()
                + 3.0 * total_variation(image, "anisotropic", 0.05))

    expected = torch.autograd.functional.hessian(curved_terms, theta).double().numpy()
    tolerance = {"rtol": 1e-3, "atol": 1e-4 * float(np.abs(expected).max())}
    got = hmc.gauss_newton_precision(potential, theta).numpy()
    np.testing.assert_allclose(got, expected, **tolerance)
    exact_tv = hmc.FlatPotential(build_model(sample16, config.replace(tv_smoothing=0.0)))
    assert not np.allclose(hmc.gauss_newton_precision(exact_tv, theta).numpy(), expected,
                           **tolerance)


def test_hmc_without_its_metropolis_step_fails_the_chi_squared_check(monkeypatch):
    """The negative control of the accept/reject step: HMC (3 leapfrog steps, step size
    adapted to an acceptance of 0.65) passes the chi-squared check; the same sampler that
    accepts every proposal samples the integrator's biased distribution and fails it."""
    sample = phantom_sample(0, 4, 16)
    value, se, dim = whitened_norms(sample, kernel="hmc", num_steps=3)
    assert abs(value - dim) < 4 * se, (value, se, dim)
    sample_site = pyro.sample

    def always_accept(name, *args, **kwargs):  # the uniform draw of the MH test is 0
        if name.startswith("rand_t="):
            return torch.zeros(())
        return sample_site(name, *args, **kwargs)

    monkeypatch.setattr(pyro, "sample", always_accept)
    value, se, dim = whitened_norms(sample, kernel="hmc", num_steps=3)
    assert abs(value - dim) > 4 * se, (value, se, dim)


def test_exact_posterior_rejects_nonlinear_models(sample16):
    for config in (FitConfig(depth=1, width=8), FitConfig(depth=0, width=8, tv_weight=1.0)):
        with pytest.raises(InputError):
            hmc.exact_posterior(hmc.FlatPotential(build_model(sample16, config)))


def test_hmc_keeps_its_step_count_and_records_stats(sample16):
    config = FitConfig(inference="hmc", **TINY, infer_sigma=True, save_params=True)
    idata = fit(sample16, config, progress=False)
    stats = idata.sample_stats
    assert set(hmc.STATS) - {"tree_depth"} == set(stats.data_vars)
    assert stats["n_steps"].shape == (1, 6) and (stats["n_steps"] == 3).all()
    assert ((stats["acceptance_rate"] >= 0) & (stats["acceptance_rate"] <= 1)).all()
    assert (stats["step_size"] != config.step_size).all()  # adapted in warmup
    assert (stats["step_size"] == stats["step_size"][0, 0]).all()  # fixed after warmup
    post = idata.posterior
    assert post["layer0.weight"].shape == (1, 6, 8, 8) and post["sigma"].shape == (1, 6)
    assert post["pixel"].shape == (1, 6, 20)
    theta = torch.from_numpy(idata.constant_data["mcmc_theta"].values[0])
    last = hmc.FlatPotential(build_model(sample16, config)).unflatten(theta)
    np.testing.assert_allclose(post["layer1.weight"].values[0, -1], last["layer1.weight"])
    np.testing.assert_allclose(post["sigma"].values[0, -1], last["log_sigma"].exp(), rtol=1e-6)


@pytest.mark.parametrize("kernel, mass", [("nuts", "diag"), ("hmc", "diag"),
                                          ("nuts", "gauss_newton")])
def test_interrupted_run_resumes_to_the_same_draws(sample16, tmp_path, monkeypatch, kernel,
                                                   mass):
    config = FitConfig(inference=kernel, chains=2, checkpoint_every=2, save_params=True,
                       init="prior", mass_matrix=mass, **TINY)
    whole = fit(sample16, config, progress=False)
    path = tmp_path / "run.nc"
    kept = {"n": 0}
    keep, call = hmc.Chain.keep, hmc.FlatPotential.__call__

    def counting_keep(self, *args):
        kept["n"] += 1
        keep(self, *args)

    def interrupt(self, z):  # Ctrl-C inside the transition after chain 1's third draw
        if kept["n"] == 9:
            raise KeyboardInterrupt
        return call(self, z)

    monkeypatch.setattr(hmc.Chain, "keep", counting_keep)
    monkeypatch.setattr(hmc.FlatPotential, "__call__", interrupt)
    with pytest.raises(KeyboardInterrupt):
        fit(sample16, config, progress=False, out=path)
    monkeypatch.undo()
    partial = posterior.load(path, trim=False)
    done = partial.constant_data["mcmc_draws"].values
    np.testing.assert_array_equal(done, [6, 3])  # chain 1's checkpoint was at 2 draws
    assert partial.posterior_predictive["image"].shape[:2] == (2, 6)  # NaN-padded chain 1
    trimmed = posterior.load(path)  # the draws both chains have
    assert trimmed.posterior_predictive["image"].shape[:2] == (2, 3)
    assert az.summary(trimmed, var_names=["pixel"]).shape[0] == 20
    assert main(["--resume", str(path), "--quiet"]) == 0
    resumed = posterior.load(path)
    # images are rendered in batches of other sizes (equal up to float32 rounding, and so
    # are their replicated sinograms), and the acceptance rate is recovered from Pyro's
    # running mean (up to float64 rounding)
    close = {"image": 1e-5, "pixel": 1e-5, "sinogram": 1e-5, "acceptance_rate": 1e-12}
    for group in ("posterior_predictive", "posterior", "sample_stats"):
        for name, value in whole[group].data_vars.items():
            np.testing.assert_allclose(resumed[group][name].values, value.values,
                                       rtol=close.get(name, 0), atol=close.get(name, 0) / 10,
                                       err_msg=name)
    np.testing.assert_array_equal(resumed.constant_data["mcmc_draws"].values, [6, 6])


def test_chains_in_worker_processes_equal_chains_in_turn(sample16, tmp_path, monkeypatch):
    """Two workers of one thread give the draws of the same chains run in turn with one
    thread; a run stopped when its first chain ends keeps the other chain's checkpointed
    draws (taken back from the workers' store) and resumes to the same draws."""
    config = FitConfig(inference="nuts", chains=2, init="prior", threads=1, checkpoint_every=2,
                       **TINY | {"warmup": 60, "draws": 20})
    whole = fit(sample16, config, progress=False)
    parallel = fit(sample16, config.replace(workers=2), progress=False)
    for group in ("posterior_predictive", "sample_stats"):
        for name, value in whole[group].data_vars.items():
            np.testing.assert_array_equal(parallel[group][name].values, value.values, name)

    path = tmp_path / "run.nc"
    save = posterior.save
    saves = {"n": 0}

    def stop_at_first_chain(idata, out):  # Ctrl-C when the first chain comes back
        saves["n"] += 1
        if saves["n"] == 1:
            raise KeyboardInterrupt
        save(idata, out)

    monkeypatch.setattr(posterior, "save", stop_at_first_chain)
    with pytest.raises(KeyboardInterrupt):
        fit(sample16, config.replace(workers=2), progress=False, out=path)
    monkeypatch.undo()
    done = posterior.load(path, trim=False).constant_data["mcmc_draws"].values
    assert max(done) == 20, done  # the other chain: what its worker had saved, if anything
    assert not (tmp_path / ".run.nc.chains").exists()
    assert main(["--resume", str(path), "--quiet"]) == 0
    resumed = posterior.load(path)
    for name, value in whole.sample_stats.data_vars.items():
        np.testing.assert_allclose(resumed.sample_stats[name].values, value.values,
                                   rtol=1e-12 if name == "acceptance_rate" else 0, err_msg=name)
    np.testing.assert_allclose(resumed.posterior_predictive["image"].values,
                               whole.posterior_predictive["image"].values, rtol=1e-5, atol=1e-6)


def test_a_run_takes_back_the_chains_its_workers_saved(sample16, tmp_path):
    config = FitConfig(inference="nuts", chains=3, init="prior", **TINY)
    potential = hmc.FlatPotential(build_model(sample16, config))
    settings = hmc.MCMCSettings.from_config(config, kernel="nuts")
    inits = hmc.initial_points(potential, "prior", 3, 0)
    done = hmc.MCMCRun(potential, settings, inits)
    done.run(progress=False)
    run = hmc.MCMCRun(potential, settings, inits)
    run.chains[2] = done.chains[2]  # already further than the store's copy below
    store = tmp_path / ".run.nc.chains"
    store.mkdir()
    torch.save(done.chains[0], store / "chain0.pt")
    torch.save(hmc.Chain(inits[2]), store / "chain2.pt")
    run.take_back(store)
    assert [chain.draws for chain in run.chains] == [6, 0, 6] and not store.exists()
    assert run.chains[0].state.step_size == done.chains[0].state.step_size


def test_resume_refuses_other_configurations(sample16, tmp_path):
    config = FitConfig(inference="hmc", init="prior", **TINY)
    path = tmp_path / "run.nc"
    idata = fit(sample16, config, progress=False, out=path)
    with pytest.raises(InputError, match="width 8 there, 16 now"):
        fit(sample16, config.replace(width=16), progress=False, resume=idata)
    with pytest.raises(InputError, match="resumed"):
        fit(sample16, config.replace(inference="nuts"), progress=False, resume=idata)
    done = fit(sample16, config.replace(threads=1), progress=False, resume=idata)
    np.testing.assert_array_equal(done.posterior_predictive["image"].values,
                                  idata.posterior_predictive["image"].values)


def test_gop_samples_the_image_itself(sample16):
    config = FitConfig(inference="hmc", model="gop", head="sigmoid", tv_weight=1.0,
                       init="map", **TINY)
    idata = fit(sample16, config, progress=False)
    images = posterior.image_draws(idata)
    assert images.shape == (6, 16, 16) and (images > 0).all() and (images < 1).all()
    assert images.std(0).mean() > 0
    with pytest.raises(InputError, match="mcd"):
        FitConfig(inference="mcd", model="gop")


def test_cli_nuts_and_bad_input(tmp_path, capsys):
    out = tmp_path / "nuts.nc"
    args = ["--config", "none", "--size", "16", "--views", "4", "--inference", "nuts", "--quiet",
            "--out", str(out),
            "--chains", "2"] + [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "r_hat" in printed and "divergences" in printed and "torch thread" in printed
    idata = posterior.load(out)
    assert set(idata.sample_stats.data_vars) == set(hmc.STATS)
    for fn in (az.summary, az.rhat, az.ess):
        fn(idata)
    az.summary(idata, var_names=["image"], group="posterior_predictive")
    mcd = tmp_path / "mcd.nc"
    assert main(["--size", "16", "--views", "4", "--steps", "5", "--draws", "2", "--width", "8",
                 "--depth", "1", "--quiet", "--out", str(mcd)]) == 0
    cases = [["--thin", "0"], ["--model", "pixels"], ["--init", "somewhere"],
             ["--inference", "hmc", "--num-steps", "0"], ["--target-accept", "1.5"],
             ["--init", str(tmp_path / "missing.nc")], ["--init", str(mcd)]]
    for extra in cases:
        capsys.readouterr()
        assert main(args + extra + ["--overwrite"]) == 2, extra
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "\n" not in err, (extra, err)
    for resume in (["--resume", str(tmp_path / "none.nc")], ["--resume", str(mcd)],
                   ["--resume", str(out), "--width", "16"], ["--resume", str(out), "--size", "8"]):
        capsys.readouterr()
        assert main(resume + ["--quiet"]) == 2, resume
        assert capsys.readouterr().err.startswith("error:")


def test_init_from_a_saved_run(sample16, tmp_path):
    path = tmp_path / "first.nc"
    config = FitConfig(inference="hmc", init="prior", **TINY)
    first = fit(sample16, config, progress=False, out=path)
    again = fit(sample16, config.replace(init=str(path), chains=3, warmup=0), progress=False)
    start = again.constant_data["mcmc_init"].values
    np.testing.assert_array_equal(start[0], first.constant_data["mcmc_theta"].values[0])
    np.testing.assert_array_equal(start[2], start[0])


def test_diagnostics_flag_a_frozen_chain(sample16):
    config = FitConfig(inference="hmc", init="prior", **TINY | {"warmup": 0}, step_size=50.0)
    idata = fit(sample16, config, progress=False)
    assert (idata.sample_stats["acceptance_rate"] < 1e-3).all()
    assert "warning: chain 0 barely moves" in hmc.diagnostics(idata)
