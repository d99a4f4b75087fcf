"""Stacking on validation: the weights of a mixture of methods, chosen on validation images.

Two methods that err in different places can predict better together than either alone: an
INR ensemble and Bayesian TV, for example, lose on different phantoms. A stack is the
mixture :func:`bayes_inr.posterior.mix` of K methods' runs of one image with weights w on
the simplex, chosen on validation images and then applied, unchanged, to new images.

**Fit.** For every w on a grid of the simplex (step ``step``, default 0.1: 11 weights for
two methods, 66 for three), the mixture of each validation image's runs is scored by its
object CRPS (true value above the air level) and the PSNR of its mean; the chosen w has the
lowest mean object CRPS over the images, the higher mean PSNR breaking ties
(:data:`metrics.RANKING`, the order in which sweeps rank configurations). The CRPS is a
proper score, so the choice rewards a sharp *and* calibrated mixture, not a wide one. The
weights at the corners (one method alone) are on the grid, so a stack never loses to its
components on validation.

**What it promises.** Nothing beyond what validation shows: the weights are one choice
made on a few images. The file keeps the grid's validation scores, mean and per image, so
a flat optimum is visible, and :meth:`Stack.image_choices` gives the weights each image
alone would choose: when they disagree, the choice rests on few images. Test images are
scored once, with the chosen weights. Runs of the test split are refused (their split is
matched against the benchmark as for recalibration,
:func:`bayes_inr.evaluation.recalibration.benchmark_index`), and a stack applies only to
runs of its components' methods, configurations, view count, image size and member
counts. Its mixture can be recalibrated like any run
(:mod:`bayes_inr.evaluation.recalibration`).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import itertools
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from .. import __version__, posterior
from ..core.atomic import atomic_path
from ..core.errors import InputError
from ..posterior.mixture import check_same_data
from . import metrics
from .recalibration import KEYS, benchmark_index, entry_air_level, run_about, validation_split

FORMAT = "bayes_inr-stack-1"
STEP = 0.1


def simplex_grid(k: int, step: float = STEP) -> np.ndarray:
    """Every weight vector of ``k`` components on the simplex with entries in multiples of
    ``step`` (which must divide 1), shape (n, k), the last component's weight varying
    fastest."""
    if k < 1:
        raise InputError("a stack needs at least one component")
    parts = round(1.0 / step)
    if parts < 1 or not np.isclose(parts * step, 1.0):
        raise InputError(f"the grid step must divide 1, got {step}")
    rows = [c + (parts - sum(c),) for c in itertools.product(range(parts + 1), repeat=k - 1)
            if sum(c) <= parts]
    return np.asarray(rows, dtype=np.float64) / parts


@dataclass(frozen=True)
class Stack:
    """A stack: the chosen weights of K components and the validation scores of the grid.

    ``components`` holds, per component, its label and what a run must agree on to be
    mixed with the stack (method, views, shape, config hash, member count: the keys of
    :data:`bayes_inr.evaluation.recalibration.KEYS`). ``grid`` holds one row per weight
    vector: ``weights``, the validation means of ``crps_object`` and ``psnr``, and their
    values on each image (``crps_object_images``, ``psnr_images``).
    """

    labels: tuple[str, ...]
    weights: tuple[float, ...]
    components: tuple[dict, ...]
    grid: tuple[dict, ...]
    step: float = STEP
    n_images: int = 0
    dataset: str | None = None
    split: str = "val"
    split_verified: bool = False
    runs: tuple[tuple[dict, ...], ...] = field(default=())
    """Per validation image, the record of each component's run."""

    def to_json(self) -> dict:
        out = {"format": FORMAT} | asdict(self)
        out["components"] = [dict(c, shape=list(c["shape"])) for c in self.components]
        out["runs"] = [[{k: v for k, v in r.items() if k != "shape"} for r in image]
                       for image in self.runs]
        return out

    def image_choices(self) -> list[tuple[float, ...]]:
        """The weights each validation image alone would choose (same rule as the stack's):
        when they disagree, the choice rests on few images."""
        return [tuple(min(self.grid, key=lambda row: metrics.rank_key(
            {"crps_object": row["crps_object_images"][i], "psnr": row["psnr_images"][i]}))
            ["weights"]) for i in range(self.n_images)]

    @classmethod
    def from_json(cls, data: dict) -> Stack:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise InputError(f"not a stack file (format {FORMAT!r} expected)")
        data = {k: v for k, v in data.items() if k not in ("format", "bayes_inr_version",
                                                            "created_at")}
        try:
            data["labels"] = tuple(data["labels"])
            data["weights"] = tuple(float(w) for w in data["weights"])
            data["components"] = tuple(dict(c, shape=tuple(c["shape"]))
                                       for c in data["components"])
            data["grid"] = tuple(data["grid"])
            data["runs"] = tuple(tuple(image) for image in data["runs"])
            stack = cls(**data)
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(f"malformed stack file: {err}") from None
        if not (len(stack.labels) == len(stack.weights) == len(stack.components)):
            raise InputError("malformed stack file: labels, weights and components differ "
                             "in length")
        return stack


