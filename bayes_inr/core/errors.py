"""Input validation: one exception type and the checks every entry point shares."""

from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np


class InputError(ValueError):
    """Bad user input: a wrong shape, a non-finite value, an unknown option.

    Command-line tools print its message on one line and exit with status 2.
    """


class Interrupted(KeyboardInterrupt):
    """The KeyboardInterrupt that this package's signal handlers raise (SIGTERM, or a signal
    that stops training). ``except KeyboardInterrupt`` catches it as it catches Ctrl-C.

    A subclass because CPython (3.11) ends a process by SIGINT, whatever its exit status,
    once a plain KeyboardInterrupt has passed through code that a C extension runs with
    ``PyRun_*``, even if the program then caught it: a handled SIGTERM in a fit's first step
    then exited with -2 instead of 130. A subclass is not marked.
    """


def exit_status(command: Callable[[], object]) -> int:
    """Run ``command``: 0 when it returns, 2 with its message as one line ``error: ...`` on
    stderr when it raises :class:`InputError` (the command lines' contract)."""
    try:
        command()
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def check_finite(name: str, array) -> None:
    """Raise :class:`InputError` if ``array`` holds NaN or infinity."""
    values = np.asarray(array.detach().cpu() if hasattr(array, "detach") else array)
    if values.size == 0:
        raise InputError(f"{name} is empty")
    bad = ~np.isfinite(values)
    if bad.any():
        raise InputError(f"{name} holds {int(bad.sum())} non-finite values (NaN or inf)")


def check_choice(name: str, value: str, choices) -> str:
    """Return ``value`` if it is one of ``choices``, else raise :class:`InputError`."""
    if value not in choices:
        raise InputError(f"unknown {name} {value!r}; choose one of {', '.join(sorted(choices))}")
    return value
