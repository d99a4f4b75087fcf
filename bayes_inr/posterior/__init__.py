"""Every method's output as one ArviZ ``InferenceData`` (netCDF on disk).

Schema (the documentation's "InferenceData schema" page, ``docs/schema.md``):

- ``posterior_predictive.image`` (chain, draw, y, x): the reconstructed images. An
  ensemble stores one chain per member, labelled by a ``member`` coordinate on the
  chain dimension. Members may hold different numbers of draws (a deterministic
  member is one draw): the draw dimension is then padded with NaN to the longest
  member and ``posterior_predictive.n_draws`` (chain) says how many draws are real.
  :func:`image_draws` drops the padding. A weighted mixture of runs also stores each
  chain's weight as the ``member_weight`` coordinate (:func:`mix`).
- ``posterior_predictive.sinogram`` (chain, draw, angle, detector), float32, when the
  likelihood is given (``forward`` and ``sigma`` of :func:`build`): a replicate of the
  measurement per draw, ``y_rep = A x + sigma eps`` with ``eps`` standard normal (seeded
  by the run's seed and the chain), so that ``az.plot_ppc(idata, var_names=["sinogram"])``
  compares the observed sinogram with data the model would measure (the noise-free
  ``A x`` is not stored).
- ``log_likelihood.sinogram`` (chain, draw, angle, detector), float32, with the same
  condition: ``log N(y | A x, sigma^2)`` of every ray and draw, so that ``az.loo`` and
  ``az.waic`` work. Their observations are the rays of one scan, not images: they
  estimate the predictive accuracy for a new ray of the same scan, not for a new image or
  patient. Cost: draws x rays x 4 bytes per group (100 draws x 20 views x 183 detectors:
  1.5 MB, beside 6.6 MB of 128 x 128 images; on disk both groups take 2.6 MB, ArviZ's
  zlib compression saves little on them). Stored by :mod:`bayes_inr.fit` (SVI methods
  and hmc/nuts); not by classical baselines (:func:`from_reconstruction`: a point
  estimate has no sigma of its own and one draw gives no LOO) nor ensembles (members
  weigh 1/K each, not 1/S per draw).
- ``posterior``: parameter draws (chain, draw, ...) when kept, and with the likelihood
  ``posterior.pixel`` (chain, draw, pixel_id): the draws of 20 fixed pixels
  (:func:`representative_pixels`, coordinates ``pixel_y``, ``pixel_x``), so that
  ``az.summary``, ``az.plot_trace`` work as is and ``az.loo`` finds the posterior group
  it takes the draws' relative efficiency from.
- ``observed_data.sinogram`` (angle, detector).
- ``constant_data``: ``angle`` (the angle coordinate, radians), ``ground_truth``
  (y, x) when known, and any extra arrays.
- ``sample_stats``: sampler statistics (chain, draw, ...).
- attrs of the InferenceData itself (the root group; read them with :func:`run_attrs`):
  ``method``, ``config`` (JSON of the full configuration), ``seed``, ``device``,
  ``wall_time`` (seconds), ``created_at`` (UTC ISO 8601), and the provenance of
  :mod:`bayes_inr.core.provenance`: ``git_commit``, ``git_dirty``, ``bayes_inr_version``,
  ``config_hash``, ``data_hash``. Attributes that are None are omitted. Every group
  carries the same attributes, as files written before the root attributes did (their
  only place then: :func:`run_attrs` falls back to them).

A partial sampler run (an interrupted hmc/nuts run, whose running chain is NaN-padded)
is read by :func:`load` as the draws every chain has (:func:`trim_partial`), so that
ArviZ's summaries see no padding; ``load(path, trim=False)`` gives the file as stored.

Files are written with the h5netcdf engine, atomically (:func:`save`), and read
fully into memory (:func:`load`).

The modules: :mod:`.schema` (draws -> InferenceData in the schema above), :mod:`.read`
(draws, weights, attributes of a run), :mod:`.store` (netCDF on disk), :mod:`.mixture`
(weighted mixtures of runs of one image). This package
imports nothing from inference; it re-exports their public names, the API used as
``posterior.NAME``.
"""

from .mixture import mix
from .read import (
    air_level,
    chain_means,
    config,
    draw_weights,
    image_draws,
    run_attrs,
    trim_partial,
    with_air_level,
)
from .schema import build, from_reconstruction, representative_pixels
from .store import load, save

__all__ = [
    "air_level",
    "build",
    "chain_means",
    "config",
    "draw_weights",
    "from_reconstruction",
    "image_draws",
    "load",
    "mix",
    "representative_pixels",
    "run_attrs",
    "save",
    "trim_partial",
    "with_air_level",
]
