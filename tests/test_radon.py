import astra
import numpy as np
import pytest
import torch

from bayes_inr import Geometry, InputError, RadonOperator
from bayes_inr.physics.radon import projection_matrix


@pytest.mark.parametrize("size", [15, 16, 33])
@pytest.mark.parametrize("projector", ["linear", "strip"])
def test_matches_astra_create_sino(size, projector):
    geometry = Geometry(size, 7)
    op = RadonOperator(geometry, projector)
    images = np.random.default_rng(size).random((3, size, size)).astype(np.float32)
    ours = op(torch.from_numpy(images)).numpy()
    vol, proj = geometry.astra_geometries()
    pid = astra.create_projector(projector, proj, vol)
    for image, sino in zip(images, ours, strict=True):
        sid, ref = astra.create_sino(image, pid)
        astra.data2d.delete(sid)
        ref = ref * geometry.pixel_size
        assert np.linalg.norm(sino - ref) / np.linalg.norm(ref) <= 1e-5
    astra.projector.delete(pid)


def test_dot_product_test_float64():
    geometry = Geometry(24, 9)
    op = RadonOperator(geometry, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(24, 24, generator=gen, dtype=torch.float64)
    y = torch.rand(9, geometry.n_detectors, generator=gen, dtype=torch.float64)
    lhs = (op(x) * y).sum()
    rhs = (x * op.adjoint(y)).sum()
    assert torch.isclose(lhs, rhs, rtol=1e-12)


def test_gradient_is_adjoint_and_batched():
    geometry = Geometry(20, 6)
    op = RadonOperator(geometry)
    x = torch.rand(2, 3, 20, 20, requires_grad=True)
    sino = op(x)
    assert sino.shape == (2, 3, 6, geometry.n_detectors)
    weights = torch.randn_like(sino)
    (sino * weights).sum().backward()
    torch.testing.assert_close(x.grad, op.adjoint(weights))
    # batched projection equals image-by-image projection
    torch.testing.assert_close(sino[1, 2], op(x[1, 2]))


def test_adjoint_gradient_and_gradcheck():
    op = RadonOperator(Geometry(8, 3), dtype=torch.float64)
    y = torch.rand(3, op.geometry.n_detectors, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(op.adjoint, (y,))


def test_units_are_resolution_independent():
    # a centred disc of radius 0.5: central line integral is its chord length, 1.0
    values = []
    for size in (32, 64):
        geometry = Geometry(size, 1)
        xy = geometry.pixel_centers()
        disc = (np.hypot(xy[..., 0], xy[..., 1]) <= 0.5).astype(np.float32)
        sino = RadonOperator(geometry)(torch.from_numpy(disc)).numpy()[0]
        values.append(sino.max())
    assert values == pytest.approx([1.0, 1.0], abs=0.05)


def test_orientation_y_up():
    geometry = Geometry(32, 2)  # angles 0 and pi/2
    image = np.zeros((32, 32), np.float32)
    image[2, 25] = 1.0  # top right: x > 0, y > 0
    sino = RadonOperator(geometry)(torch.from_numpy(image)).numpy()
    s = geometry.detector_positions()
    x, y = geometry.pixel_centers()[2, 25]
    assert s[sino[0].argmax()] == pytest.approx(x, abs=geometry.pixel_size)
    assert s[sino[1].argmax()] == pytest.approx(y, abs=geometry.pixel_size)


def test_matrix_is_cached():
    geometry = Geometry(16, 4)
    assert projection_matrix(geometry) is projection_matrix(Geometry(16, 4))


def test_bad_input():
    op = RadonOperator(Geometry(16, 4))
    with pytest.raises(InputError, match="shape"):
        op(torch.zeros(15, 16))
    with pytest.raises(InputError, match="shape"):
        op.adjoint(torch.zeros(5, op.geometry.n_detectors))
    with pytest.raises(InputError, match="projector"):
        RadonOperator(Geometry(16, 4), "cone")
    for bad in (0, -3):
        with pytest.raises(InputError, match="n_views"):
            Geometry(16, bad)
    with pytest.raises(InputError, match="size"):
        Geometry(0, 4)


def test_mean_attenuation_recovers_image_mean():
    # every view integrates the whole image: the sinogram fixes the image mean
    geometry = Geometry(24, 7)
    image = np.random.default_rng(0).uniform(size=(24, 24)).astype(np.float32)
    sino = RadonOperator(geometry)(torch.from_numpy(image)).numpy()
    assert geometry.mean_attenuation(sino) == pytest.approx(image.mean(), rel=1e-3)