def _image_parts(runs: Sequence, record: dict
                 ) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray, float]:
    """Each run's image draws and draw weights, the ground truth (of the first) and its air
    level (:func:`entry_air_level` of ``record``, the first run's :func:`validation_split`
    entry)."""
    truth = np.asarray(runs[0].constant_data["ground_truth"].values, dtype=np.float64)
    return ([posterior.image_draws(r) for r in runs],
            [posterior.draw_weights(r) for r in runs], truth, entry_air_level(record, runs[0]))


def grid_scores(draws: Sequence[np.ndarray], weights: Sequence[np.ndarray], truth: np.ndarray,
                grid: np.ndarray, air_level: float = 0.0) -> list[dict]:
    """Object CRPS and PSNR of the mixture of one image's components (draws and draw
    weights of each) at every weight vector of ``grid``; these are the scores
    :func:`bayes_inr.posterior.mix` followed by :func:`metrics.score` gives."""
    obj = metrics.support_masks(truth, air_level)["object"]
    rows = []
    for w in grid:
        keep = [k for k in range(len(draws)) if w[k] > 0]
        x = np.concatenate([draws[k] for k in keep])
        dw = np.concatenate([w[k] * weights[k] for k in keep])
        mean = np.tensordot(dw, x, axes=1)
        rows.append({"crps_object": metrics.crps(x[:, obj], truth[obj], dw),
                     "psnr": metrics.psnr(mean, truth)})
    return rows


