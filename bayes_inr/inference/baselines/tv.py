"""Total-variation reconstruction (the sixth classical method).

TV is isotropic total-variation regularised least squares with the box [0, 1],

    min_x  0.5 ||A x - p||^2 + w sum_pixels |grad x|   subject to  0 <= x <= 1,

with ``A`` the package's operator (line integrals in image units) and ``grad`` forward
differences with Neumann boundary (the difference across the last row or column is 0),
solved by the primal-dual method of Chambolle and Pock (:func:`tv_solve`, written here
on torch CSR products). Its weight ``w`` and iteration count are chosen on validation
data per dataset and view count and stored in ``models/baselines/tv.toml`` (see
:func:`tv_settings`; ``python analysis/tune_tv.py`` writes the sweep).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ...core.errors import InputError, check_choice
from ...core.threads import torch_threads
from ...model.catalog import shipped_dir
from ...physics.geometry import Geometry
from ...physics.radon import RadonOperator
from .methods import DEFAULT_ITERATIONS, METHODS, check_iterations

DEFAULT_TV_WEIGHT = 1.75e-4
_TV_DTYPE = torch.float32  # 1.4 to 2 times faster than float64 here, same PSNR to 4 decimals


TV_STEP_RATIO = 300.0
TV_ADAPT_EVERY = 100
TV_ADAPT_UNTIL = 2000
"""Step sizes of :func:`tv_solve`: the initial ratio ``tau / sigma`` and its adaptation.

Measured on validation phantom 0 of ``data/benchmark_128.nc``, as the PSNR of the iterate
against the solution (the lowest objective of several long runs). With a fixed ratio the
best value depends on the weight and the view count: at 20 views and weight 3e-4, ratio 300
gave 91 dB after 1000 iterations, ratio 10 needed 2000 iterations for 58 dB and ratio 1 (the
textbook choice) 8000 for 63 dB; but at 5 views and weight 5.6e-5 the best ratio was 10000 to
30000, and ratio 300 gave 39 dB after 4000 iterations. Adapting the ratio every 100
iterations up to 2000, from 300 (:func:`tv_solve`), gave 53 to 124 dB after 2000 iterations
for weights 1e-5, 5.6e-5, 3e-4, 3e-3 and 3e-2 at 5 and 20 views (fixed 300: 30 to 97 dB),
and as much as fixed 300 after 1000 iterations where 300 is best. Scaling the data block of
``K`` against the gradient block (``K = [s A; grad]``, ``s^2`` from 1 to 8 / ||A||^2) changed
nothing measurable, and Pock and Chambolle's diagonal preconditioning (alpha = 1) was about
as slow as ratio 1, so neither is used; the residual-balancing rule of Goldstein et al.
(2013) drove the ratio the wrong way here.
"""

_TV_SAFETY = 0.98  # tau sigma ||K||^2 = 0.98 < 1 (the norm is a power-iteration estimate)


class TVSettings(NamedTuple):
    """TV weight and iteration count for one dataset and view count, and where they came from."""

    weight: float
    iterations: int
    source: str


def check_weight(method: str, weight) -> float | None:
    """Validate the TV ``weight``; ``None`` gives ``DEFAULT_TV_WEIGHT``. Other methods take none."""
    check_choice("method", method, METHODS)
    if method != "tv":
        if weight is not None:
            raise InputError(f"{method} takes no weight, got {weight!r}")
        return None
    if weight is None:
        return DEFAULT_TV_WEIGHT
    if isinstance(weight, bool) or not isinstance(weight, (int, float, np.integer, np.floating)) \
            or not math.isfinite(weight) or weight < 0:
        raise InputError(f"weight must be a finite number >= 0, got {weight!r}")
    return float(weight)


def tv_settings(dataset: str, views: int, path: str | os.PathLike | None = None) -> TVSettings:
    """The TV weight and iteration count chosen on validation for ``dataset`` at ``views``.

    ``dataset`` is the benchmark's name, its file name without the extension (for example
    ``"benchmark_128"``; a path is reduced to that). The values are read from
    ``models/baselines/tv.toml`` (or ``path``), written from the sweep of
    ``analysis/tune_tv.py``, in tables keyed by dataset and view count
    (``[benchmark_128.20]``). Fallback, with a ``UserWarning``: for a view count without an
    entry, the entry of the same dataset with the nearest view count (the larger on a tie);
    for a dataset without entries (or no settings file),
    ``DEFAULT_TV_WEIGHT`` and ``DEFAULT_ITERATIONS["tv"]``, the values chosen for
    ``benchmark_128`` at 20 views.
    """
    import tomllib
    import warnings

    if isinstance(views, bool) or not isinstance(views, (int, np.integer)) or views <= 0:
        raise InputError(f"views must be a positive integer, got {views!r}")
    name = Path(os.fspath(dataset)).name
    name = name[:-3] if name.endswith(".nc") else name
    path = Path(path) if path is not None else shipped_dir() / "baselines" / "tv.toml"
    table: dict = {}
    if path.is_file():
        try:
            table = tomllib.loads(path.read_text()).get(name, {})
        except tomllib.TOMLDecodeError as err:
            raise InputError(f"cannot parse {path}: {err}") from None
    entries = {}
    for key, entry in table.items():
        if not (isinstance(key, str) and key.isdigit() and isinstance(entry, dict)):
            raise InputError(f"{path}: [{name}.{key}] must be a table keyed by a view count")
        try:
            entries[int(key)] = (check_weight("tv", entry["weight"]),
                                 check_iterations("tv", entry["iterations"]))
        except (KeyError, InputError) as err:
            raise InputError(f"{path}: [{name}.{key}] needs a weight >= 0 and a positive "
                             f"integer iterations ({err})") from None
    if int(views) in entries:
        return TVSettings(*entries[int(views)], f"{path.name} [{name}.{views}]")
    if entries:
        nearest = min(entries, key=lambda v: (abs(v - views), -v))
        source = f"{path.name} [{name}.{nearest}] (no entry for {views} views)"
        warnings.warn(f"TV settings for {name} at {views} views: using {source}", stacklevel=2)
        return TVSettings(*entries[nearest], source)
    source = f"built-in defaults (no TV settings for {name!r} in {path})"
    warnings.warn(f"TV settings for {name} at {views} views: using {source}", stacklevel=2)
    return TVSettings(DEFAULT_TV_WEIGHT, DEFAULT_ITERATIONS["tv"], source)


def _grad(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Forward differences of ``x`` (H, W, ...) along rows and columns into ``out`` (2, H, W, ...).

    Only the interior entries are written: the last row of ``out[0]`` and the last column of
    ``out[1]`` must be (and stay) zero, the Neumann boundary.
    """
    torch.sub(x[1:], x[:-1], out=out[0, :-1])
    torch.sub(x[:, 1:], x[:, :-1], out=out[1, :, :-1])
    return out


