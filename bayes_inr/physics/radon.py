"""The differentiable Radon transform: astra's projection matrix applied in torch.

The operator is built once per geometry from astra's CPU projector matrix
(``linear``: Joseph's line kernel, ``strip``: area-weighted strips, ``line``:
Siddon line lengths), scaled to the package's units (see :mod:`bayes_inr.physics.geometry`),
and applied as a sparse CSR product on CPU or CUDA. The backward pass applies the
exact transpose, held as its own CSR matrix so that both directions are row-major
sparse products.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import scipy.sparse as sp
import torch

from ..core.errors import InputError, check_choice
from .geometry import Geometry
from .resources import check_memory

PROJECTORS = ("linear", "strip", "line")


BLOCK_NONZEROS = 2**22
"""Work (estimated nonzeros, or ray-pixel steps) of one block of views handed to one astra
call: astra's loops run in C, and between blocks a Python signal handler (SIGTERM in
``bayes_inr.fit``) gets to run, so a build or a projection stops promptly."""


def view_blocks(geometry: Geometry, per_view: int) -> list[slice]:
    """Consecutive blocks of the views of ``geometry``, about :data:`BLOCK_NONZEROS` work
    each at ``per_view`` per view."""
    step = max(1, BLOCK_NONZEROS // per_view)
    return [slice(start, start + step) for start in range(0, geometry.n_views, step)]


@functools.lru_cache(maxsize=16)
def projection_matrix(geometry: Geometry, projector: str = "linear") -> sp.csr_matrix:
    """The (V D) x (N N) projection matrix of ``geometry`` in package units (cached).

    Refused with :class:`InputError` when it would not fit in memory
    (:func:`bayes_inr.physics.resources.check_memory`); built in blocks of views
    (:func:`view_blocks`).
    """
    check_choice("projector", projector, PROJECTORS)
    check_memory(geometry.size, geometry.n_views, detectors=geometry.n_detectors)
    blocks = [_matrix_block(geometry, projector, views)
              for views in view_blocks(geometry, 2 * geometry.size * geometry.n_detectors)]
    return sp.vstack(blocks, format="csr", dtype=np.float32)


def _matrix_block(geometry: Geometry, projector: str, views: slice) -> sp.csr_matrix:
    """The rows of the views ``views`` of the projection matrix (astra, package units)."""
    import astra

    vol, proj = geometry.astra_geometries(views=views)
    pid = astra.create_projector(projector, proj, vol)
    mid = astra.projector.matrix(pid)
    try:
        matrix = astra.matrix.get(mid).astype(np.float64) * geometry.pixel_size
    finally:
        astra.matrix.delete(mid)
        astra.projector.delete(pid)
    return sp.csr_matrix(matrix, dtype=np.float32)


def torch_csr(matrix: sp.csr_matrix, device=None, dtype=torch.float32) -> torch.Tensor:
    """A scipy CSR matrix as a torch sparse CSR tensor, with 32-bit indices where they fit:
    torch converts 64-bit indices on every product on CPU, which doubles a mat-vec's cost."""
    index = np.int32 if max(matrix.nnz, *matrix.shape) < 2**31 else np.int64
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(
            torch.from_numpy(matrix.indptr.astype(index)),
            torch.from_numpy(matrix.indices.astype(index)),
            torch.from_numpy(matrix.data),
            size=matrix.shape,
            dtype=dtype,
        ).to(device)


def _scipy_csr(matrix: torch.Tensor) -> sp.csr_matrix:
    """A torch sparse CSR tensor as a scipy CSR matrix (on the CPU)."""
    return sp.csr_matrix((matrix.values().cpu().numpy(), matrix.col_indices().cpu().numpy(),
                          matrix.crow_indices().cpu().numpy()), shape=tuple(matrix.shape))


def _rebuild(geometry: Geometry, projector: str, a: sp.csr_matrix, at: sp.csr_matrix,
             device: str, dtype: torch.dtype) -> RadonOperator:
    """A :class:`RadonOperator` from its pickled parts (see ``RadonOperator.__reduce__``)."""
    return RadonOperator._from_matrices(geometry, projector, torch_csr(a, device, dtype),
                                        torch_csr(at, device, dtype))


