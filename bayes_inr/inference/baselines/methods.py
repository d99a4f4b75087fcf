"""The classical methods by name, and their iteration counts."""

from __future__ import annotations

import numpy as np

from ...core.errors import InputError, check_choice

METHODS = ("fbp", "cgls", "em", "sart", "sirt", "tv")
ITERATIVE = ("cgls", "em", "sart", "sirt", "tv")

# Chosen on the validation split (phantoms 0-4 of data/benchmark_128.nc: noiseless,
# "fine" protocol, 5 and 20 views) by `python analysis/tune_baselines.py`: the count
# with the best mean PSNR over both view counts (per view count: cgls 50 / 20,
# em 50 / 50, sart 100 / 10, sirt 1000 / 500). Sweep results are in
# analysis/results/baseline_iterations.csv; rerun the script if the benchmark changes.
# TV: the benchmark_128 20-view entry of models/baselines/tv.toml (chosen by
# analysis/tune_tv.py), used when no dataset is named; tv_settings() gives the entry of a
# dataset and view count.
DEFAULT_ITERATIONS: dict[str, int] = {"cgls": 20, "em": 50, "sart": 20, "sirt": 500,
                                      "tv": 500}


def check_iterations(method: str, iterations) -> int | None:
    """Validate ``iterations`` for ``method``; ``None`` gives the method's default."""
    check_choice("method", method, METHODS)
    if method not in ITERATIVE:
        if iterations is not None:
            raise InputError(f"{method} takes no iterations, got {iterations!r}")
        return None
    if iterations is None:
        return DEFAULT_ITERATIONS[method]
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) \
            or iterations <= 0:
        raise InputError(f"iterations must be a positive integer, got {iterations!r}")
    return int(iterations)
