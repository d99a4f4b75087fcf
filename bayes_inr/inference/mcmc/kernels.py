"""Pyro's :class:`~pyro.infer.mcmc.HMC` and :class:`~pyro.infer.mcmc.NUTS` kernels on the
flat potential (:mod:`.potential`, Pyro's ``potential_fn`` route). Small subclasses add what
Pyro lacks:

- per-transition statistics under ArviZ's names (:data:`STATS`): ``diverging``,
  ``step_size`` (used by the transition), ``acceptance_rate`` (HMC: the Metropolis
  probability; NUTS: the mean over the tree), ``n_steps`` (gradient evaluations),
  ``tree_depth`` (NUTS: ``floor(log2(n_steps)) + 1``, ArviZ's convention for
  NumPyro), ``energy`` (the Hamiltonian after the momentum draw) and ``lp``
  (``-U`` of the kept state);
- HMC with ``num_steps`` keeps that number of leapfrog steps while the step size
  adapts (Pyro itself keeps the trajectory length fixed and rescales the steps);
- a restart from a saved step size and inverse mass matrix (resume).

This is the one module that reads or overrides Pyro's private attributes (``_sample_r``,
``_kinetic_energy``, ``_divergences``, ``_mean_accept_prob``, ``_potential_energy_last``,
``_t``, ``_warmup_steps``): the tested pyro-ppl versions are bounded in ``pyproject.toml``.
"""

from __future__ import annotations

import pyro
import torch
from pyro.infer.mcmc import HMC, NUTS

from .potential import SITE
from .settings import MCMCSettings
from .state import ChainState

STATS = ("diverging", "step_size", "acceptance_rate", "n_steps", "tree_depth", "energy", "lp")


class _Recorder:
    """Mixin for Pyro's HMC/NUTS: per-transition statistics and a restartable adapter."""

    def __init__(self, potential, inverse_mass: torch.Tensor | None = None,
                 **kwargs):
        super().__init__(potential_fn=potential, **kwargs)
        self._potential = potential
        self._restore_inverse_mass = inverse_mass
        self._kinetic = None
        self.stats: dict = {}

    def setup(self, warmup_steps, *args, **kwargs):
        super().setup(warmup_steps, *args, **kwargs)
        if self._restore_inverse_mass is not None:
            self.mass_matrix_adapter.inverse_mass_matrix = {(SITE,): self._restore_inverse_mass}

    def _sample_r(self, name):
        r, r_unscaled = super()._sample_r(name)
        if self._kinetic is None:  # the transition's momentum (not a step-size search's)
            self._kinetic = float(self._kinetic_energy(r_unscaled))
        return r, r_unscaled

    def sample(self, params):
        step_size, evaluations = self.step_size, self._potential.evaluations
        divergences, mean_accept = len(self._divergences), self._mean_accept_prob
        start_energy = self._potential_energy_last
        self._kinetic = None
        # argument checks of the kernel's own momentum, accept and tree-merge draws cost
        # NUTS about 3 % of its time (analysis/bench_hmc.py) and guard nothing of ours
        with pyro.validation_enabled(False):
            params = super().sample(params)
        # Pyro keeps only the running mean of the acceptance probability: undo its update
        t, warmup = self._t, self._warmup_steps
        n = t - warmup if t > warmup else t
        accept = mean_accept + n * (self._mean_accept_prob - mean_accept)
        n_steps = self._potential.evaluations - evaluations
        self.stats = {
            "diverging": len(self._divergences) > divergences,
            "step_size": step_size,
            "acceptance_rate": min(max(accept, 0.0), 1.0),
            "n_steps": n_steps,
            "energy": self._kinetic + float(start_energy),
            "lp": -float(self._potential_energy_last),
        }
        if isinstance(self, NUTS):
            self.stats["tree_depth"] = n_steps.bit_length()
        return params


class _HMC(_Recorder, HMC):
    """Pyro's HMC; a given ``num_steps`` stays fixed while the step size adapts."""

    def __init__(self, potential, *, num_steps: int = 0, trajectory_length: float = 0.0,
                 **kwargs):
        super().__init__(potential, num_steps=num_steps or None,
                         trajectory_length=None if num_steps else trajectory_length, **kwargs)
        self._fixed_steps = num_steps

    @property
    def num_steps(self) -> int:
        return self._fixed_steps or max(1, int(self.trajectory_length / self.step_size))


class _NUTS(_Recorder, NUTS):
    """Pyro's NUTS (multinomial sampling) with statistics."""


def make_kernel(settings: MCMCSettings, potential, state: ChainState | None = None,
                unit_mass: bool = False):
    """The Pyro kernel of ``settings`` on ``potential`` (a :class:`~.potential.FlatPotential` or a
    :class:`~.precondition.Whitened` one); with ``state``, restarted there without
    adaptation. With ``unit_mass`` the mass matrix is the identity, fixed (warmup adapts the
    step size only): a whitened potential's, whose mass matrix is in its coordinates."""
    adapt = state is None and settings.warmup > 0
    common = {"step_size": state.step_size if state else settings.step_size,
              "adapt_step_size": adapt, "adapt_mass_matrix": adapt and not unit_mass,
              "target_accept_prob": settings.target_accept,
              "inverse_mass": None if unit_mass else getattr(state, "inverse_mass", None)}
    if settings.kernel == "nuts":
        return _NUTS(potential, max_tree_depth=settings.max_tree_depth, **common)
    return _HMC(potential, num_steps=settings.num_steps,
                trajectory_length=settings.trajectory_length, **common)
