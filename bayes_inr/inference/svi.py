"""Stochastic variational inference: MAP, Bayes-by-backprop and Monte Carlo dropout.

One training loop serves every SVI method (:class:`~bayes_inr.inference.single.SVIFit`);
they differ only in the guide (:mod:`bayes_inr.inference.guides`) and, for BBB, in the
KL factor xi that scales prior and guide terms of the latent sites together.

Checkpoints. With a ``checkpoint`` callback, :func:`fit_svi` hands it the complete
training state (:func:`training_state`) after step 1, every ``checkpoint_every``
steps after that, after the last step, and, when SIGINT or SIGTERM arrives, after
the step that was running (it then raises KeyboardInterrupt). ``resume`` continues
from such a state: on the same device and thread count the result is bit-identical
to an uninterrupted fit. :func:`save_checkpoint` and :func:`load_checkpoint` write and
read it as one file (``torch.save``, atomically, read back with ``weights_only``).
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoDelta
from pyro.optim import ExponentialLR
from tqdm.auto import tqdm

from ..core.atomic import atomic_path
from ..core.errors import InputError, Interrupted
from ..core.progress import progress_bars
from ..core.workers import raise_interrupt
from ..model.ctmodel import CTModel
from .guides import sample_params

CHECKPOINT_FORMAT = "bayes_inr svi checkpoint 1"
"""The ``format`` entry of a checkpoint file; another value is refused."""


class DivergenceError(RuntimeError):
    """The loss became NaN or infinite; the guide holds the last good state."""

    def __init__(self, step: int, result: SVIResult):
        super().__init__(f"loss diverged (non-finite) at step {step}; "
                         f"kept the state saved after step {result.steps}")
        self.step = step
        self.result = result


@dataclass
class SVIResult:
    """A trained guide, its loss history and timings."""

    guide: object
    losses: list[float] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0

    @property
    def seconds_per_step(self) -> float:
        return self.seconds / max(self.steps, 1)


def fit_svi(model: CTModel, guide, *, steps: int = 2000, lr: float = 1e-3,
            lr_final: float = 0.1, kl_factor: float = 1.0, particles: int = 1,
            checkpoint_every: int = 100, checkpoint: Callable[[dict], None] | None = None,
            resume: dict | None = None, progress: bool = True, desc: str = "svi"
            ) -> SVIResult:
    """Train ``guide`` (a Pyro guide of ``model``, e.g. from :mod:`.guides`) on ``model``.

    ``kl_factor`` (xi) scales the prior and guide terms of the latent sites together,
    never the likelihood (Bayes-by-backprop's KL factor; 1 is the plain ELBO).

    Adam with the learning rate decaying exponentially from ``lr`` to ``lr * lr_final``
    over ``steps``. The param store is cleared first. A non-finite loss restores the
    parameters saved at the last checkpoint step and raises :class:`DivergenceError`.

    ``checkpoint(state)``, when given, receives :func:`training_state` after step 1,
    every ``checkpoint_every`` steps and after the last one; in the main thread SIGINT
    and SIGTERM then wait for the running step to end, the state is handed over and
    KeyboardInterrupt raised (a second signal interrupts at once). ``resume``, such a
    state, continues that fit (same model, method and settings).
    """
    pyro.clear_param_store()
    xi = kl_factor
    model.latent_scale = xi
    train_guide = poutine.scale(guide, scale=xi) if xi != 1.0 else guide
    # plain Adam: ClippedAdam clamps every gradient element, which the 1/sigma^2 scale of the
    # likelihood turns into a badly distorted step
    optim = ExponentialLR({"optimizer": torch.optim.Adam, "optim_args": {"lr": lr},
                           "gamma": lr_final ** (1.0 / max(steps, 1))})
    svi = SVI(model, train_guide, optim, Trace_ELBO(num_particles=particles))
    result = SVIResult(guide)
    store = pyro.get_param_store()
    earlier = 0.0
    start = time.perf_counter()
    try:
        with pyro.validation_enabled(False):
            if resume is not None:
                earlier = _restore(resume, train_guide, optim, result)
            saved, saved_step = _params(store), result.steps
            if progress and not progress_bars(progress):  # a log: one line, not a bar
                print(f"{desc}: {steps - result.steps} steps to go", file=sys.stderr,
                      flush=True)
            with _deferred_interrupts(checkpoint is not None) as interrupted, \
                    tqdm(range(result.steps, steps), initial=result.steps, total=steps,
                         disable=not progress_bars(progress), desc=desc, unit="step") as bar:
                for step in bar:
                    loss = svi.step()
                    optim.step()
                    if not math.isfinite(loss):
                        store.set_state({"params": saved,
                                         "constraints": store.get_state()["constraints"]})
                        result.steps = saved_step
                        raise DivergenceError(step, result)
                    result.losses.append(loss)
                    result.steps = step + 1
                    stop = interrupted()
                    if step % checkpoint_every == 0 or step == steps - 1 or stop:
                        saved, saved_step = _params(store), result.steps
                        bar.set_postfix(loss=f"{loss:.4g}")
                        if checkpoint is not None:
                            seconds = earlier + time.perf_counter() - start
                            checkpoint(training_state(result, optim, seconds))
                    if stop:
                        raise Interrupted(f"interrupted after step {result.steps}")
    finally:
        model.latent_scale = 1.0
        result.seconds = earlier + time.perf_counter() - start
    return result


def _params(store) -> dict[str, torch.Tensor]:
    """Copies of the param store's unconstrained values."""
    return {name: value.detach().clone() for name, value in store.named_parameters()}


def training_state(result: SVIResult, optim, seconds: float) -> dict:
    """Everything a fit needs to continue bit-identically after ``result.steps`` steps:
    ``step``, ``losses``, ``seconds`` (training time so far), ``params`` (the param
    store's unconstrained values), ``optim`` (Adam and learning-rate scheduler state per
    parameter) and ``rng`` (torch, CUDA when in use, and Python RNG states; the package
    draws nothing from numpy's global RNG)."""
    return {"step": result.steps, "losses": list(result.losses), "seconds": seconds,
            "params": _params(pyro.get_param_store()),
            "optim": copy.deepcopy(optim.get_state()), "rng": _rng_state()}


def _restore(state: dict, guide, optim, result: SVIResult) -> float:
    """Load ``state`` (:func:`training_state`) into the param store, ``optim``, the RNGs
    and ``result``; returns its training seconds."""
    store = pyro.get_param_store()
    with poutine.block():
        guide()  # registers the guide's parameters with their constraints (uses the RNG)
    if set(state["params"]) != set(store.keys()):
        raise InputError("the checkpoint's parameters are not those of this model and guide")
    params = {name: value.to(store[name].device).requires_grad_()
              for name, value in state["params"].items()}
    store.set_state({"params": params, "constraints": store.get_state()["constraints"]})
    optim.set_state(state["optim"])
    _set_rng_state(state["rng"])
    result.losses, result.steps = list(state["losses"]), int(state["step"])
    return float(state["seconds"])


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "random": random.getstate()}
    if torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["random"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def _deferred_interrupts(enabled: bool) -> Iterator[Callable[[], bool]]:
    """Yield a function telling whether SIGINT or SIGTERM arrived: while ``enabled`` (and
    in the main thread, where handlers can be set) a first signal only sets that flag, a
    second raises KeyboardInterrupt at once; an ignored signal stays ignored. The previous
    handlers come back at the end; a flag still set then raises KeyboardInterrupt."""
    received: list[int] = []
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return

    def handler(signum, frame):
        if received:
            raise_interrupt(signum, frame)
        received.append(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)
                if signal.getsignal(sig) is not signal.SIG_IGN}
    try:
        yield lambda: bool(received)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    if received:
        raise Interrupted(f"signal {received[0]}")


