"""Hyperparameter grids (TOML files under ``models/sweeps/``) and their trials.

A grid file has an optional ``[base]`` table of fixed
:class:`~bayes_inr.inference.config.FitConfig` fields, applied on top of the model config
``config`` when given (a path relative to the grid file, or a shipped configuration's name
such as ``"mcd_20"``), and a ``[grid]`` table of field -> list of values (``base = "PATH"``
alone is short for a ``[base]`` table with only ``config``)::

    [base]
    config = "../mcd_20.toml"
    steps = 300
    [grid]
    activation = ["relu", "sine"]
    dropout = [0.2, 0.5]

The trials are the cartesian product of the lists (in file order, last field fastest).
A trial's id is a hash of its whole configuration, so a sweep can tell which trials it
has already run. Values are validated when a trial runs, not here: a bad value makes
that trial fail, not the sweep.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import tomllib
from dataclasses import dataclass

from ..core.errors import InputError
from ..inference.config import FitConfig, load_config
from ..model.catalog import resolve

FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(FitConfig)}
"""FitConfig field -> its type name, for coercing TOML integers to floats."""


@dataclass(frozen=True)
class Trial:
    """One point of a grid: the base configuration with ``changes`` applied."""

    base: dict
    changes: dict

    @property
    def values(self) -> dict:
        """The trial's full configuration (unvalidated)."""
        return self.base | self.changes

    @property
    def id(self) -> str:
        """12 hex digits of the SHA-1 of the configuration (fields sorted, threads left out:
        they do not change the result)."""
        values = {k: v for k, v in self.values.items() if k != "threads"}
        return hashlib.sha1(json.dumps(values, sort_keys=True).encode()).hexdigest()[:12]

    def config(self) -> FitConfig:
        """The validated :class:`FitConfig`; :class:`InputError` for a bad value."""
        return FitConfig(**self.values)


@dataclass(frozen=True)
class Grid:
    """A base configuration and the values to sweep per field."""

    base: FitConfig
    values: dict[str, list]

    def trials(self) -> list[Trial]:
        """Every distinct combination of the values, in file order (last field fastest)."""
        base = dataclasses.asdict(self.base)
        trials = [Trial(base, dict(zip(self.values, combo, strict=True)))
                  for combo in itertools.product(*self.values.values())]
        return list({trial.id: trial for trial in trials}.values())


def _coerce(name: str, value):
    if FIELD_TYPES[name] == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def load_grid(path) -> Grid:
    """Read a grid file (see the module docstring); :class:`InputError` if malformed."""
    path = resolve(path, kind="sweeps", what="grid file")
    try:
        spec = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"grid file {path} is not valid TOML: {err}") from None
    unknown = sorted(set(spec) - {"base", "grid"})
    if unknown:
        raise InputError(f"grid file {path}: unknown keys {', '.join(unknown)} "
                         "(expected base and [grid])")
    base, fixed = spec.get("base", {}), {}
    if isinstance(base, str):
        base_path = _base_config(path, base)
    elif isinstance(base, dict):
        base_path, fixed = base.pop("config", None), base
        base_path = _base_config(path, base_path) if base_path else None
    else:
        raise InputError(f"grid file {path}: base must be a config path or a table")
    grid = spec.get("grid")
    if not isinstance(grid, dict) or not grid:
        raise InputError(f"grid file {path} needs a non-empty [grid] table")
    for table, names in (("[base]", fixed), ("[grid]", grid)):
        unknown = sorted(set(names) - set(FIELD_TYPES))
        if unknown:
            raise InputError(f"grid file {path}: {table} has unknown fields "
                             f"{', '.join(unknown)}")
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise InputError(f"grid file {path}: [grid] {name} must be a non-empty list")
    fixed = {name: _coerce(name, value) for name, value in fixed.items()}
    config = load_config(base_path, **fixed) if base_path else FitConfig(**fixed)
    return Grid(config, {name: [_coerce(name, v) for v in values]
                         for name, values in grid.items()})


def _base_config(grid_path, name: str):
    """The base configuration ``name`` of the grid file ``grid_path``: a file relative to
    the grid file, else a shipped configuration (:func:`~bayes_inr.model.catalog.resolve`)."""
    beside = grid_path.parent / name
    return beside if beside.is_file() else resolve(name)
