"""Memory guard: refuse a problem that cannot fit before allocating it.

:func:`check_memory` estimates the bytes of the big allocations of a problem of side N
with V views and D detectors, and raises :class:`~bayes_inr.core.errors.InputError` (one
line: the estimate, its parts and the memory available) when they exceed the memory
available now. It is called where those allocations happen, so every command line
tool is covered: rendering a phantom (:func:`bayes_inr.data.sample.phantom_images`), building
the projection matrix (:func:`bayes_inr.physics.radon.projection_matrix`) and building a fit's
model (:func:`bayes_inr.inference.single.build_model`). The parts, upper bounds rather than exact
counts:

- ``phantom``: rendering on a grid of P points per pixel side (P = 2 k for the
  benchmark phantoms with a k times finer projection grid): (P N)^2 points x
  :data:`BYTES_PER_POINT` (coordinates, rotated coordinates, the image, a mask);
- ``operator``: the sparse projection matrix, nnz <= V D 3N (a ray meets at most
  about 2N pixels of a line kernel, more of a strip; measured at N = 16-128: 0.42 V D 2N
  for ``line``, 0.63 for ``linear``, 1.11 for ``strip``) times :data:`BYTES_PER_NONZERO`
  (a float32 value and an int32 index for the cached scipy matrix, the torch matrix,
  its transpose and the build's temporaries);
- ``network``: the INR's activations, N^2 pixels x width x 4 bytes x 3 (values,
  pre-activations, gradients) x the larger of (depth + 1) layers x ``batch`` particles
  in training and :data:`RENDER_CHUNK` draws rendered per pass.

Available memory is ``MemAvailable`` of ``/proc/meminfo`` (memory the kernel can hand
out without swapping), lowered to the cgroup's limit minus its usage where a cgroup v2
limit is set; host memory only (the operator is always built on the host).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..core.errors import InputError

BYTES_PER_POINT = 48
BYTES_PER_NONZERO = 40
RENDER_CHUNK = 10
"""Draws rendered per pass by :func:`bayes_inr.inference.svi.draw_images`."""


def estimate(size: int, views: int = 0, *, detectors: int = 0, points: int = 0,
             width: int = 0, depth: int = 0, batch: int = 1) -> dict[str, int]:
    """Estimated bytes of each part (see the module docstring) that the arguments ask for.

    Parameters
    ----------
    size, views, detectors : int
        Image side N, views V (0: no operator) and detectors D (0: the default for N).
    points : int
        Rendering points per pixel side of a phantom (0: no phantom).
    width, depth, batch : int
        The network (width 0: none) and the particles of one training step.
    """
    from .geometry import default_detectors

    parts = {}
    if points:
        parts["phantom"] = (points * size) ** 2 * BYTES_PER_POINT
    if views:
        nnz = views * (detectors or default_detectors(size)) * 3 * size
        parts["operator"] = nnz * BYTES_PER_NONZERO
    if width:
        per_layer = size * size * width * 4 * 3
        parts["network"] = per_layer * max((depth + 1) * batch, RENDER_CHUNK)
    return parts


def available_bytes() -> int:
    """Memory available to this process now (see the module docstring)."""
    try:
        with open("/proc/meminfo") as handle:
            fields = dict(line.split(":", 1) for line in handle)
        free = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    cgroup = Path("/sys/fs/cgroup")
    try:
        limit = int((cgroup / "memory.max").read_text())
        free = min(free, limit - int((cgroup / "memory.current").read_text()))
    except (OSError, ValueError):  # no cgroup v2 limit ("max") or no such files
        pass
    return free


def format_bytes(count: float) -> str:
    """``count`` bytes in binary units, e.g. ``1.2 TiB``."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
    power = 0
    while count >= 1024 and power < len(units) - 1:
        count, power = count / 1024, power + 1
    return f"{count:.1f} {units[power]}"


def check_memory(size: int, views: int = 0, **parts) -> None:
    """Raise :class:`InputError` when the :func:`estimate` of ``size``, ``views`` and
    ``parts`` exceeds :func:`available_bytes`."""
    need = estimate(size, views, **parts)
    total, free = sum(need.values()), available_bytes()
    if total > free:
        detail = ", ".join(f"{name} {format_bytes(value)}" for name, value in need.items())
        problem = f"{size} x {size} image" + (f" with {views} views" if views else "")
        raise InputError(f"a {problem} needs about {format_bytes(total)} of memory ({detail}) "
                         f"but {format_bytes(free)} is available; choose a smaller size or "
                         "fewer views")
