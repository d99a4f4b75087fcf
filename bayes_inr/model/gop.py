"""The grid-of-pixels (GOP) baseline: the image itself is the parameter.

One latent site ``pixels`` (N, N), optionally through a sigmoid link, with the
model's weight prior on every pixel (a weak ``normal:SCALE`` by default) and the
model's total-variation factor as the image prior. :class:`PixelGrid` has the
interface of :class:`~bayes_inr.model.inr.INR` (``param_shapes``, ``init_params``,
``render``, ``render_vjp``, ``to``), so a GOP model is a
:class:`~bayes_inr.model.ctmodel.CTModel` whose representation is a pixel grid: the same
likelihood, priors, Pyro model, MAP warm start and HMC/NUTS machinery. The authors'
follow-up used this model to separate the INR's prior from the sampler.
"""

from __future__ import annotations

import torch

from ..core.errors import check_choice
from ..physics.radon import RadonOperator
from .ctmodel import CTModel
from .inr import head_inverse

LINKS = ("linear", "sigmoid")


class PixelGrid:
    """An N x N image whose pixels are the parameters.

    Parameters
    ----------
    shape : tuple of int
        Image shape (N, N).
    link : {"linear", "sigmoid"}
        ``image = pixels`` or ``image = sigmoid(pixels)``.
    device, dtype
        Where the parameters live.
    """

    def __init__(self, shape: tuple[int, int], link: str = "linear", device="cpu",
                 dtype=torch.float32):
        check_choice("link", link, LINKS)
        self.shape = tuple(shape)
        self.link = link
        self.device = torch.device(device)
        self.dtype = dtype

    def to(self, device=None, dtype=None) -> PixelGrid:
        self.device = torch.device(device) if device is not None else self.device
        self.dtype = dtype or self.dtype
        return self

    def param_shapes(self) -> dict[str, tuple[tuple[int, ...], int]]:
        """Site name -> (shape, fan_in): one site ``pixels``, fan-in 1."""
        return {"pixels": (self.shape, 1)}

    def init_params(self, seed: int = 0, image_mean: float | None = None
                    ) -> dict[str, torch.Tensor]:
        """A flat start at ``image_mean`` through the link (default 0, so 0.5 through the
        sigmoid); ``seed`` is unused."""
        value = 0.0 if image_mean is None else head_inverse(self.link, image_mean)
        return {"pixels": torch.full(self.shape, value, device=self.device, dtype=self.dtype)}

    def params_of(self, image) -> dict[str, torch.Tensor]:
        """The pixel values that render ``image`` (N, N), through the inverse link; with the
        sigmoid link the image is first clipped to [0.001, 0.999]."""
        image = torch.as_tensor(image, device=self.device, dtype=self.dtype)
        if self.link == "sigmoid":
            image = image.clamp(1e-3, 1 - 1e-3)
            image = torch.log(image / (1 - image))
        return {"pixels": image.reshape(self.shape).clone()}

    def render(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Images (*draws, N, N) from pixel values with leading draw dimensions."""
        pixels = params["pixels"]
        return torch.sigmoid(pixels) if self.link == "sigmoid" else pixels

    def render_vjp(self, params: dict[str, torch.Tensor],
                   workspace: dict[str, torch.Tensor] | None = None):
        """The image of one set of pixel values and its vector-Jacobian product (the
        interface of :meth:`~bayes_inr.model.inr.INR.render_vjp`; nothing large to keep in
        ``workspace``)."""
        image = self.render(params)

        def vjp(grad_image: torch.Tensor, out: dict[str, torch.Tensor]) -> None:
            out["pixels"].copy_(grad_image)
            if self.link == "sigmoid":
                out["pixels"].mul_(image * (1 - image))

        return image, vjp


def gop_model(operator: RadonOperator, sinogram: torch.Tensor, prior, sigma: float,
              infer_sigma: bool = False, tv_weight: float = 0.0, link: str = "linear",
              tv_norm: str = "anisotropic", tv_smoothing: float = 0.0) -> CTModel:
    """The GOP model of a sinogram: :class:`CTModel` over a :class:`PixelGrid`.

    ``prior`` is applied to the site ``pixels`` of shape (N, N) with fan-in 1 (so
    ``normal:1.0`` is an iid Normal(0, 1) on every pixel, or on every logit with the
    sigmoid link); ``tv_weight`` is the weight of the TV factor on the image, whose total
    variation is ``tv_norm`` smoothed by ``tv_smoothing``
    (:func:`~bayes_inr.model.ctmodel.total_variation`).
    """
    grid = PixelGrid(operator.geometry.image_shape, link, operator.device, operator.dtype)
    return CTModel(grid, operator, sinogram, prior, sigma, infer_sigma, tv_weight,
                   tv_norm=tv_norm, tv_smoothing=tv_smoothing)