def _grad_adjoint(g: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``grad^T g`` (minus the divergence) for ``g`` with the zero boundary of :func:`_grad`."""
    torch.neg(g[0], out=out)
    out[1:] += g[0, :-1]
    out -= g[1]
    out[:, 1:] += g[1, :, :-1]
    return out


@torch.no_grad()
def tv_norm_squared(forward: Callable, adjoint: Callable, shape: Sequence[int], dtype=torch.float64,
                    device="cpu", iterations: int = 200, seed: int = 0) -> float:
    """``||K||^2`` for ``K = [A; grad]`` (largest eigenvalue of ``A^T A + grad^T grad``).

    Power iteration from a seeded random image of ``shape`` (H, W, ...); ``forward`` and
    ``adjoint`` apply ``A`` and ``A^T`` as in :func:`tv_solve`.
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(tuple(shape), generator=gen, dtype=dtype).to(device)
    g = torch.zeros((2, *shape), dtype=dtype, device=device)
    gt = torch.empty_like(x)
    value = 0.0
    for _ in range(iterations):
        x /= x.norm()
        y = adjoint(forward(x)) + _grad_adjoint(_grad(x, g), gt)
        value = float((x * y).sum())  # Rayleigh quotient, increases to ||K||^2
        x = y
    return value


@torch.no_grad()
def tv_solve(forward: Callable, adjoint: Callable, data: torch.Tensor, weight, iterations: int,
             shape: Sequence[int], norm_squared: float | None = None,
             ratio=TV_STEP_RATIO, adapt_every: int = TV_ADAPT_EVERY,
             adapt_until: int = TV_ADAPT_UNTIL, callback: Callable | None = None) -> torch.Tensor:
    """Box-constrained isotropic TV least squares by Chambolle-Pock.

    Solves ``min_x 0.5 ||forward(x) - data||^2 + w sum_pixels |grad x|`` subject to
    ``0 <= x <= 1`` for images ``x`` of ``shape`` (H, W, ...): the trailing dimensions are a
    batch of independent problems, each with its own weight when ``weight`` is an array of
    that batch shape (a number applies to all). ``grad`` is forward differences along H and W
    with Neumann boundary. ``forward`` maps an image tensor to the shape of ``data`` (whose
    trailing dimensions are the same batch) and ``adjoint`` is its exact transpose
    (``forward = adjoint = identity`` is TV denoising).

    The method is the primal-dual algorithm of Chambolle and Pock (2011, algorithm 1 with
    theta = 1) on ``K = [A; grad]``, ``F(Kx) = 0.5 ||Ax - p||^2 + w ||grad x||_{2,1}`` and ``G``
    the box, from ``x = 0`` and zero duals, with ``tau sigma ||K||^2 = 0.98`` and the step
    ratio ``tau / sigma`` starting at ``ratio`` (per problem where an array). Every
    ``adapt_every`` iterations up to ``adapt_until`` the ratio of each problem moves halfway (in
    log) to ``(|dx| / |dy|)^2``, the squared ratio of the distances the primal and dual
    iterates moved since the last update (the primal-weight rule of PDLP, Applegate et al.
    2021: it balances the two terms of the method's error bound). After ``adapt_until`` the
    steps are fixed, so the usual convergence guarantee holds; ``adapt_every = 0`` keeps
    ``ratio`` throughout. ``norm_squared`` is ``||K||^2`` (:func:`tv_norm_squared`, run when
    not given). ``callback(iteration, x)``, if given, sees the primal iterate after every
    iteration (1-based); it must not modify it. Returns the last primal iterate, which lies in
    [0, 1], with the dtype and device of ``data``.
    """
    data = torch.as_tensor(data)
    dtype, device = data.dtype, data.device
    shape = tuple(int(n) for n in shape)
    batch = shape[2:]
    if len(shape) < 2 or min(shape[:2]) < 2:
        raise InputError(f"TV needs images of at least 2 x 2 pixels, got shape {shape}")
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) \
            or iterations < 0:
        raise InputError(f"iterations must be a non-negative integer, got {iterations!r}")

    def per_problem(name, value):
        value = torch.as_tensor(value, dtype=dtype, device=device)
        try:
            return value.expand(batch).clone()
        except RuntimeError:
            raise InputError(f"{name} shape {tuple(value.shape)} does not match the batch "
                             f"{batch}") from None

    w = per_problem("weight", weight)
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise InputError("weight must be finite and >= 0")
    r = per_problem("ratio", ratio)
    if not bool(torch.isfinite(r).all()) or not bool((r > 0).all()):
        raise InputError(f"ratio must be finite and > 0, got {ratio!r}")
    if norm_squared is None:
        norm_squared = tv_norm_squared(forward, adjoint, shape, dtype, device)
    if not norm_squared > 0:
        raise InputError(f"norm_squared must be positive, got {norm_squared}")
    product = _TV_SAFETY / norm_squared  # tau sigma

    x = torch.zeros(shape, dtype=dtype, device=device)
    x_bar = torch.zeros_like(x)  # extrapolated primal point 2 x_new - x_old
    x_new = torch.empty_like(x)
    q = torch.zeros_like(data)  # dual of the data block
    z = torch.zeros((2, *shape), dtype=dtype, device=device)  # dual of the gradient block
    g = torch.zeros_like(z)  # its boundary entries stay zero (see _grad)
    step = torch.empty_like(x)
    scale = torch.empty(shape, dtype=dtype, device=device)
    tiny = torch.finfo(dtype).tiny  # |z| = 0 gives w / tiny, clamped to 1 (or 0 for w = 0)
    adapting = adapt_every > 0 and adapt_until > 0
    if adapting:
        anchors = (x.clone(), q.clone(), z.clone())
    sigma = tau = sigma_data = shrink = None
    for iteration in range(1, iterations + 1):
        if sigma is None:  # (new) step sizes
            sigma = torch.sqrt(product / r)
            tau = torch.sqrt(product * r)
            shrink = 1.0 / (1.0 + sigma)
            sigma_data = data * (sigma * shrink)
        # dual: q <- prox of sigma F1* (q + sigma A x_bar), F1 = 0.5 ||. - p||^2
        q.addcmul_(forward(x_bar), sigma).mul_(shrink).sub_(sigma_data)
        # dual: z <- projection of z + sigma grad x_bar onto {|z_pixel| <= w}
        z.addcmul_(_grad(x_bar, g), sigma)
        torch.mul(z[0], z[0], out=scale).addcmul_(z[1], z[1]).sqrt_().clamp_min_(tiny)
        torch.div(w, scale, out=scale).clamp_max_(1.0)
        z.mul_(scale)
        # primal: x <- clip(x - tau K^T (q, z)); x_bar <- 2 x_new - x
        _grad_adjoint(z, step).add_(adjoint(q))
        torch.addcmul(x, step, tau, value=-1.0, out=x_new).clamp_(0.0, 1.0)
        torch.sub(x_new, x, out=x_bar).add_(x_new)
        x, x_new = x_new, x
        if adapting and iteration % adapt_every == 0 and iteration <= adapt_until:
            dx = _batch_norm(x - anchors[0], 2)
            dy = torch.sqrt(_batch_norm(q - anchors[1], data.ndim - len(batch)) ** 2
                            + _batch_norm(z - anchors[2], 3) ** 2)
            moved = (dx > 0) & (dy > 0)
            target = torch.where(moved, (dx / dy.clamp_min(tiny)) ** 2, r)
            r = torch.sqrt(r * target.clamp_min(tiny))  # halfway in log
            anchors[0].copy_(x)
            anchors[1].copy_(q)
            anchors[2].copy_(z)
            sigma = None
        if callback is not None:
            callback(iteration, x)
    return x


