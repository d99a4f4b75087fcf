"""The entry point of every fit: a single fit, or an ensemble of single fits."""

from __future__ import annotations

from pathlib import Path

import arviz as az

from ..core.errors import InputError
from ..data.sample import Sample
from .config import FitConfig
from .ensemble import fit_ensemble
from .single import fit_single


def fit(sample: Sample, config: FitConfig, progress: bool = True, prior=None, *,
        out: Path | None = None, resume: az.InferenceData | dict | None = None
        ) -> az.InferenceData:
    """Fit ``config`` to ``sample`` and return its draws as InferenceData.

    ``inference="ensemble"`` fits the members of
    :func:`~bayes_inr.inference.ensemble.fit_ensemble` (without a store: the command line
    gives one); every other method is :func:`~bayes_inr.inference.single.fit_single`,
    whose docstring says what ``prior``, ``out`` and ``resume`` do.
    """
    if config.inference != "ensemble":
        return fit_single(sample, config, progress, prior, out=out, resume=resume)
    if prior is not None:
        raise InputError("ensemble members take their priors from their configs, "
                         "not a Python prior")
    return fit_ensemble(sample, config, progress=progress)