def checkpoint_path(out) -> Path:
    """Where a fit writing ``out`` keeps its checkpoint: ``.OUT.ckpt`` beside it."""
    out = Path(out)
    return out.with_name(f".{out.name}.ckpt")


def save_checkpoint(state: dict, path) -> None:
    """Write ``state`` (plain values and tensors) to ``path`` atomically, marked with
    :data:`CHECKPOINT_FORMAT`."""
    with atomic_path(path) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)


def load_checkpoint(path) -> dict:
    """Read a checkpoint of :func:`save_checkpoint`; :class:`InputError` when it is not one."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"checkpoint {path} not found") from None
    except Exception as err:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        detail = str(err).splitlines()[0] if str(err) else ""
        raise InputError(f"{path} is not a bayes_inr SVI checkpoint (unreadable: "
                         f"{type(err).__name__} {detail})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path} is not a bayes_inr SVI checkpoint")
    return state


@torch.no_grad()
def draw_images(model: CTModel, guide, draws: int, chunk: int = 10) -> np.ndarray:
    """Images (S, N, N) rendered from ``draws`` guide draws, ``chunk`` draws per pass.

    A point guide (MAP) gives a single draw.
    """
    sizes = [1] if isinstance(guide, AutoDelta) else [min(chunk, draws - i)
                                                      for i in range(0, draws, chunk)]
    images = []
    for size in sizes:
        params = sample_params(guide, size)
        params.pop("sigma", None)
        images.append(model.inr.render(params).cpu().numpy())
    return np.concatenate(images)
