"""What a chain keeps: its draws, statistics and the state it continues from.

Resume. Every kept draw records the chain's state: position, step size, inverse mass
matrix and the torch RNG state after that draw. A run restarted from it
(:meth:`~bayes_inr.inference.mcmc.run.MCMCRun.from_inference_data`) continues with
adaptation off and the same RNG stream, and gives draws identical to the uninterrupted
run's on the same device with the same torch thread count (the GEMMs' summation order can
depend on both): parameters and statistics bit for bit, except ``acceptance_rate``, which
is recovered from Pyro's running mean (equal to float64 rounding), and the images,
rendered in batches of other sizes (equal to float32 rounding). A chain interrupted during
warmup restarts from its start (same seed, so again the same draws).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .potential import SITE, FlatPotential


@dataclass
class ChainState:
    """What a chain needs to continue after a kept draw."""

    theta: torch.Tensor
    step_size: float
    inverse_mass: torch.Tensor
    """The diagonal of the inverse mass matrix on ``theta`` (dim,) (of a dense one, only its
    diagonal: a dense one is rebuilt from the chain's start on resume)."""
    rng: torch.Tensor
    rng_cuda: torch.Tensor | None = None
    position: torch.Tensor | None = None
    """The sampler's coordinates of ``theta`` where they are not ``theta`` itself (a
    whitened potential's ``u``), so that a resumed chain continues from the very same
    point (``theta`` to ``u`` does not round-trip in floating point)."""

    @classmethod
    def capture(cls, position: torch.Tensor, kernel, whitening=None) -> ChainState:
        """The state after a kept draw at the sampler's ``position``; ``whitening`` (a
        :class:`~.precondition.Whitened` potential) maps it to ``theta``."""
        cuda = position.device.type == "cuda"
        position = position.detach().clone()
        if whitening is None:
            theta, mass, position = position, kernel.inverse_mass_matrix[(SITE,)], None
        else:
            theta = whitening.to_theta(position).to(position.dtype)
            mass = whitening.inverse_mass_diagonal
        return cls(theta, float(kernel.step_size), mass, torch.get_rng_state(),
                   torch.cuda.get_rng_state(position.device) if cuda else None, position)

    def restore_rng(self, device: torch.device) -> None:
        torch.set_rng_state(self.rng)
        if self.rng_cuda is not None:
            torch.cuda.set_rng_state(self.rng_cuda, device)


@dataclass
class Chain:
    """The kept draws of one chain: images, statistics, optional parameters, state."""

    init: torch.Tensor
    images: list[np.ndarray] = field(default_factory=list)
    stats: dict[str, list] = field(default_factory=dict)
    log_sigma: list[float] = field(default_factory=list)
    params: list[torch.Tensor] = field(default_factory=list)
    pending: list[torch.Tensor] = field(default_factory=list)
    state: ChainState | None = None
    seconds: float = 0.0

    @property
    def draws(self) -> int:
        return sum(len(chunk) for chunk in self.images) + len(self.pending)

    def keep(self, position: torch.Tensor, kernel, infer_sigma: bool, whitening=None) -> None:
        """Keep the draw at the sampler's ``position`` (see :meth:`ChainState.capture`)."""
        self.state = ChainState.capture(position, kernel, whitening)
        self.pending.append(self.state.theta)
        for name, value in kernel.stats.items():
            self.stats.setdefault(name, []).append(value)
        if infer_sigma:
            self.log_sigma.append(float(self.state.theta[-1]))

    def render(self, potential: FlatPotential, save_params: bool) -> None:
        """Render the pending draws in batches (and keep them as parameters if asked)."""
        if not self.pending:
            return
        thetas = torch.stack(self.pending)
        self.images.append(potential.images(thetas))
        if save_params:
            self.params.append(thetas.cpu().to(potential.dtype))
        self.pending = []
