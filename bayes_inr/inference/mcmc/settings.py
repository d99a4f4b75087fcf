"""Sampler settings of HMC/NUTS and the chains' RNG seeds.

Warmup adapts the step size (dual averaging) and a diagonal mass matrix (Stan's
windows); ``warmup = 0`` samples with the given step size and a unit mass matrix. With
``mass_matrix = "gauss_newton"`` the mass matrix is instead dense and fixed: the inverse
of the Gauss-Newton precision at the chain's start (:mod:`.precondition`), and warmup
adapts the step size only.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from ...core.errors import InputError, check_choice

KERNELS = ("hmc", "nuts")
MASS_MATRICES = ("diag", "gauss_newton")


@dataclass(frozen=True)
class MCMCSettings:
    """Sampler settings (the fields of :class:`~bayes_inr.inference.config.FitConfig` of that
    name)."""

    kernel: str = "nuts"
    draws: int = 100
    warmup: int = 500
    thin: int = 1
    chains: int = 1
    step_size: float = 1.0
    num_steps: int = 20
    trajectory_length: float = 0.0
    max_tree_depth: int = 8
    target_accept: float = 0.8
    mass_matrix: str = "diag"
    seed: int = 0
    checkpoint_every: int = 100
    save_params: bool = False

    def __post_init__(self):
        check_choice("kernel", self.kernel, KERNELS)
        check_choice("mass_matrix", self.mass_matrix, MASS_MATRICES)
        for name in ("draws", "thin", "chains", "max_tree_depth", "checkpoint_every"):
            if getattr(self, name) <= 0:
                raise InputError(f"{name} must be positive, got {getattr(self, name)}")
        if self.warmup < 0 or self.num_steps < 0 or self.trajectory_length < 0:
            raise InputError("warmup, num_steps and trajectory_length must be non-negative")
        if self.kernel == "hmc" and not (self.num_steps or self.trajectory_length):
            raise InputError("hmc needs num_steps > 0 or trajectory_length > 0")
        if not self.step_size > 0 or not 0 < self.target_accept < 1:
            raise InputError("step_size must be positive and target_accept in (0, 1)")

    @classmethod
    def from_config(cls, config, kernel: str) -> MCMCSettings:
        """Settings of ``kernel`` from a :class:`~bayes_inr.inference.config.FitConfig`."""
        names = [f.name for f in fields(cls) if f.name != "kernel"]
        return cls(kernel=kernel, **{name: getattr(config, name) for name in names})


def chain_seed(seed: int, chain: int) -> int:
    """The RNG seed of one chain: independent streams for (seed, chain)."""
    return int(np.random.SeedSequence([seed, chain]).generate_state(1)[0])
