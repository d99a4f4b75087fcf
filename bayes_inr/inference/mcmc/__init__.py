"""Hamiltonian Monte Carlo and NUTS with Pyro's kernels on one flat parameter vector.

The modules follow a run: :mod:`.potential` (the model's log joint and its hand-written
gradient on one flat vector), :mod:`.settings` (sampler settings, chain seeds),
:mod:`.state` (a chain's kept draws and the state it continues from), :mod:`.kernels`
(Pyro's HMC/NUTS with statistics and restarts: the only module that touches Pyro's
private attributes), :mod:`.run` (chains, checkpoints, resume, InferenceData),
:mod:`.init` (start points), :mod:`.precondition` (a dense mass matrix from the
Gauss-Newton curvature), :mod:`.exact` (the exact posterior of a linear-Gaussian
model, a check) and :mod:`.summary` (R-hat, ESS, divergences as text).

This package re-exports their public names, the API that ``bayes_inr.inference.single``
and the tests use as ``mcmc.NAME``.
"""

from .exact import exact_parameter_posterior, exact_posterior
from .init import initial_points, last_draws
from .kernels import STATS, make_kernel
from .potential import RENDER_CHUNK, SITE, FlatPotential
from .precondition import Whitened, check_dense, gauss_newton_precision, whitened
from .run import STATE_PREFIX, MCMCRun
from .settings import KERNELS, MCMCSettings, chain_seed
from .state import Chain, ChainState
from .summary import diagnostics

__all__ = ["KERNELS", "RENDER_CHUNK", "SITE", "STATE_PREFIX", "STATS", "Chain", "ChainState",
           "FlatPotential", "MCMCRun", "MCMCSettings", "chain_seed", "check_dense", "diagnostics",
           "exact_parameter_posterior", "exact_posterior", "gauss_newton_precision",
           "initial_points", "last_draws", "make_kernel", "Whitened", "whitened"]