class _SparseApply(torch.autograd.Function):
    """``y = M x`` on the columns of ``x``, with ``M^T`` for the gradient."""

    @staticmethod
    def forward(ctx, x, matrix, transpose):
        ctx.transpose = transpose
        ctx.matrix = matrix
        return matrix @ x

    @staticmethod
    def backward(ctx, grad):
        return _SparseApply.apply(grad, ctx.transpose, ctx.matrix), None, None


class RadonOperator:
    """Differentiable parallel-beam projector ``A`` and its adjoint ``A^T``.

    Parameters
    ----------
    geometry : Geometry
        Image and sinogram geometry.
    projector : {"linear", "strip", "line"}
        astra CPU projector the matrix is taken from.
    device, dtype
        Where and in what precision the operator is applied.

    Examples
    --------
    >>> op = RadonOperator(Geometry(64, 20))
    >>> op(torch.rand(8, 64, 64)).shape
    torch.Size([8, 20, 92])
    """

    def __init__(self, geometry: Geometry, projector: str = "linear", device="cpu",
                 dtype=torch.float32):
        self.geometry = geometry
        self.projector = projector
        matrix = projection_matrix(geometry, projector)
        self._a = torch_csr(matrix, device, dtype)
        self._at = torch_csr(matrix.T.tocsr(), device, dtype)

    def __reduce__(self):
        # pickled (for worker processes) as scipy matrices: torch's own unpickling of sparse
        # CSR tensors warns that they are in beta, once per tensor
        return _rebuild, (self.geometry, self.projector, _scipy_csr(self._a),
                          _scipy_csr(self._at), str(self.device), self.dtype)

    @property
    def matrices(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The sparse CSR matrices ``A`` and ``A^T`` (for products written by hand)."""
        return self._a, self._at

    @property
    def device(self) -> torch.device:
        return self._a.device

    @property
    def dtype(self) -> torch.dtype:
        return self._a.dtype

    @classmethod
    def _from_matrices(cls, geometry: Geometry, projector: str, a: torch.Tensor,
                       at: torch.Tensor) -> RadonOperator:
        new = object.__new__(cls)
        new.geometry, new.projector, new._a, new._at = geometry, projector, a, at
        return new

    def to(self, device=None, dtype=None) -> RadonOperator:
        """A copy of the operator on ``device`` in ``dtype``."""
        return self._from_matrices(self.geometry, self.projector,
                                   self._a.to(device=device, dtype=dtype),
                                   self._at.to(device=device, dtype=dtype))

    def _apply(self, x: torch.Tensor, inner: tuple[int, int], outer: tuple[int, int],
               matrix, transpose, what: str) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(x, dtype=self.dtype, device=self.device)
        if tuple(x.shape[-2:]) != inner:
            raise InputError(f"{what} shape {tuple(x.shape)} does not match the geometry: "
                             f"expected (..., {inner[0]}, {inner[1]})")
        batch = x.shape[:-2]
        cols = x.reshape(-1, inner[0] * inner[1]).T
        out = _SparseApply.apply(cols, matrix, transpose)
        return out.T.reshape(*batch, *outer)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Project images (..., N, N) to sinograms (..., V, D)."""
        g = self.geometry
        return self._apply(images, g.image_shape, g.sino_shape, self._a, self._at, "image")

    def adjoint(self, sinograms: torch.Tensor) -> torch.Tensor:
        """Back-project sinograms (..., V, D) to images (..., N, N): the exact transpose."""
        g = self.geometry
        return self._apply(sinograms, g.sino_shape, g.image_shape, self._at, self._a, "sinogram")

    __call__ = forward

    def norm_squared(self, iterations: int = 50, seed: int = 0) -> float:
        """Largest eigenvalue of ``A^T A`` by power iteration (for step sizes)."""
        gen = torch.Generator(device="cpu").manual_seed(seed)
        x = torch.rand(self.geometry.image_shape, generator=gen).to(self.device, self.dtype)
        value = 0.0
        with torch.no_grad():
            for _ in range(iterations):
                y = self.adjoint(self.forward(x))
                value = float(y.norm())
                x = y / value
        return value
