"""Independent jobs (ensemble members, sweep trials) on worker processes or Ray tasks.

One mechanism: :func:`run_tasks` applies a picklable function to every task and yields
``(index, result)`` as tasks finish. Backends:

- ``local`` with ``workers == 1``: one task after another in this process;
- ``local`` with ``workers > 1``: that many spawned processes, one task at a time each;
- ``ray``: Ray tasks of ``threads`` CPUs each, on a local Ray instance (``workers x
  threads`` CPUs) or, with ``address``, on an existing cluster (``ray.init(address)``).

Every task runs with ``torch.set_num_threads(threads)``, and worker processes start with
OpenMP/BLAS limited to ``threads`` threads (NumPy, astra), so that ``workers`` workers of
``threads`` threads do not oversubscribe the cores. An exception raised by a task
propagates to the caller.

Stopping: when the caller stops iterating (an exception, a KeyboardInterrupt, or closing
the generator), running and pending tasks are stopped: local worker processes are
terminated (killed after :data:`GRACE` seconds), Ray tasks cancelled with ``force`` and a
Ray instance started here shut down (SIGTERM keeps the caller's handler, not the one
``ray.init`` installs, which aborts). A
local worker ignores SIGINT (the caller decides) and exits by itself within
:data:`WATCH_INTERVAL` seconds once its parent process is gone (a watchdog thread on the
parent's pid; portable, and unlike Linux's ``PR_SET_PDEATHSIG`` it does not depend on
which thread of the parent started it), so even a SIGKILL of the caller leaves no worker.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shlex
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection, wait

from tqdm import tqdm

from .errors import InputError, Interrupted, check_choice
from .threads import torch_threads

BACKENDS = ("local", "ray")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
GRACE = 3.0
"""Seconds a terminated worker process gets before it is killed."""
WATCH_INTERVAL = 0.5
"""Seconds between a worker's checks that its parent process is alive."""


def raise_interrupt(signum, frame):
    """A signal handler (for SIGTERM) that stops the main thread as Ctrl-C does
    (:class:`~bayes_inr.core.errors.Interrupted`)."""
    raise Interrupted(f"signal {signum}")


def rerun_command(module: str, argv: Sequence[str] | None = None) -> str:
    """The shell command ``python -m module ARGV`` (default: this process's arguments)."""
    return shlex.join(["python", "-m", module, *(sys.argv[1:] if argv is None else argv)])