def _batch_norm(t: torch.Tensor, leading: int) -> torch.Tensor:
    """Euclidean norm over the first ``leading`` dimensions (one value per batch entry)."""
    return torch.linalg.vector_norm(t, dim=tuple(range(leading))) if leading else t.abs()


def _radon_callables(op: RadonOperator) -> tuple[Callable, Callable]:
    """``A`` and ``A^T`` on images (N, N, k) and sinograms (V D, k), as torch CSR products."""
    a, at = op.matrices
    size = op.geometry.size

    def forward(x):
        cols = x.reshape(size * size, -1)
        return torch.mv(a, cols[:, 0]).unsqueeze(1) if cols.shape[1] == 1 else a @ cols

    def adjoint(y):
        out = torch.mv(at, y[:, 0]).unsqueeze(1) if y.shape[1] == 1 else at @ y
        return out.reshape(size, size, -1)

    return forward, adjoint


@functools.lru_cache(maxsize=16)
def _tv_operator(geometry: Geometry, projector: str) -> tuple[RadonOperator, float]:
    """The operator of ``geometry`` for TV and ``||[A; grad]||^2`` (cached per geometry)."""
    op = RadonOperator(geometry, projector, dtype=_TV_DTYPE)
    forward, adjoint = _radon_callables(op)
    return op, tv_norm_squared(forward, adjoint, (geometry.size, geometry.size, 1), _TV_DTYPE)


