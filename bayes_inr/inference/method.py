"""The interface of an inference method, and the registry of methods by name.

An inference method turns a sample (a sinogram and its geometry) and a
:class:`~bayes_inr.inference.config.FitConfig` into posterior draws stored as
InferenceData (:mod:`bayes_inr.posterior`). Every method is a subclass of
:class:`InferenceMethod` that sets a ``name``: defining the class registers it under that
name (:data:`REGISTRY`), and everything that lists or dispatches on methods reads the
registry: the choices and help of ``--inference`` and ``--member-inference``, the checks
of a configuration, :func:`bayes_inr.inference.fit.fit`, which methods may be ensemble
members, the command line's resume and messages, and which runs get MCMC diagnostics in
a report.

The families share their machinery, so a method is usually a few lines:

- ``"svi"`` (:class:`~bayes_inr.inference.single.SVIFit`): a guide trained by the shared
  SVI loop; the method gives the guide (and, for BBB, the KL factor);
- ``"mcmc"`` (:class:`~bayes_inr.inference.single.MCMCFit`): Markov chains on the flat
  potential; the method names its kernel (:mod:`bayes_inr.inference.mcmc.kernels`);
- ``"mixture"`` (:class:`~bayes_inr.inference.ensemble.Ensemble`): a mixture of single
  fits, one layer above them.

The methods the package ships are defined in :mod:`bayes_inr.inference.methods` and
:mod:`bayes_inr.inference.ensemble`; importing :mod:`bayes_inr.inference` (which any
``bayes_inr.inference.*`` import does first) registers them. The pattern is Pyro's
``MCMCKernel`` and DeepInverse's samplers: one small interface, implementations apart.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..core.errors import InputError

if TYPE_CHECKING:  # annotations only: the configuration reads this registry
    import arviz as az

    from ..data.sample import Sample
    from .config import FitConfig

FAMILIES = {
    "svi": "a guide trained by stochastic variational inference; resumes from .OUT.ckpt",
    "mcmc": "Markov chains; the run file is the checkpoint, resumed with --resume",
    "mixture": "an equally weighted mixture of single fits",
}
"""Family -> what it means for a run of that family."""

REGISTRY: dict[str, type[InferenceMethod]] = {}
"""Name -> method class, in the order the classes were defined."""


class InferenceMethod(abc.ABC):
    """One way to get posterior draws of a CT model: the interface every method implements.

    A subclass that sets ``name`` is registered under it (a second class of the same
    name is refused). Methods hold no state: :func:`get_method` returns a fresh instance.
    """

    name: ClassVar[str]
    """The ``--inference`` value."""
    summary: ClassVar[str]
    """One line for the CLI help and the docs."""
    family: ClassVar[str]
    """A key of :data:`FAMILIES`."""
    member: ClassVar[bool] = False
    """Whether the method may be a member of an ensemble (a mixture of its fits)."""
    dropout: ClassVar[bool] = False
    """Whether the network is built with ``config.dropout`` (Monte Carlo dropout)."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:  # a family's shared base class
            return
        if cls.name in REGISTRY:
            raise TypeError(f"inference method {cls.name!r} is defined twice: "
                            f"{REGISTRY[cls.name].__qualname__} and {cls.__qualname__}")
        if getattr(cls, "family", None) not in FAMILIES or not getattr(cls, "summary", ""):
            raise TypeError(f"{cls.__qualname__}: family must be one of {', '.join(FAMILIES)} "
                            "and summary a line of text")
        REGISTRY[cls.name] = cls

    def check(self, config: FitConfig) -> None:
        """Raise :class:`~bayes_inr.core.errors.InputError` when ``config`` does not suit the
        method (called by :class:`~bayes_inr.inference.config.FitConfig` on creation);
        the default accepts every configuration."""
        return

    def shipped_names(self, overrides: Mapping[str, Any]) -> tuple[str, ...]:
        """The method names whose shipped configurations (``models/NAME_VIEWS.toml``) serve
        this method as defaults, best first (:func:`bayes_inr.model.catalog.validated`), given
        the configuration fields set on the command line, ``overrides``."""
        return (self.name,)

    def tv_factor(self, config: FitConfig, sigma: float) -> tuple[float, str]:
        """The weight lambda and the norm of the model's TV factor ``-lambda TV(image)``
        (:func:`~bayes_inr.model.ctmodel.total_variation`) for ``config`` and the
        likelihood's ``sigma``; the default is anisotropic, ``config.tv_weight`` or, with
        ``config.tv_units == "objective"``, ``config.tv_weight / sigma^2``."""
        scale = sigma ** 2 if config.tv_units == "objective" else 1.0
        return config.tv_weight / scale, "anisotropic"

    @abc.abstractmethod
    def fit(self, sample: Sample, config: FitConfig, *, prior=None, progress: bool = True,
            out: Path | None = None, resume: az.InferenceData | dict | None = None
            ) -> az.InferenceData:
        """Fit ``config`` to ``sample`` and return the draws.

        Parameters
        ----------
        sample : Sample
            The sinogram, its geometry and, for scoring, the ground truth.
        config : FitConfig
            The configuration; ``config.inference`` is this method's name.
        prior : Prior or callable, optional
            A Python prior replacing ``config.prior`` (:mod:`bayes_inr.model.priors`).
        progress : bool
            Show progress bars.
        out : Path, optional
            The run file the command line will write: checkpoints go beside it.
        resume : InferenceData or dict, optional
            What an interrupted fit of ``config`` left (the family's checkpoint).

        Returns
        -------
        arviz.InferenceData
            The run in the package's schema (:mod:`bayes_inr.posterior.schema`).
        """


def get_method(name: str) -> InferenceMethod:
    """The registered method ``name``; one-line :class:`InputError` naming the choices."""
    try:
        return REGISTRY[name]()
    except KeyError:
        raise InputError(f"unknown inference {name!r}; choose one of "
                         f"{', '.join(method_names())}") from None


def method_names(family: str | None = None, member: bool | None = None) -> tuple[str, ...]:
    """The registered names, family by family in the order of :data:`FAMILIES`, optionally
    only those of ``family`` or of ``member`` status."""
    order = list(FAMILIES)
    return tuple(name for name, cls in sorted(REGISTRY.items(),
                                              key=lambda item: order.index(item[1].family))
                 if (family is None or cls.family == family)
                 and (member is None or cls.member == member))


def family_of(name: str) -> str:
    """The family of method ``name`` (``""`` for a name that is not registered, such as an
    ensemble's ``DE-5`` label or a classical method stored in a run file)."""
    cls = REGISTRY.get(name)
    return cls.family if cls is not None else ""


def methods_help(member: bool | None = None) -> str:
    """``name: summary`` of every registered method (of ``member`` status), for CLI help."""
    return "; ".join(f"{name}: {REGISTRY[name].summary}" for name in method_names(member=member))
