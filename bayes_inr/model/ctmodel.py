"""The Pyro model shared by every inference method.

    w     ~ prior                        (one sample site per weight and bias)
    sigma  = fixed, or ~ LogNormal(log sigma0, 1)
    f      = INR_w on the pixel grid     (deterministic site ``image``)
    p     ~ Normal(A f, sigma)           (observed sinogram, one event)
    + optional anisotropic total variation, factor -lambda * TV(f)

With per-pixel Monte Carlo dropout (``dropout_scope="pixel"``) the network also carries
Bernoulli(1 - p) unit masks ``layerI.mask`` for every pixel, sample sites of their own
whose guide is the same distribution: every masked layer takes inputs z * h and weights
W / (1 - p). Per-image dropout needs no extra site: its masks are part of the weight draw
(the dropout guide).

The latent sites (weights and sigma) sit under ``poutine.scale(latent_scale)``:
Bayes-by-backprop sets it to its KL factor xi, so that prior and guide terms are
scaled together and the likelihood never is.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions import TorchDistribution
from torch.distributions import constraints

from ..core.errors import InputError, check_choice
from ..physics.radon import RadonOperator
from .inr import INR
from .priors import Prior, as_prior, site_distribution

DROPOUT_SCOPES = ("image", "pixel")


MASK_LEVELS = 256  # masks compare 8-bit random integers with a threshold (UnitMasks)


def check_dropout(p: float) -> None:
    """Refuse (:class:`InputError`) a dropout probability the masks cannot draw: outside
    [0, 1), or nonzero and within 1/512 of 0 or of 1, where :class:`UnitMasks` would
    silently draw at 1/256 (or 255/256) instead. 0 turns dropout off."""
    if not 0 <= p < 1:
        raise InputError(f"dropout must be in [0, 1), got {p}")
    edge = 1 / (2 * MASK_LEVELS)
    if 0 < p < edge or p > 1 - edge:
        raise InputError(
            f"dropout {p:g}: masks are drawn at multiples of 1/{MASK_LEVELS}, so the "
            f"rates nearest 0 and 1 are 1/{MASK_LEVELS} = {1 / MASK_LEVELS:.4f} and "
            f"{MASK_LEVELS - 1}/{MASK_LEVELS}; give a rate in [{edge:.5f}, {1 - edge:.5f}] "
            "or 0 for no dropout")


class UnitMasks(TorchDistribution):
    """Independent Bernoulli(keep) units of one shape, as a single event.

    Per-pixel masks need millions of draws per step, so sampling compares 8-bit random integers
    (eight per 64-bit draw of the generator) with a threshold: ``keep`` is rounded to a multiple
    of 1/256 (at most 1/512 off for the rates :func:`check_dropout` accepts), and that rounded
    value is the distribution's ``keep`` (p = 0.1 becomes 0.1016; p = 0.005 and p = 0.002 both
    become 1/256 = 0.0039). Draws are 0/1 in ``dtype`` (multiplying activations by a boolean
    tensor takes torch's casting path, about 4x slower forward and backward). The log density
    depends on the mask only through the number of kept units,
    ``k log(keep) + (n - k) log(1 - keep)``: one sum instead of an elementwise Bernoulli
    density over (pixels x width) units.
    """

    arg_constraints = {}
    support = constraints.independent(constraints.boolean, 2)

    def __init__(self, keep: float, shape: tuple[int, int], dtype=torch.float32, device=None):
        self.threshold = min(max(round(keep * MASK_LEVELS), 1), MASK_LEVELS - 1) - 128
        self.keep = (self.threshold + 128) / MASK_LEVELS
        self.dtype, self.device = dtype, device
        super().__init__(torch.Size(), torch.Size(shape), validate_args=False)

    def sample(self, sample_shape=()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.event_shape
        words = -(-shape.numel() // 8)
        bits = torch.randint(-2**63, 2**63 - 1, (words,), dtype=torch.int64, device=self.device)
        octets = bits.view(torch.int8)[: shape.numel()].view(shape)
        out = torch.empty(shape, dtype=self.dtype, device=self.device)
        return torch.lt(octets, self.threshold, out=out)  # compare and cast in one pass

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        kept = value.sum(dim=(-2, -1))
        total = self.event_shape.numel()
        return kept * math.log(self.keep) + (total - kept) * math.log1p(-self.keep)


def apply_dropout(params: dict[str, torch.Tensor], name: str, mask: torch.Tensor, keep: float,
                  scope: str) -> None:
    """Inverted dropout of the input units of mask ``name`` ("layerI.mask"), in ``params``.

    The 1 / keep rescaling goes into the layer's weight, never over the (pixels x width)
    mask. ``image`` scope folds the mask in as well (weight M diag(z) / keep, one function
    per draw); ``pixel`` scope stores the mask under ``name`` for
    :meth:`~bayes_inr.model.inr.INR.render`.
    """
    weight = name.replace(".mask", ".weight")
    if scope == "pixel":
        params[name] = mask
        params[weight] = params[weight] / keep
    else:
        params[weight] = params[weight] * mask / keep


TV_NORMS = ("anisotropic", "isotropic")
ISOTROPIC_EPS = 1e-6
"""The isotropic TV's default smoothing: ``sqrt(|grad|^2 + eps^2) - eps`` per pixel, within
``eps`` of ``|grad|`` (far below any pixel difference that matters, images in [0, 1]), with a
finite gradient (at most 1 per difference) where the image is flat."""


def total_variation(image: torch.Tensor, norm: str = "anisotropic", smoothing: float = 0.0
                    ) -> torch.Tensor:
    """Total variation of images (..., N, N), per leading draw.

    ``anisotropic``: the sum of |vertical| and |horizontal| forward differences; with
    ``smoothing`` ``eps > 0`` each ``|d|`` becomes ``sqrt(d^2 + eps^2) - eps`` (Charbonnier:
    quadratic, with curvature ``1 / eps``, for ``|d| << eps``; within ``eps`` of ``|d|``).
    ``isotropic``: the sum over pixels of the length of the forward-difference gradient with
    Neumann boundary (the difference across the last row or column is 0), smoothed the same
    way by ``smoothing`` or, at 0, by :data:`ISOTROPIC_EPS`: the TV of the classical
    baseline (:mod:`bayes_inr.inference.baselines.tv`).
    """
    check_choice("tv norm", norm, TV_NORMS)
    dy = image[..., 1:, :] - image[..., :-1, :]
    dx = image[..., :, 1:] - image[..., :, :-1]
    if norm == "anisotropic":
        if not smoothing:
            return dx.abs().sum(dim=(-2, -1)) + dy.abs().sum(dim=(-2, -1))
        return _charbonnier(dx.square(), smoothing) + _charbonnier(dy.square(), smoothing)
    squared = torch.nn.functional.pad(dy.square(), (0, 0, 0, 1)) \
        + torch.nn.functional.pad(dx.square(), (0, 1))
    return _charbonnier(squared, smoothing or ISOTROPIC_EPS)


def _charbonnier(squared: torch.Tensor, eps: float) -> torch.Tensor:
    """``sum(sqrt(squared + eps^2) - eps)`` over the last two dimensions."""
    return ((squared + eps ** 2).sqrt() - eps).sum(dim=(-2, -1))


class CTModel:
    """Bayesian INR for a measured sinogram.

    Parameters
    ----------
    inr : INR or PixelGrid
        The image representation on the reconstruction grid: the network, or the pixels
        themselves (:mod:`bayes_inr.model.gop`).
    operator : RadonOperator
        The forward projector ``A`` of the same geometry.
    sinogram : torch.Tensor
        Measured sinogram (V, D).
    prior : Prior or callable or str
        Prior over weights (see :mod:`bayes_inr.model.priors`).
    sigma : float
        Noise standard deviation; with ``infer_sigma`` the median of its LogNormal prior.
    infer_sigma : bool
        Treat sigma as a latent site.
    tv_weight : float
        Weight lambda of the total-variation factor (0: none).
    tv_norm : {"anisotropic", "isotropic"}
        The total variation of that factor (:func:`total_variation`).
    tv_smoothing : float
        Its smoothing ``eps`` (0: the norm's default, :func:`total_variation`).
    dropout : float
        Probability p of dropping a hidden unit, or at depth 0 a Fourier feature (0: no
        dropout masks).
    dropout_scope : str
        ``image``: one mask per draw, so a draw is one function (weights M diag(z));
        ``pixel``: every pixel of every draw has its own masks (dropout on a batch of
        coordinates, as in the authors' code), as model sites.
    """

    def __init__(self, inr: INR, operator: RadonOperator, sinogram: torch.Tensor, prior,
                 sigma: float, infer_sigma: bool = False, tv_weight: float = 0.0,
                 dropout: float = 0.0, dropout_scope: str = "image",
                 tv_norm: str = "anisotropic", tv_smoothing: float = 0.0):
        operator.geometry.check_sinogram(sinogram)
        if not sigma > 0:
            raise InputError(f"sigma must be positive, got {sigma}")
        check_dropout(dropout)
        check_choice("dropout_scope", dropout_scope, DROPOUT_SCOPES)
        check_choice("tv_norm", tv_norm, TV_NORMS)
        if not tv_smoothing >= 0:
            raise InputError(f"tv_smoothing must be non-negative, got {tv_smoothing}")
        self.inr = inr
        self.operator = operator
        self.sinogram = torch.as_tensor(sinogram, dtype=operator.dtype, device=operator.device)
        self.prior: Prior = as_prior(prior)
        self.sigma = float(sigma)
        self.infer_sigma = infer_sigma
        self.tv_weight = float(tv_weight)
        self.tv_norm = tv_norm
        self.tv_smoothing = float(tv_smoothing)
        self.latent_scale = 1.0
        self.dropout = float(dropout)
        self.dropout_scope = dropout_scope

    def unit_masks(self) -> dict[str, UnitMasks]:
        """Mask name -> :class:`UnitMasks` (keep 1 - p) over the inputs of every layer fed by
        a hidden layer (depth 0: the Fourier features;
        :meth:`~bayes_inr.model.inr.INR.mask_shapes`), of the dropout scope's shape; empty
        without dropout."""
        if not self.dropout:
            return {}
        return {name: UnitMasks(1 - self.dropout, shape, self.operator.dtype,
                                    self.operator.device)
                for name, shape in self.inr.mask_shapes(self.dropout_scope).items()}

    def mask_sites(self) -> dict[str, UnitMasks]:
        """The masks that are sample sites of the model: per-pixel masks only (per-image
        masks are part of the weight draw, see
        :class:`~bayes_inr.inference.guides.DropoutGuide`)."""
        return self.unit_masks() if self.dropout_scope == "pixel" else {}

    def init_params(self, seed: int = 0) -> dict[str, torch.Tensor]:
        """Initial weights of the representation, its output started at the image mean
        that the sinogram implies
        (:meth:`~bayes_inr.physics.geometry.Geometry.mean_attenuation`)."""
        mean = self.operator.geometry.mean_attenuation(self.sinogram.cpu().numpy())
        return self.inr.init_params(seed, image_mean=mean)

    def weight_distributions(self) -> dict:
        """Site name -> prior distribution (an event of the site's shape)."""
        with torch.device(self.operator.device):
            return {name: site_distribution(self.prior, name, shape, fan_in)
                    for name, (shape, fan_in) in self.inr.param_shapes().items()}

    def __call__(self) -> torch.Tensor:
        with poutine.scale(scale=self.latent_scale):
            params = {name: pyro.sample(name, d) for name, d in self.weight_distributions().items()}
            sigma = self.sigma
            if self.infer_sigma:
                loc = torch.tensor(math.log(self.sigma), device=self.operator.device)
                sigma = pyro.sample("sigma", dist.LogNormal(loc, 1.0))
                sigma = sigma.unsqueeze(-1).unsqueeze(-1)
        for name, d in self.mask_sites().items():
            apply_dropout(params, name, pyro.sample(name, d), d.keep, self.dropout_scope)
        image = pyro.deterministic("image", self.inr.render(params))
        if self.tv_weight:
            pyro.factor("tv", -self.tv_weight * total_variation(image, self.tv_norm,
                                                                  self.tv_smoothing))
        pyro.sample("sinogram", dist.Normal(self.operator(image), sigma).to_event(2),
                    obs=self.sinogram)
        return image
