"""The shipped configurations: named TOML files installed with the package.

The repository's top-level ``models/`` is installed as ``bayes_inr/models`` (package data),
so a shipped configuration can be named from anywhere::

    python -m bayes_inr.fit --config mcd_20        # models/mcd_20.toml
    python -m bayes_inr.sweep --grid sweeps/mcd_cpu
    python -m bayes_inr.configs                    # list them, with their first comment line

A name is a path under ``models/`` without ``.toml``. :func:`resolve` accepts a file path
first (an existing file always wins), then a shipped name, with or without a leading
``models/`` and the ``.toml`` suffix, so the repository's documented commands
(``--config models/mcd_20.toml``) work outside the repository too.

The top-level configurations are named ``METHOD_VIEWS``: chosen on the validation split
for that method at that view count. :func:`validated` picks the one nearest a view count;
``python -m bayes_inr.fit`` uses it when no ``--config`` is given.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

from ..core.errors import InputError

SUFFIX = ".toml"


def shipped_dir() -> Path:
    """The directory of the shipped configurations."""
    return Path(str(resources.files("bayes_inr") / "models"))


def shipped(kind: str | None = None) -> dict[str, Path]:
    """Name -> file of every shipped configuration; ``kind`` keeps one folder
    (``"sweeps"``, ``"baselines"``) or, with ``""``, the top-level fit configurations."""
    root = shipped_dir()
    names = {path.relative_to(root).with_suffix("").as_posix(): path
             for path in sorted(root.rglob(f"*{SUFFIX}"))}
    if kind is None:
        return names
    return {name: path for name, path in names.items()
            if (name.rpartition("/")[0] == kind)}


def resolve(name_or_path, kind: str | None = None, what: str = "config") -> Path:
    """The file for a path or a shipped name; one-line :class:`InputError` naming the
    shipped choices (of ``kind``, see :func:`shipped`) when neither exists."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    name = path.as_posix().removeprefix("models/").removesuffix(SUFFIX)
    found = shipped().get(name)
    if found is not None:
        return found
    choices = ", ".join(shipped(kind)) or "none"
    raise InputError(f"{what} {name_or_path}: no such file and no shipped configuration of "
                     f"that name (shipped: {choices}; python -m bayes_inr.configs lists them)")


def summary(path: Path) -> str:
    """The first comment line of a configuration file, without its ``#``."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
    return ""


def validated(method: str, views: int, data: str | None = None) -> str | None:
    """The name of the shipped configuration ``METHOD_VIEWS`` whose view count is nearest
    ``views`` on a log scale (sparse-view difficulty grows with the ratio of view counts;
    a tie goes to the larger count), or None when ``method`` has none.

    ``data`` names a kind of data with configurations of its own, ``METHOD_DATA_VIEWS``
    (``"real"``: chosen on the real-CT validation slices). They compete on view count with
    the method's others and win a tie: real data at 30 views take ``mcd_real_20`` over
    ``mcd_20``, and at 5 views still ``mcd_5``.
    """
    families = (method, f"{method}_{data}") if data else (method,)
    found = {}  # name -> (view count, whether it was chosen on ``data``)
    for name in shipped(""):
        prefix, _, count = name.rpartition("_")
        if prefix in families and count.isdigit() and int(count) > 0:
            found[name] = (int(count), prefix != method)
    if not found:
        return None
    return min(found, key=lambda name: (abs(math.log(found[name][0] / views)), -found[name][0],
                                        not found[name][1]))
