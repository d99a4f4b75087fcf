"""Inference methods: each turns a :class:`~bayes_inr.model.ctmodel.CTModel` into draws.

:mod:`.svi` with :mod:`.guides` (MAP, BBB, MCD), :mod:`.mcmc` (HMC, NUTS), :mod:`.single`
(one fit of a configuration), :mod:`.ensemble` (mixtures of single fits, one layer up),
:mod:`.fit` (the entry point of both) and :mod:`.baselines` (the classical
reconstructions). :mod:`.config` is a fit's configuration.
"""