def fit_stack(runs: Sequence[Sequence], labels: Sequence[str],
              names: Sequence[Sequence[str]] | None = None, *,
              benchmark: xr.Dataset | None = None, dataset: str | None = None,
              vouch: bool = False, step: float = STEP) -> Stack:
    """A :class:`Stack` of K methods from their runs of validation images.

    Parameters
    ----------
    runs : sequence (images) of sequences (K components) of InferenceData
        For every validation image, one run of each component, with its ground truth.
    labels : sequence of str
        The K components' names.
    names : sequence of sequences of str, optional
        The runs' labels in messages and in the file (their paths).
    benchmark, dataset, vouch
        As for :func:`bayes_inr.evaluation.recalibration.calibrate`: the benchmark that
        establishes each run's split (test runs are refused), its name, and whether runs
        of unknown split are taken as validation images.
    step : float
        The grid's step on the simplex.

    Raises
    ------
    InputError
        Fewer than two components, or one image given twice; runs of one component that
        differ in method, configuration, view count, image size or member count; runs of
        one image that are not of the same data; test-split runs, or (without ``vouch``)
        runs of unknown split.
    """
    labels = tuple(labels)
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise InputError(f"a stack needs at least two distinct components, got {list(labels)}")
    if not runs or any(len(image) != len(labels) for image in runs):
        raise InputError(f"give one run of each of the {len(labels)} components for every "
                         "validation image")
    names = names or [[f"{label} run {i}" for label in labels] for i in range(len(runs))]
    index = None if benchmark is None else benchmark_index(benchmark)
    records = []
    for image, image_names in zip(runs, names, strict=True):
        abouts = [run_about(r, n) for r, n in zip(image, image_names, strict=True)]
        records.append(tuple(a | validation_split(a, index, vouch) for a in abouts))
        check_same_data(image, image_names)
    hashes = [image[0]["data_hash"] for image in records]
    if len(set(hashes)) < len(hashes):
        raise InputError("two validation images are the same data (equal data_hash): each "
                         "image once")
    components = []
    for k, label in enumerate(labels):
        about = {key: records[0][k][key] for key in KEYS}
        for image in records[1:]:
            for key in KEYS:
                if image[k][key] != about[key]:
                    raise InputError(f"the runs of {label} differ in {key} ({about[key]}, "
                                     f"{image[k][key]}): a stack component is one method "
                                     "and configuration")
        components.append({"label": label} | about)
    grid = simplex_grid(len(labels), step)
    per_image = []
    for image, record in zip(runs, records, strict=True):
        draws, weights, truth, level = _image_parts(image, record[0])
        per_image.append([(row["crps_object"], row["psnr"])
                          for row in grid_scores(draws, weights, truth, grid, level)])
    per_image = np.array(per_image)
    means = per_image.mean(axis=0)  # (grid, 2)
    rows = tuple({"weights": [float(v) for v in w], "crps_object": float(c), "psnr": float(p),
                  "crps_object_images": [float(v) for v in per_image[:, i, 0]],
                  "psnr_images": [float(v) for v in per_image[:, i, 1]]}
                 for i, (w, (c, p)) in enumerate(zip(grid, means, strict=True)))
    best = min(range(len(rows)), key=lambda i: metrics.rank_key(rows[i]))
    return Stack(labels=labels, weights=tuple(rows[best]["weights"]),
                 components=tuple(components), grid=rows, step=step, n_images=len(runs),
                 dataset=dataset, split_verified=all(r["split_verified"]
                                                     for image in records for r in image),
                 runs=tuple(records))


def save_stack(stack: Stack, path) -> Path:
    """Write the stack as JSON, atomically."""
    path = Path(path)
    content = stack.to_json() | {
        "bayes_inr_version": str(__version__),
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(content, indent=1) + "\n")
    return path


def load_stack(path) -> tuple[Stack, str]:
    """A stack file and the SHA-256 of its bytes."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"stack file {path} not found")
    raw = path.read_bytes()
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as err:
        raise InputError(f"stack file {path} is not JSON: {err}") from None
    return Stack.from_json(data), hashlib.sha256(raw).hexdigest()


def apply_stack(stack: Stack, runs: Sequence, names: Sequence[str] | None = None):
    """The stack's mixture of ``runs`` (one per component, in the stack's order) of one new
    image.

    Raises
    ------
    InputError
        A run count other than the stack's components, a run of another method,
        configuration, view count, image size or member count than its component's, a run
        of one of the stack's validation images, or runs of different data.
    """
    names = list(names) if names is not None else list(stack.labels)
    if len(runs) != len(stack.labels) or len(names) != len(runs):
        raise InputError(f"the stack mixes {len(stack.labels)} components "
                         f"({', '.join(stack.labels)}); got {len(runs)} runs")
    seen = {r.get("data_hash") for image in stack.runs for r in image}
    for run, name, component in zip(runs, names, stack.components, strict=True):
        about = run_about(run, name)
        for key in KEYS:
            if about[key] != component[key]:
                raise InputError(f"{name} has {key} {about[key]}, the stack's "
                                 f"{component['label']} {component[key]}: it stacks "
                                 "another method")
        if about["data_hash"] in seen:
            raise InputError(f"{name} is one of the stack's validation images: score it on "
                             "other images")
    return posterior.mix(runs, stack.weights, stack.labels)
