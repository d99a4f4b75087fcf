"""Inference methods: each turns a sample and a configuration into posterior draws.

:mod:`.method` is the interface and the registry of methods by name; :mod:`.methods`
holds the single-fit methods (MAP, BBB, MCD by :mod:`.svi` with :mod:`.guides`; HMC,
NUTS by :mod:`.mcmc`), built on the families of :mod:`.single`; :mod:`.ensemble` the
mixtures of single fits, one layer up; :mod:`.fit` is the entry point; :mod:`.config` a
fit's configuration; :mod:`.baselines` the classical reconstructions.

Importing this package registers every method, so the registry is complete whatever
``bayes_inr.inference`` module is imported first.
"""

from . import ensemble, methods  # noqa: F401  (they register their methods)
