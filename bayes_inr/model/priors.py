"""Priors over INR weights, written in Python.

A prior is any callable ``prior(site_name, shape, fan_in) -> pyro distribution``
whose samples have the site's ``shape`` (an event of that shape, or a batch that
the model turns into one). Plain two-argument callables ``(site_name, shape)``
are accepted too, so a user prior can be a lambda::

    prior = lambda name, shape: dist.StudentT(3.0, 0.0, 0.5).expand(shape)

The classes below cover the usual choices; :class:`PerLayer` mixes them. A run records a
Python prior by its qualified name ``module:qualname`` and its source; a prior defined at
module level in an importable module can be named from the command line the same way
(``--prior mypriors:student_t``), so the run file says how to reproduce it.
"""

from __future__ import annotations

import importlib
import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Callable

import pyro.distributions as dist
import torch
from pyro.distributions.torch_distribution import TorchDistributionMixin

from ..core.errors import InputError, check_choice


class Prior(ABC):
    """Base class: subclasses return a distribution for one weight site."""

    @abstractmethod
    def __call__(self, name: str, shape: tuple[int, ...], fan_in: int):
        """The distribution of site ``name`` of ``shape`` in a layer with ``fan_in`` inputs."""

    def describe(self) -> dict:
        """The prior as plain data, for the configuration stored with a run."""
        return {"kind": type(self).__name__, **vars(self)}


class Normal(Prior):
    """iid Normal(0, scale^2) on every weight and bias."""

    def __init__(self, scale: float = 1.0):
        self.scale = float(scale)

    def __call__(self, name, shape, fan_in):
        return dist.Normal(0.0, self.scale).expand(shape)


class FanInNormal(Prior):
    """Normal(0, 1 / (tau * fan_in)): the fan-in scaled prior the authors used for HMC."""

    def __init__(self, tau: float = 0.2):
        self.tau = float(tau)

    def __call__(self, name, shape, fan_in):
        return dist.Normal(0.0, 1.0 / math.sqrt(self.tau * fan_in)).expand(shape)


class Laplace(Prior):
    """iid Laplace(0, scale) on every weight and bias."""

    def __init__(self, scale: float = 1.0):
        self.scale = float(scale)

    def __call__(self, name, shape, fan_in):
        return dist.Laplace(0.0, self.scale).expand(shape)


class Logistic(Prior):
    """iid Logistic(0, scale) on every weight and bias. With scale 1 on the logits of the
    pixel grid's sigmoid link (``--model gop --head sigmoid``) the image is uniform on
    [0, 1] a priori: the logistic density is the Jacobian of the sigmoid."""

    def __init__(self, scale: float = 1.0):
        self.scale = float(scale)

    def __call__(self, name, shape, fan_in):
        return dist.Logistic(0.0, self.scale).expand(shape)


class PerLayer(Prior):
    """A different prior per layer: ``{layer index or site name: prior}`` plus a default.

    ``PerLayer({0: Normal(10.0)}, default=FanInNormal(0.2))`` gives the input layer
    a wide prior and every other layer the fan-in prior.
    """

    def __init__(self, layers: dict, default: Prior):
        self.layers = dict(layers)
        self.default = default

    def __call__(self, name, shape, fan_in):
        layer = int(name.split(".")[0].removeprefix("layer"))
        prior = self.layers.get(name, self.layers.get(layer, self.default))
        return as_prior(prior)(name, shape, fan_in)

    def describe(self) -> dict:
        return {"kind": "PerLayer", "default": as_prior(self.default).describe(),
                "layers": {str(k): as_prior(v).describe() for k, v in self.layers.items()}}


class Custom(Prior):
    """Wraps a user callable ``(site_name, shape) -> distribution`` (or with ``fan_in``)."""

    def __init__(self, fn: Callable):
        self.fn = fn
        self._takes_fan_in = len(inspect.signature(fn).parameters) >= 3

    def __call__(self, name, shape, fan_in):
        return self.fn(name, shape, fan_in) if self._takes_fan_in else self.fn(name, shape)

    def describe(self) -> dict:
        """The callable's qualified name ``module:qualname``, whether that name imports back
        to it (then ``--prior`` accepts it), and its source where Python has it."""
        name = qualified_name(self.fn)
        try:
            source = inspect.getsource(self.fn)
        except (OSError, TypeError):  # defined in a REPL or compiled
            source = None
        try:  # a function of __main__ (a script, a notebook) imports back only there
            importable = (not name.startswith("__main__:")
                          and load_callable(name) is self.fn)
        except InputError:
            importable = False
        return {"kind": "Custom", "fn": name, "importable": importable, "source": source}


def qualified_name(fn: Callable) -> str:
    """``module:qualname`` of a callable (``repr`` for objects without them)."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    return f"{module}:{qualname}" if module and qualname else repr(fn)


def load_callable(name: str) -> Callable:
    """The callable ``module:qualname`` (or ``module.attr``), imported."""
    module_name, sep, qualname = name.partition(":")
    if not sep:
        module_name, _, qualname = name.rpartition(".")
    if not module_name or not qualname or "<" in qualname:
        raise InputError(f"prior {name!r} is not an importable name (module:function)")
    try:
        target = importlib.import_module(module_name)
        for attr in qualname.split("."):
            target = getattr(target, attr)
    except (ImportError, AttributeError) as err:
        raise InputError(f"prior {name!r} cannot be imported: {err}") from None
    if not callable(target):
        raise InputError(f"prior {name!r} is not callable")
    return target


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


PRIORS = {"normal": Normal, "fan_in_normal": FanInNormal, "laplace": Laplace,
          "logistic": Logistic}


def as_prior(prior) -> Prior:
    """A :class:`Prior` from a Prior, a callable, a spec ``"name"`` / ``"name:param"`` of
    :data:`PRIORS`, or the importable name ``"module:function"`` of a Python prior (a
    :class:`Prior` subclass instance or a callable, as a run file records it)."""
    if isinstance(prior, Prior):
        return prior
    if isinstance(prior, str):
        name, _, value = prior.partition(":")
        if name not in PRIORS and ("." in name or (value and not _is_number(value))):
            return as_prior(load_callable(prior))
        check_choice("prior", name, PRIORS)
        if not value:
            return PRIORS[name]()
        try:
            parameter = float(value)
        except ValueError:
            raise InputError(f"prior parameter must be a number, got {prior!r}") from None
        if not (math.isfinite(parameter) and parameter > 0):  # every entry's is a scale
            raise InputError(f"prior parameter must be a positive number, got {prior!r}")
        return PRIORS[name](parameter)
    if callable(prior):
        return Custom(prior)
    raise InputError(f"a prior must be a Prior, a callable or a string, got {type(prior).__name__}")


def site_distribution(prior: Prior, name: str, shape: tuple[int, ...], fan_in: int):
    """The prior's distribution for a site, as an event of exactly ``shape`` (a plain torch
    distribution is wrapped in Pyro's ``Independent``, which ``pyro.sample`` needs)."""
    d = prior(name, shape, fan_in)
    if tuple(d.batch_shape) + tuple(d.event_shape) != tuple(shape):
        d = d.expand(torch.Size(shape)[: len(shape) - len(d.event_shape)])
    if isinstance(d, TorchDistributionMixin):
        return d.to_event(len(d.batch_shape))
    return dist.Independent(d, len(d.batch_shape))
