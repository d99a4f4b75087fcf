"""The entry point of every fit: the registered method of the configuration."""

from __future__ import annotations

from pathlib import Path

import arviz as az

from ..data.sample import Sample
from .config import FitConfig
from .method import get_method


def fit(sample: Sample, config: FitConfig, progress: bool = True, prior=None, *,
        out: Path | None = None, resume: az.InferenceData | dict | None = None
        ) -> az.InferenceData:
    """Fit ``config`` to ``sample`` with the method ``config.inference`` and return its
    draws as InferenceData (:meth:`~bayes_inr.inference.method.InferenceMethod.fit` says
    what ``prior``, ``out`` and ``resume`` do)."""
    return get_method(config.inference).fit(sample, config, prior=prior, progress=progress,
                                            out=out, resume=resume)