def threads_per_worker(workers: int, threads: int = 0) -> int:
    """``threads`` if set, else the machine's cores shared evenly by ``workers`` (>= 1)."""
    if workers < 1 or threads < 0:
        raise InputError(f"workers must be >= 1 and threads >= 0, got {workers} and {threads}")
    return threads or max(1, (os.cpu_count() or 1) // workers)


def check_run_settings(workers: int, threads: int, backend: str = "local",
                       address: str | None = None) -> None:
    """Raise :class:`InputError` unless :func:`run_tasks` accepts these settings."""
    check_choice("backend", backend, BACKENDS)
    if workers < 1 or threads < 1:
        raise InputError(f"workers and threads must be >= 1, got {workers} and {threads}")
    if address is not None and backend != "ray":
        raise InputError("--address needs --backend ray")
    if backend == "ray":
        _import_ray()


def _import_ray():
    """The ``ray`` module, or :class:`InputError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise InputError("the ray backend needs Ray: pip install 'bayes_inr[distributed]'"
                         ) from None
    return ray


def call_with_threads(function: Callable, threads: int, task):
    """``function(task)`` with ``threads`` torch threads (the previous count is restored)."""
    with torch_threads(threads):
        return function(task)


def run_tasks(function: Callable, tasks: Sequence, *, workers: int = 1, threads: int = 1,
              backend: str = "local", address: str | None = None) -> Iterator[tuple[int, object]]:
    """Yield ``(index, function(tasks[index]))`` for every task, in order of completion.

    Settings are checked at the call; the work starts on iteration. Use the generator in
    ``with contextlib.closing(...)`` so that an interruption stops the workers at once.

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
    check_run_settings(workers, threads, backend, address)
    if not tasks or (backend == "local" and workers == 1):
        return ((i, call_with_threads(function, threads, task)) for i, task in enumerate(tasks))
    if backend == "ray":
        return _ray_tasks(function, tasks, workers, threads, address)
    return _pool_tasks(function, tasks, min(workers, len(tasks)), threads)


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


def _exit_with_parent(parent: int) -> None:
    """Start a daemon thread that ends this process once ``parent`` is no longer its parent."""
    def watch():
        while os.getppid() == parent:
            time.sleep(WATCH_INTERVAL)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _worker(connection: Connection, function: Callable, threads: int, parent: int) -> None:
    """A worker process: run the tasks received on ``connection`` until it closes.

    Sends ``(True, result)`` or ``(False, exception)`` (with the worker's traceback as a
    note) for every task.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent stops the workers
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # progress bars here take a thread lock, not tqdm's default multiprocessing semaphore,
    # which a terminated worker would leak (the resource tracker then warns on stderr)
    tqdm.set_lock(threading.RLock())
    _exit_with_parent(parent)
    while True:
        try:
            task = connection.recv()
        except EOFError:  # the parent closed its end: no more tasks
            return
        try:
            reply = (True, call_with_threads(function, threads, task))
        except Exception as err:
            err.add_note(f"in worker process {os.getpid()}:\n{traceback.format_exc()}")
            reply = (False, err)
        connection.send(reply)


def _start_workers(pool: list[tuple[multiprocessing.Process, Connection]], function: Callable,
                   count: int, threads: int) -> None:
    """Append ``count`` spawned worker processes (no forked torch/OpenMP state) and their
    pipes to ``pool`` (each before it starts, so that an interruption can stop it)."""
    context = multiprocessing.get_context("spawn")
    with _thread_limits(threads):
        for _ in range(count):
            ours, theirs = context.Pipe()
            process = context.Process(target=_worker, name="bayes_inr-worker",
                                      args=(theirs, function, threads, os.getpid()))
            pool.append((process, ours))
            process.start()
            theirs.close()  # the worker holds the only other end: its death is an EOF here


def _stop_workers(pool: list[tuple[multiprocessing.Process, Connection]]) -> None:
    """Terminate the workers of ``pool``; kill any still alive after :data:`GRACE` s."""
    for process, connection in pool:
        connection.close()
        if process.pid is not None and process.is_alive():
            process.terminate()
    deadline = time.monotonic() + GRACE
    for process, _ in pool:
        if process.pid is None:
            continue
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()


def _pool_tasks(function, tasks, workers, threads):
    """:func:`run_tasks` on ``workers`` spawned processes, stopped however it ends."""
    todo = list(enumerate(tasks))[::-1]  # pop() hands tasks out in order
    pool: list[tuple[multiprocessing.Process, Connection]] = []
    running: dict[Connection, int] = {}  # a busy worker's pipe -> its task index

    def hand_out(connection: Connection) -> None:
        if todo:
            index, task = todo.pop()
            running[connection] = index
            with contextlib.suppress(OSError):  # a dead worker: its pipe's EOF reports it
                connection.send(task)

    try:
        _start_workers(pool, function, workers, threads)
        for _, connection in pool:
            hand_out(connection)
        while running:
            for connection in wait(list(running)):
                index = running.pop(connection)
                try:
                    ok, value = connection.recv()
                except EOFError:
                    raise RuntimeError(f"a worker process died while running task {index}"
                                       ) from None
                if not ok:
                    raise value
                hand_out(connection)
                yield index, value
    finally:
        _stop_workers(pool)


@contextlib.contextmanager
def _keeping_sigterm_handler() -> Iterator[None]:
    """Restore this process's SIGTERM handler after the block: ``ray.init`` installs its
    own, with which a SIGTERM aborts the driver (exit 134) instead of stopping it."""
    handler = signal.getsignal(signal.SIGTERM)
    main = threading.current_thread() is threading.main_thread()
    try:
        yield
    finally:
        if main and handler is not None:
            signal.signal(signal.SIGTERM, handler)


def _ray_tasks(function, tasks, workers, threads, address):
    """:func:`run_tasks` as Ray tasks; pending ones are force-cancelled however it ends."""
    ray = _import_ray()
    started = not ray.is_initialized()
    if started:
        local = {"num_cpus": workers * threads} if address is None else {}
        with _keeping_sigterm_handler():
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
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()
