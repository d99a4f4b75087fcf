"""HMC/NUTS chains of one model: run, checkpoint, resume, InferenceData.

Pyro's kernels (:mod:`.kernels`) run on the flat potential (:mod:`.potential`) under
:class:`~pyro.infer.mcmc.MCMC`, one ``MCMC`` per chain: one after the other in this
process, or at once in worker processes (:func:`bayes_inr.core.workers.run_tasks`, the
mechanism of ensembles and sweeps; Pyro's own multiprocessing would lose the per-draw
hook). Every kept draw records the chain's state (:mod:`.state`); a run restarted from
it (:meth:`MCMCRun.from_inference_data`) continues with adaptation off and the same RNG
stream.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyro
import torch
from pyro.infer.mcmc import MCMC

from ... import posterior
from ...core.atomic import atomic_path
from ...core.errors import InputError
from ...core.progress import progress_bars
from ...core.workers import run_tasks
from .kernels import STATS, make_kernel
from .potential import SITE, FlatPotential
from .precondition import whitened
from .settings import MCMCSettings, chain_seed
from .state import Chain, ChainState

STATE_PREFIX = "mcmc_"
STATE_DTYPE = torch.float64
"""The dtype of a chain's position, momentum and mass matrix: Pyro's kernels take it from
the potential's value, which is float64
(:meth:`~bayes_inr.inference.mcmc.potential.FlatPotential.value_and_grad`)."""


class MCMCRun:
    """HMC/NUTS chains of one model: run, checkpoint, resume, InferenceData.

    Parameters
    ----------
    potential : ~bayes_inr.inference.mcmc.potential.FlatPotential
    settings : ~bayes_inr.inference.mcmc.settings.MCMCSettings
    inits : torch.Tensor
        Start points (chains, dim).
    """

    def __init__(self, potential: FlatPotential, settings: MCMCSettings, inits: torch.Tensor):
        if inits.shape != (settings.chains, potential.dim):
            raise InputError(f"initial points have shape {tuple(inits.shape)}, expected "
                             f"({settings.chains}, {potential.dim})")
        self.potential = potential
        self.settings = settings
        self.chains = [Chain(init.to(potential.device, STATE_DTYPE)) for init in inits]

    @property
    def complete(self) -> bool:
        return all(chain.draws >= self.settings.draws for chain in self.chains)

    def run(self, progress: bool = True,
            checkpoint: Callable[[MCMCRun], None] | None = None, *, workers: int = 1,
            threads: int = 1, store: Path | None = None) -> None:
        """Run every chain to ``settings.draws`` kept draws.

        ``checkpoint(self)`` is called every ``checkpoint_every`` kept draws and when a
        chain ends. An exception (KeyboardInterrupt included) propagates after the
        draws so far are kept: call ``checkpoint`` then to save them.

        With ``workers > 1`` the unfinished chains run at once in that many worker
        processes (:func:`bayes_inr.core.workers.run_tasks`), ``threads`` torch threads
        each (no progress bars; with ``progress``, a line per finished chain), and
        ``checkpoint`` is called as each chain ends. A worker saves its chain
        to the directory ``store`` (``chainK.pt``, atomically) every ``checkpoint_every``
        kept draws; when the run stops early, the chains saved there are taken back
        before the exception propagates. The store is removed at the end. Each chain has
        its own seed (:func:`~.settings.chain_seed`), so with the same thread count the
        draws equal those of the chains run one after another.
        """
        todo = [i for i, chain in enumerate(self.chains) if chain.draws < self.settings.draws]
        if workers <= 1 or len(todo) <= 1:
            for index in todo:
                run_chain(self.potential, self.settings, index, self.chains[index], progress,
                          None if checkpoint is None else lambda: checkpoint(self))
            return
        if store is not None:
            shutil.rmtree(store, ignore_errors=True)
            store.mkdir(parents=True)
        tasks = [_ChainTask(self.potential, self.settings, i, self.chains[i], store)
                 for i in todo]
        try:
            with contextlib.closing(run_tasks(_run_chain_task, tasks, workers=workers,
                                              threads=threads)) as results:
                for k, chain in results:
                    self.chains[todo[k]] = chain
                    if progress:  # no bars from the workers: a line per finished chain
                        print(f"chain {todo[k]}: {chain.draws} draws in {chain.seconds:.0f} s",
                              file=sys.stderr, flush=True)
                    if checkpoint:
                        checkpoint(self)
        finally:
            if store is not None:
                self.take_back(store)

    def take_back(self, store: Path) -> None:
        """Replace every chain by its copy saved by a worker in ``store`` when that copy has
        more draws, then remove ``store``."""
        for index, current in enumerate(self.chains):
            saved = _chain_path(store, index)
            if saved.is_file():
                chain = torch.load(saved, weights_only=False)
                if chain.draws > current.draws:
                    self.chains[index] = chain
        shutil.rmtree(store, ignore_errors=True)

    # ------------------------------------------------------------------------- output

    def inference_data(self, **meta):
        """The draws so far as InferenceData (None before the first kept draw).

        ``meta`` goes to :func:`bayes_inr.posterior.build` (``sinogram``, ``angles``,
        ``method``, ``config``, ...), with the model's operator and sigma (per draw when
        inferred): the log-likelihood, replicated sinograms and ``posterior.pixel`` (the
        diagnostics' pixels) come with them. Chains without draws
        are left out (a partial run's chains may then have different lengths: see
        ``posterior.build``).
        """
        s, potential = self.settings, self.potential
        for chain in self.chains:
            chain.render(potential, s.save_params)
        started = [chain for chain in self.chains if chain.draws]
        if not started:
            return None
        images = [np.concatenate(chain.images) for chain in started]
        stats = {name: [np.asarray(chain.stats[name]) for chain in started]
                 for name in STATS if name in started[0].stats}
        draws = {}
        if potential.model.infer_sigma:
            draws["sigma"] = [np.exp(np.asarray(chain.log_sigma)) for chain in started]
        if s.save_params:
            for name, value in potential.unflatten(torch.cat(
                    [torch.cat(chain.params) for chain in started])).items():
                values = value.numpy()
                splits = np.cumsum([chain.draws for chain in started])[:-1]
                draws.setdefault(name, []).extend(np.split(values, splits))
            draws.pop("log_sigma", None)
        model = potential.model
        return posterior.build(images, sample_stats=stats, posterior=draws,
                               extra_constant=self._state_arrays(), forward=model.operator,
                               sigma=draws["sigma"] if model.infer_sigma else model.sigma,
                               **meta)

    def _state_arrays(self) -> dict:
        """The resume state as ``constant_data`` arrays (dims ``mcmc_chain``, ``param``)."""
        dim, chains = self.potential.dim, self.chains
        # the sampler's state is float64 (Pyro takes its dtype from the potential's value)
        theta = np.full((len(chains), dim), np.nan, np.float64)
        inverse_mass = np.full((len(chains), dim), np.nan, np.float64)
        position = np.full((len(chains), dim), np.nan, np.float64)
        step_size = np.full(len(chains), np.nan)
        rng = np.zeros((len(chains), torch.get_rng_state().numel()), np.uint8)
        for i, chain in enumerate(chains):
            if chain.state is not None:
                theta[i] = chain.state.theta.cpu().numpy()
                inverse_mass[i] = chain.state.inverse_mass.cpu().numpy()
                if chain.state.position is not None:
                    position[i] = chain.state.position.cpu().numpy()
                step_size[i] = chain.state.step_size
                rng[i] = chain.state.rng.numpy()
        out = {"init": (("mcmc_chain", "param"), torch.stack(
                   [chain.init for chain in chains]).cpu().numpy()),
               "theta": (("mcmc_chain", "param"), theta),
               "inverse_mass": (("mcmc_chain", "param"), inverse_mass),
               "position": (("mcmc_chain", "param"), position),
               "step_size": (("mcmc_chain",), step_size),
               "rng": (("mcmc_chain", "rng_byte"), rng),
               "draws": (("mcmc_chain",), np.array([c.draws for c in chains], np.int64)),
               "seconds": (("mcmc_chain",), np.array([c.seconds for c in chains]))}
        cuda = [chain.state.rng_cuda for chain in chains
                if chain.state is not None and chain.state.rng_cuda is not None]
        if cuda:
            rng_cuda = np.zeros((len(chains), cuda[0].numel()), np.uint8)
            for i, chain in enumerate(chains):
                if chain.state is not None and chain.state.rng_cuda is not None:
                    rng_cuda[i] = chain.state.rng_cuda.numpy()
            out["rng_cuda"] = (("mcmc_chain", "rng_cuda_byte"), rng_cuda)
        return {STATE_PREFIX + name: value for name, value in out.items()}

    @classmethod
    def from_inference_data(cls, potential: FlatPotential, settings: MCMCSettings,
                            idata) -> MCMCRun:
        """The run stored in ``idata`` (a file written by :meth:`inference_data`)."""
        const = getattr(idata, "constant_data", None)
        if const is None or STATE_PREFIX + "init" not in const:
            raise InputError("the file holds no hmc/nuts state (not an hmc/nuts run of this "
                             "package, or written before its first kept draw)")

        def state(name):
            return np.asarray(const[STATE_PREFIX + name].values)

        inits = torch.from_numpy(state("init"))
        if inits.shape != (settings.chains, potential.dim):
            raise InputError(f"the file's chains have {inits.shape[1]} parameters x "
                             f"{inits.shape[0]} chains; this model needs {potential.dim} x "
                             f"{settings.chains}")
        run = cls(potential, settings, inits)
        pp, post = idata.posterior_predictive, getattr(idata, "posterior", None)
        stats = getattr(idata, "sample_stats", None)
        done = state("draws")
        stored = 0
        for i, chain in enumerate(run.chains):
            if not done[i]:
                continue
            n = int(done[i])
            chain.images = [np.asarray(pp["image"].values[stored, :n], np.float32)]
            for name in STATS:
                if stats is not None and name in stats:
                    values = np.asarray(stats[name].values[stored, :n])
                    kind = {"diverging": bool, "n_steps": int, "tree_depth": int}.get(name, float)
                    chain.stats[name] = values.astype(kind).tolist()
            if potential.model.infer_sigma:
                chain.log_sigma = np.log(np.asarray(post["sigma"].values[stored, :n])).tolist()
            if settings.save_params:
                sites = [np.asarray(post[name].values[stored, :n]).reshape(n, -1)
                         for name in potential.shapes]
                if potential.model.infer_sigma:
                    sites.append(np.asarray(chain.log_sigma)[:, None])
                chain.params = [torch.from_numpy(np.concatenate(sites, axis=1)).to(potential.dtype)]
            rng_cuda = state("rng_cuda")[i] if STATE_PREFIX + "rng_cuda" in const else None
            # files written before positions were kept hold none: theta is mapped anew
            position = state("position")[i] if STATE_PREFIX + "position" in const else None
            chain.state = ChainState(
                torch.from_numpy(state("theta")[i]).to(potential.device, STATE_DTYPE),
                float(state("step_size")[i]),
                torch.from_numpy(state("inverse_mass")[i]).to(potential.device, STATE_DTYPE),
                torch.from_numpy(state("rng")[i]),
                None if rng_cuda is None else torch.from_numpy(rng_cuda),
                None if position is None or np.isnan(position).any()
                else torch.from_numpy(position).to(potential.device, STATE_DTYPE))
            chain.seconds = float(state("seconds")[i])
            stored += 1
        return run


def run_chain(potential: FlatPotential, settings: MCMCSettings, index: int, chain: Chain,
              progress: bool, checkpoint: Callable[[], None] | None = None) -> None:
    """Run chain ``index`` to ``settings.draws`` kept draws: from its last kept state
    (adaptation off, its RNG stream restored) or from its start (seed
    :func:`~.settings.chain_seed` of ``settings.seed`` and ``index``, full warmup).
    ``checkpoint()`` is called every ``checkpoint_every`` kept draws and at the end."""
    s = settings
    infer_sigma = potential.model.infer_sigma
    # a dense mass matrix is a function of the chain's start: a resumed chain rebuilds it
    whitening = whitened(potential, chain.init) if s.mass_matrix == "gauss_newton" else None
    if chain.state is not None:
        chain.state.restore_rng(potential.device)
        start, warmup = chain.state.position, 0
        if start is None:
            start = chain.state.theta if whitening is None else whitening.to_u(chain.state.theta)
    else:
        pyro.set_rng_seed(chain_seed(s.seed, index))
        start = chain.init if whitening is None else torch.zeros_like(chain.init)
        warmup = s.warmup
    kernel = make_kernel(s, whitening or potential, chain.state, whitening is not None)

    def hook(kernel, params, stage, i):
        if stage.startswith("Sample") and (i + 1) % s.thin == 0:
            chain.keep(params[SITE], kernel, infer_sigma, whitening)
            if checkpoint and chain.draws % s.checkpoint_every == 0:
                checkpoint()

    mcmc = MCMC(kernel, num_samples=(s.draws - chain.draws) * s.thin, warmup_steps=warmup,
                initial_params={SITE: start}, hook_fn=hook,
                disable_progbar=not progress_bars(progress), save_params=[])
    begin = time.perf_counter()
    try:
        mcmc.run()
    finally:
        chain.seconds += time.perf_counter() - begin
    if checkpoint and chain.draws % s.checkpoint_every:
        checkpoint()


@dataclass
class _ChainTask:
    """One chain for a worker process (see :meth:`MCMCRun.run`)."""

    potential: FlatPotential
    settings: MCMCSettings
    index: int
    chain: Chain
    store: Path | None


def _chain_path(store: Path, index: int) -> Path:
    return store / f"chain{index}.pt"


def _run_chain_task(task: _ChainTask) -> Chain:
    """Run a chain in a worker; save it to the task's store at every checkpoint; return it
    with its draws rendered."""
    chain, potential = task.chain, task.potential

    def save():
        chain.render(potential, task.settings.save_params)
        with atomic_path(_chain_path(task.store, task.index)) as tmp:
            torch.save(chain, tmp)

    run_chain(potential, task.settings, task.index, chain, progress=False,
              checkpoint=None if task.store is None else save)
    chain.render(potential, task.settings.save_params)
    return chain
