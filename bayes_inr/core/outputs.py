"""Output paths checked before any work, and one writer per output at a time.

Policy, per command line tool (every check runs before any work):

- an output **file** (``fit --out``, ``data --out``, ``baselines --out``;
  :func:`check_output`): not a directory, its directory exists and is writable, and an
  existing file is refused unless the user passes ``--overwrite`` (``fit --resume``
  writes to the file it resumes). An unfinished map/bbb/mcd fit's checkpoint
  ``.OUT.ckpt`` is refused likewise (continue it with ``--resume``, or ``--overwrite``).
- an output **directory** (``report --out``, ``demo --out``, ``analysis/table1.py
  --out``; :func:`check_output_dir`): not a file, and created with its missing parents
  inside a writable directory. The tool owns the files it writes there: a rerun replaces
  them (a report or demo is regenerated from its inputs; table1 reuses the runs whose
  hashes match); other files are left alone.

While a run works towards an output it holds a lock file beside it (``.NAME.lock``,
holding the process id); a second run for the same path is refused with one line. A lock
left by a process that no longer exists (a SIGKILL) is taken over.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from .errors import InputError


def check_output(path, *, overwrite: bool = False, exists_ok: bool = False,
                 what: str = "output") -> Path:
    """Raise :class:`InputError` unless ``path`` can be written as a new (or, with
    ``overwrite`` or ``exists_ok``, replaced) file; returns it as a Path."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{what} {path} is a directory; give a file path")
    parent = path.parent
    if not parent.is_dir():
        raise InputError(f"{what} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{what} {path}: directory {parent} is not writable")
    if path.exists() and not (overwrite or exists_ok):
        raise InputError(f"{what} {path} exists; pass --overwrite to replace it, or choose "
                         "another path")
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"{what} {path} is not writable")
    return path


def check_output_dir(path, what: str = "--out") -> Path:
    """Raise :class:`InputError` unless ``path`` is a writable directory or can be made
    one (with its missing parents); returns it as a Path. Creates nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{what} {path} is a file; give a directory")
    existing = next(p for p in (path, *path.parents) if p.exists())  # "." or "/" at last
    if not existing.is_dir():
        raise InputError(f"{what} {path}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{what} {path}: directory {existing} is not writable")
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


@contextlib.contextmanager
def output_lock(path) -> Iterator[Path]:
    """Hold ``.NAME.lock`` beside ``path`` for the duration of the block.

    Raises :class:`InputError` when a live process holds it; a stale lock (its process is
    gone) is replaced. The lock is removed when the block ends, however it ends.
    """
    path = Path(path)
    lock = path.with_name(f".{path.name}.lock")
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and pid != os.getpid() and _alive(pid):
                raise InputError(f"another run (process {pid}) is writing {path}; wait for it "
                                 f"or choose another output") from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
    else:
        raise InputError(f"cannot lock {path}: {lock} keeps reappearing")
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
        yield lock
    finally:
        lock.unlink(missing_ok=True)
