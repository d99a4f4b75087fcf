import math

import pyro.distributions as dist
import pytest
import torch

from bayes_inr import Geometry, InputError
from bayes_inr.model.inr import ACTIVATIONS, INR, Architecture
from bayes_inr.model.priors import FanInNormal, Normal, PerLayer, as_prior, site_distribution


def make_inr(**kwargs):
    coords = torch.as_tensor(Geometry(12, 3).pixel_centers(), dtype=torch.float32)
    return INR(Architecture(**{"depth": 2, "width": 16, **kwargs}), coords, seed=1)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_batched_render_equals_draw_by_draw(activation):
    inr = make_inr(activation=activation, head="sigmoid")
    draws = [inr.init_params(seed) for seed in range(3)]
    stacked = {k: torch.stack([d[k] for d in draws]) for k in draws[0]}
    images = inr.render(stacked)
    assert images.shape == (3, 12, 12)
    for i, params in enumerate(draws):
        torch.testing.assert_close(images[i], inr.render(params))
    assert 0 <= images.min() and images.max() <= 1


def reference_render(inr, params):
    """The network as plain autograd operations, masks applied to each layer's input."""
    h = inr.embedding
    for i in range(inr.arch.depth + 1):
        if f"layer{i}.mask" in params:
            h = h * params[f"layer{i}.mask"]
        weight, bias = params[f"layer{i}.weight"], params[f"layer{i}.bias"]
        h = h @ weight.transpose(-1, -2) + bias[..., None, :]
        if i < inr.arch.depth:
            h = inr._activate(h)
    return h.squeeze(-1).reshape(*h.shape[:-2], *inr.shape)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("draws, mask_draws", [((), ()), ((3,), (3,)), ((), (3,))])
def test_masked_render_and_its_gradient_match_autograd(activation, draws, mask_draws):
    inr = make_inr(activation=activation)
    gen = torch.Generator().manual_seed(0)
    params = {k: v.expand(*draws, *v.shape).clone().requires_grad_(True)
              for k, v in inr.init_params(0).items()}
    masks = {f"layer{i}.mask": (torch.rand(*mask_draws, 144, 16, generator=gen) > 0.3).float()
             for i in (1, 2)}
    weights = torch.randn(*mask_draws, 12, 12, generator=gen)
    got = inr.render(params | masks)
    want = reference_render(inr, params | masks)
    torch.testing.assert_close(got, want)
    grads = torch.autograd.grad((got * weights).sum(), list(params.values()))
    wants = torch.autograd.grad((want * weights).sum(), list(params.values()))
    for g, w in zip(grads, wants, strict=True):
        torch.testing.assert_close(g, w)


def test_clipped_sigmoid_head_reaches_zero_and_one():
    inr = make_inr(head="clipped_sigmoid")
    params = inr.init_params(0)
    logits = make_inr(head="linear").render(params)
    margin = 0.01
    expected = ((1 + 2 * margin) * torch.sigmoid(logits) - margin).clamp(0, 1)
    torch.testing.assert_close(inr.render(params), expected)
    params["layer2.bias"] = torch.tensor([-20.0])  # far below: exactly 0, like air
    assert (inr.render(params) == 0).all()
    params["layer2.bias"] = torch.tensor([20.0])
    assert (inr.render(params) == 1).all()


def test_fourier_matrix_is_fixed_by_seed_and_scaled_by_omega0():
    a, b = make_inr(omega0=3.0), make_inr(omega0=3.0)
    torch.testing.assert_close(a.embedding, b.embedding)
    big = make_inr(omega0=300.0, n_features=2000)
    assert big.fourier.std().item() == pytest.approx(300.0, rel=0.05)
    assert a.embedding.shape == (144, 16)  # 2 * width // 2 features


def test_layer_shapes_and_init():
    inr = make_inr(depth=3, width=8, n_features=5)
    shapes = inr.param_shapes()
    assert shapes["layer0.weight"] == ((8, 10), 10)
    assert shapes["layer3.weight"] == ((1, 8), 8)
    assert len(shapes) == 8
    sine = make_inr(activation="sine", width=64)
    w = sine.init_params(0)["layer1.weight"]
    assert w.abs().max() <= math.sqrt(6 / 64) + 1e-6


def test_priors():
    normal = site_distribution(as_prior("normal:2.5"), "layer0.weight", (4, 3), 3)
    assert normal.event_shape == (4, 3) and normal.batch_shape == ()
    assert normal.base_dist.scale.unique().item() == 2.5
    fan = site_distribution(FanInNormal(0.2), "layer1.bias", (4,), 50)
    assert fan.base_dist.scale.unique().item() == pytest.approx(1 / math.sqrt(0.2 * 50))
    mixed = PerLayer({0: Normal(10.0)}, default="laplace:0.5")
    assert mixed("layer0.weight", (2, 2), 2).scale.unique().item() == 10.0
    assert isinstance(mixed("layer2.bias", (2,), 2), dist.Laplace)
    custom = as_prior(lambda name, shape: dist.StudentT(3.0, 0.0, 0.5).expand(shape))
    d = site_distribution(custom, "layer0.weight", (2, 5), 5)
    assert d.event_shape == (2, 5) and isinstance(d.base_dist, dist.StudentT)
    assert custom.describe()["kind"] == "Custom"


def test_bad_architecture_and_prior():
    with pytest.raises(InputError, match="activation"):
        Architecture(activation="gelu")
    with pytest.raises(InputError, match="depth"):
        Architecture(depth=-1)
    with pytest.raises(InputError, match="prior"):
        as_prior("cauchy:1")
    with pytest.raises(InputError, match="number"):
        as_prior("normal:wide")


@pytest.mark.parametrize("head", ["linear", "sigmoid", "clipped_sigmoid"])
def test_init_starts_output_at_image_mean(head):
    # a zero pre-activation renders the requested mean through every head
    inr = make_inr(head=head)
    params = inr.init_params(0, image_mean=0.15)
    params = {k: torch.zeros_like(v) if k != "layer2.bias" else v for k, v in params.items()}
    torch.testing.assert_close(inr.render(params), torch.full((12, 12), 0.15))


def test_model_init_renders_the_sinograms_mean():
    # a dark phantom (mean ~0.1): a sigmoid started at 0.5 overshoots every ray, and
    # Adam's first steps at 128 px can saturate it at 0 for good; the model starts the
    # output at the mean the sinogram implies
    from bayes_inr.data.sample import phantom_sample
    from bayes_inr.inference.config import FitConfig
    from bayes_inr.inference.single import build_model

    sample = phantom_sample(2, size=32, views=12)
    model = build_model(sample, FitConfig(head="sigmoid", width=32, depth=2))
    image = model.inr.render(model.init_params(0))
    assert float(image.mean()) == pytest.approx(sample.ground_truth.mean(), abs=0.03)
    assert float(model.inr.render(model.inr.init_params(0)).mean()) > 0.3
