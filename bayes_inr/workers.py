"""Independent jobs (ensemble members, sweep trials) on worker processes or Ray tasks.

One mechanism: :func:`run_tasks` applies a picklable function to every task and yields
``(index, result)`` as tasks finish. Backends:

- ``local`` with ``workers == 1``: one task after another in this process;
- ``local`` with ``workers > 1``: a pool of that many spawned processes;
- ``ray``: Ray tasks of ``threads`` CPUs each, on a local Ray instance (``workers x
  threads`` CPUs) or, with ``address``, on an existing cluster (``ray.init(address)``).

Every task runs with ``torch.set_num_threads(threads)``, and worker processes start with
OpenMP/BLAS limited to ``threads`` threads (NumPy, astra), so that ``workers`` workers of
``threads`` threads do not oversubscribe the cores. An exception raised by a task
propagates to the caller; pending tasks are cancelled.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

import torch

from .errors import InputError, check_choice

BACKENDS = ("local", "ray")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def threads_per_worker(workers: int, threads: int = 0) -> int:
    """``threads`` if set, else the machine's cores shared evenly by ``workers`` (>= 1)."""
    if workers < 1 or threads < 0:
        raise InputError(f"workers must be >= 1 and threads >= 0, got {workers} and {threads}")
    return threads or max(1, (os.cpu_count() or 1) // workers)


def call_with_threads(function: Callable, threads: int, task):
    """``function(task)`` with ``threads`` torch threads (the previous count is restored)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return function(task)
    finally:
        torch.set_num_threads(previous)


def run_tasks(function: Callable, tasks: Sequence, *, workers: int = 1, threads: int = 1,
              backend: str = "local", address: str | None = None) -> Iterator[tuple[int, object]]:
    """Yield ``(index, function(tasks[index]))`` for every task, in order of completion.

    Parameters
    ----------
    function : callable
        A module-level (picklable) function of one task.
    tasks : sequence
        Picklable task arguments.
    workers : int
        Concurrent tasks (local processes, or the CPUs of a local Ray instance / threads).
    threads : int
        torch threads per task.
    backend : str
        ``local`` or ``ray``.
    address : str, optional
        Ray only: the address of an existing cluster (``auto``, ``ray://host:10001``).
    """
    check_choice("backend", backend, BACKENDS)
    if workers < 1 or threads < 1:
        raise InputError(f"workers and threads must be >= 1, got {workers} and {threads}")
    if address is not None and backend != "ray":
        raise InputError("--address needs --backend ray")
    if not tasks:
        return iter(())
    if backend == "ray":
        return _ray_tasks(function, tasks, workers, threads, address)
    if workers == 1:
        return ((i, call_with_threads(function, threads, task)) for i, task in enumerate(tasks))
    return _pool_tasks(function, tasks, workers, threads)


@contextlib.contextmanager
def _thread_limits(threads: int) -> Iterator[None]:
    """Set the OpenMP/BLAS thread variables that processes started inside inherit."""
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(THREAD_VARIABLES, str(threads)))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _pool_tasks(function, tasks, workers, threads):
    context = multiprocessing.get_context("spawn")  # no forked torch/OpenMP state
    pool = ProcessPoolExecutor(min(workers, max(len(tasks), 1)), mp_context=context)
    try:
        with _thread_limits(threads):  # the pool spawns its processes on submit
            pending = {pool.submit(call_with_threads, function, threads, task): i
                       for i, task in enumerate(tasks)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield pending.pop(future), future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _ray_tasks(function, tasks, workers, threads, address):
    try:
        import ray
    except ImportError:
        raise InputError("the ray backend needs Ray: pip install 'bayes_inr[distributed]'"
                         ) from None
    started = not ray.is_initialized()
    if started:
        local = {"num_cpus": workers * threads} if address is None else {}
        ray.init(address=address, include_dashboard=False, log_to_driver=False, **local)
    remote = ray.remote(num_cpus=threads)(call_with_threads)
    pending = {remote.remote(function, threads, task): i for i, task in enumerate(tasks)}
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                yield pending.pop(ref), ray.get(ref)
    finally:
        for ref in pending:
            ray.cancel(ref)
        if started:
            ray.shutdown()