def tv_reconstruct(sinograms, geometry: Geometry, weights, iterations: int,
                   projector: str = "linear", callback: Callable | None = None,
                   threads: int | None = 1) -> np.ndarray:
    """TV reconstructions of a batch of sinograms (k, V, D), one weight each (or one for all).

    The batch is solved together (one sparse product with k columns per step, faster per
    image than k single solves), in float32. ``callback(iteration, images)`` sees the iterates
    as a (k, N, N) tensor view. Returns (k, N, N) images in [0, 1]; :func:`reconstruct` is the
    single-image entry point with validation.

    ``threads``: torch CPU threads for the solve, restored afterwards (``None``: as set). The
    default is 1: a step is a few small operations, so a second thread gains little, and on a
    busy machine threads that wait on each other at every sparse product made a 128 x 128
    solve 2.5 to 40 times slower than one thread (measured on the 2-core development machine).
    """
    with torch_threads(threads):
        op, norm_squared = _tv_operator(geometry, projector)
    forward, adjoint = _radon_callables(op)
    p = torch.as_tensor(np.asarray(sinograms), dtype=_TV_DTYPE)
    if p.ndim != 3 or tuple(p.shape[1:]) != geometry.sino_shape:
        raise InputError(f"sinograms shape {tuple(p.shape)} must be (k, "
                         f"{geometry.n_views}, {geometry.n_detectors})")
    k = p.shape[0]
    data = p.reshape(k, -1).T.contiguous()
    try:
        w = torch.as_tensor(np.broadcast_to(np.asarray(weights, dtype=np.float64), (k,)).copy(),
                            dtype=_TV_DTYPE)
    except ValueError:
        raise InputError(f"weights must be one number or {k}, got {weights!r}") from None
    wrapped = None if callback is None else (lambda i, x: callback(i, x.permute(2, 0, 1)))
    with torch_threads(threads):
        x = tv_solve(forward, adjoint, data, w, iterations, (geometry.size, geometry.size, k),
                     norm_squared, callback=wrapped)
    return x.permute(2, 0, 1).numpy().copy()


# ---------------------------------------------------------------------------- command line
