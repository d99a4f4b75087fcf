"""Weighted mixtures of runs: one predictive from several methods' draws of one image.

The mixture of runs 1..K with weights w_k (summing to 1) draws from run k with
probability w_k; its predictive at a pixel is sum_k w_k p_k. It is stored like an
ensemble (:mod:`bayes_inr.inference.ensemble`): every chain of every component becomes
one chain of the mixture, labelled on the ``member`` coordinate ``"LABEL/CHAIN"``, and the
coordinate ``member_weight`` (chain) holds that chain's weight in the mixture: w_k times
the chain's weight within its run (an ensemble member's 1/K_k, a sampler chain's share of
the draws). :func:`bayes_inr.posterior.draw_weights` spreads each chain's weight evenly
over its draws, so every score reads the mixture as it is meant. Components of weight 0
are left out.

The weights are chosen on validation images by :mod:`bayes_inr.evaluation.stacking`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..core.errors import InputError
from .read import _draw_counts, air_level, draw_weights, image_draws, run_attrs
from .read import config as run_config
from .schema import build


def _chain_weights(idata) -> np.ndarray:
    """Each chain's weight within its run (summing to 1)."""
    counts = _draw_counts(idata)
    return np.add.reduceat(draw_weights(idata), np.concatenate([[0], np.cumsum(counts)[:-1]]))


def _chain_labels(idata) -> list[str]:
    pp = idata.posterior_predictive
    if "member" in pp.coords:
        return [str(label) for label in pp["member"].values]
    return [f"chain{c}" for c in range(pp["image"].sizes["chain"])]


def check_same_data(runs: Sequence, labels: Sequence[str]) -> None:
    """Refuse runs of different measurements or ground truths."""
    first = runs[0]
    for run, label in zip(runs[1:], labels[1:], strict=True):
        same = np.array_equal(run.observed_data["sinogram"].values,
                              first.observed_data["sinogram"].values)
        truths = [getattr(r, "constant_data", None) for r in (first, run)]
        have = ["ground_truth" in c if c is not None else False for c in truths]
        if have[0] != have[1] or (all(have) and not np.array_equal(
                truths[0]["ground_truth"].values, truths[1]["ground_truth"].values)):
            same = False
        if not same:
            raise InputError(f"{label} is not a run of the same data as {labels[0]} "
                             "(sinogram or ground truth differ): a mixture is of one image")


def mix(runs: Sequence, weights: Sequence[float], labels: Sequence[str]):
    """The mixture of ``runs`` with ``weights``, as one InferenceData.

    Parameters
    ----------
    runs : sequence of InferenceData
        Runs of one image (same sinogram and ground truth), at least one.
    weights : sequence of float
        One non-negative weight per run; they must sum to 1.
    labels : sequence of str
        One name per run (its method), used in the ``member`` labels and the config.

    Returns
    -------
    InferenceData
        Method ``"mixture(LABEL w, ...)"``; its config records each component's label,
        weight, stored config and config hash; its ``config_hash`` is computed from the
        labels, weights and the components' config hashes, so that mixtures of the same
        configurations on different images share it.

    Raises
    ------
    InputError
        Mismatched lengths, negative weights or weights that do not sum to 1, or runs of
        different data.
    """
    weights = np.asarray(weights, dtype=np.float64)
    if not len(runs) or len(runs) != weights.size or len(labels) != weights.size:
        raise InputError(f"a mixture needs one weight and one label per run: {len(runs)} "
                         f"runs, {weights.size} weights, {len(labels)} labels")
    if (weights < 0).any() or not np.isclose(weights.sum(), 1.0, atol=1e-9):
        raise InputError(f"mixture weights must be non-negative and sum to 1, got "
                         f"{weights.tolist()}")
    check_same_data(runs, labels)
    images, chain_labels, chain_weights = [], [], []
    for run, label, w in zip(runs, labels, weights, strict=True):
        if w == 0:
            continue
        parts = np.split(image_draws(run), np.cumsum(_draw_counts(run))[:-1])
        images += parts
        chain_labels += [f"{label}/{c}" for c in _chain_labels(run)]
        chain_weights += list(w * _chain_weights(run))
    components = [{"label": label, "weight": float(w), "config": run_config(run),
                   "config_hash": run_attrs(run).get("config_hash")}
                  for run, label, w in zip(runs, labels, weights, strict=True)]
    first = runs[0]
    constant = getattr(first, "constant_data", None)
    truth = (constant["ground_truth"].values
             if constant is not None and "ground_truth" in constant else None)
    attrs = run_attrs(first)
    idata = build(images, sinogram=first.observed_data["sinogram"].values,
                  angles=first.observed_data["sinogram"]["angle"].values,
                  method="mixture(" + ", ".join(f"{c['label']} {c['weight']:g}"
                                                for c in components) + ")",
                  config={"mixture": components}, ground_truth=truth,
                  air_level=air_level(first),
                  seed=attrs.get("seed"), device=attrs.get("device", "cpu"),
                  wall_time=sum(float(run_attrs(r).get("wall_time", 0.0)) for r in runs),
                  chain_labels=chain_labels,
                  settings={"mixture": [{k: c[k] for k in ("label", "weight", "config_hash")}
                                        for c in components]})
    idata.posterior_predictive = idata.posterior_predictive.assign_coords(
        member_weight=("chain", np.asarray(chain_weights, dtype=np.float64)))
    return idata
