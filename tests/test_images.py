"""Tests for bayes_inr.data.images: loading ground-truth images from .npy, raster and DICOM
files."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
from pydicom.filebase import DicomFile
from pydicom.filewriter import write_dataset
from skimage.io import imsave

from bayes_inr.core.errors import InputError
from bayes_inr.data.images import (
    AIR_HU,
    DEFAULT_HU_WINDOW,
    air_level,
    example_dicom_path,
    load_image,
    window_air_level,
)


@pytest.fixture(scope="module")
def ct_path():
    return example_dicom_path()


@pytest.fixture(scope="module")
def ct_hu(ct_path):
    """Hounsfield units of CT_small.dcm computed by hand from pydicom."""
    ds = pydicom.dcmread(ct_path)
    return ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


# ---------------------------------------------------------------- DICOM


def test_example_dicom_is_the_bundled_ct_slice(ct_path):
    assert ct_path.name == "CT_small.dcm"
    assert ct_path.is_file()
    ds = pydicom.dcmread(ct_path)
    assert ds.Modality == "CT"
    # CT_small stores raw values with intercept -1024, so the rescale matters.
    assert float(ds.RescaleIntercept) == -1024.0


def test_ct_small_default_window(ct_path, ct_hu):
    image = load_image(ct_path)
    assert image.shape == (128, 128)
    assert image.dtype == np.float32
    assert image.min() >= 0.0 and image.max() <= 1.0
    # Default window (-1000, 1000) HU: value = (1 + HU / 1000) / 2 = mu / mu_water / 2.
    expected = np.clip((1.0 + ct_hu / 1000.0) / 2.0, 0.0, 1.0)
    np.testing.assert_allclose(image, expected, atol=1e-6)
    # Top-left corner is lung (about -830 HU): close to air.
    assert image[:16, :16].mean() < 0.15
    # Bottom rows are paraspinal muscle / soft tissue (about 0 to 60 HU): close to water.
    assert 0.42 < image[96:, :].mean() < 0.58
    # The vertebra reaches dense bone and is clipped at 1000 HU.
    assert image.max() == 1.0


def test_dicom_rescale_tags_are_applied(tmp_path, ct_path, ct_hu):
    ds = pydicom.dcmread(ct_path)
    ds.RescaleSlope = 2
    ds.RescaleIntercept = -2048
    path = tmp_path / "rescaled.dcm"
    ds.save_as(path)
    image = load_image(path, window=(-3000, 3000))
    expected = np.clip((2.0 * (ct_hu + 1024.0) - 2048.0 + 3000.0) / 6000.0, 0.0, 1.0)
    np.testing.assert_allclose(image, expected, atol=1e-6)


def test_dicom_without_rescale_tags_uses_slope_1_intercept_0(tmp_path, ct_path, ct_hu):
    ds = pydicom.dcmread(ct_path)
    del ds.RescaleSlope
    del ds.RescaleIntercept
    path = tmp_path / "raw.dcm"
    ds.save_as(path)
    raw = ct_hu + 1024.0
    np.testing.assert_allclose(load_image(path), np.clip((raw + 1000.0) / 2000.0, 0, 1), atol=1e-6)


def test_dicom_custom_window_is_linear_in_hu(ct_path, ct_hu):
    image = load_image(ct_path, window=(-160, 240))
    np.testing.assert_allclose(image, np.clip((ct_hu + 160.0) / 400.0, 0.0, 1.0), atol=1e-6)
    assert DEFAULT_HU_WINDOW == (-1000.0, 1000.0)


def test_dicom_without_suffix(tmp_path, ct_path):
    path = tmp_path / "slice"
    shutil.copy(ct_path, path)
    np.testing.assert_array_equal(load_image(path), load_image(ct_path))
    assert air_level(path) == air_level(ct_path) == 0.025


def test_air_level_is_minus_950_hu_in_the_window(tmp_path, ct_path):
    assert AIR_HU == -950.0 and window_air_level(DEFAULT_HU_WINDOW) == 0.025
    assert window_air_level((-2000.0, 0.0)) == 0.525
    assert window_air_level((-160.0, 240.0)) == 0.0  # air already clipped to 0
    assert air_level(ct_path, window=(-1050.0, 950.0)) == pytest.approx(0.05)
    np.save(tmp_path / "image.npy", np.zeros((4, 4)))
    assert air_level(tmp_path / "image.npy") == 0.0  # not HU: air is 0
    with pytest.raises(InputError, match="not found"):
        air_level(tmp_path / "missing")
    for bad in ((0.0, 0.0), (100.0, -100.0), (float("nan"), 1.0), (1.0,)):
        with pytest.raises(InputError, match="window"):
            window_air_level(bad)


def test_resample_ct_to_64(ct_path):
    full = load_image(ct_path)
    small = load_image(ct_path, size=64)
    assert small.shape == (64, 64)
    assert small.dtype == np.float32
    assert small.min() >= 0.0 and small.max() <= 1.0
    assert abs(float(small.mean()) - float(full.mean())) < 0.01
    big = load_image(ct_path, size=200)
    assert big.shape == (200, 200)
    assert big.min() >= 0.0 and big.max() <= 1.0


def test_dicom_without_pixel_data(tmp_path, ct_path):
    ds = pydicom.dcmread(ct_path)
    del ds.PixelData
    path = tmp_path / "nopixels.dcm"
    ds.save_as(path)
    with pytest.raises(InputError, match="pixel data") as info:
        load_image(path)
    assert "nopixels.dcm" in str(info.value)


def test_multiframe_dicom_is_rejected(tmp_path, ct_path):
    ds = pydicom.dcmread(ct_path)
    ds.NumberOfFrames = 2
    ds.PixelData = ds.PixelData * 2
    path = tmp_path / "two_frames.dcm"
    ds.save_as(path)
    with pytest.raises(InputError, match="2 frames"):
        load_image(path)


def test_colour_dicom_is_rejected(tmp_path, ct_path):
    ds = pydicom.dcmread(ct_path)
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.PixelData = ds.PixelData * 3
    path = tmp_path / "rgb.dcm"
    ds.save_as(path)
    with pytest.raises(InputError, match=r"shape \(128, 128, 3\)"):
        load_image(path)


def test_raw_dicom_without_preamble_or_meta(tmp_path, ct_path):
    ds = pydicom.dcmread(ct_path)
    path = tmp_path / "raw.dcm"
    handle = DicomFile(path, "wb")
    handle.is_little_endian = True
    handle.is_implicit_VR = False
    write_dataset(handle, ds)
    handle.close()
    assert path.read_bytes()[128:132] != b"DICM"
    np.testing.assert_array_equal(load_image(path), load_image(ct_path))


def test_corrupt_dicom(tmp_path):
    path = tmp_path / "corrupt.dcm"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(InputError, match="corrupt.dcm"):
        load_image(path)


def test_file_without_suffix_that_is_not_dicom(tmp_path):
    path = tmp_path / "mystery"
    path.write_bytes(b"not an image at all" * 20)
    with pytest.raises(InputError, match=r"\.npy"):
        load_image(path)


# ---------------------------------------------------------------- npy and raster


def _ramp(rows: int = 20, cols: int = 20) -> np.ndarray:
    return np.linspace(0.0, 1.0, rows * cols).reshape(rows, cols)


def test_npy_round_trip(tmp_path):
    array = _ramp()
    path = tmp_path / "img.npy"
    np.save(path, array)
    image = load_image(path)
    assert image.dtype == np.float32
    np.testing.assert_allclose(image, array, atol=1e-7)


def test_npy_rgb_to_grey_by_luminance(tmp_path):
    rgb = np.zeros((8, 8, 3))
    rgb[..., 1] = 1.0  # pure green
    path = tmp_path / "rgb.npy"
    np.save(path, rgb)
    np.testing.assert_allclose(load_image(path), 0.7154, atol=1e-6)


def test_npy_uint8_scaled_by_dtype_max(tmp_path):
    path = tmp_path / "u8.npy"
    np.save(path, np.array([[0, 255], [51, 102]], dtype=np.uint8))
    np.testing.assert_allclose(load_image(path), [[0.0, 1.0], [0.2, 0.4]], atol=1e-6)


def test_npy_float_out_of_range_needs_window(tmp_path):
    path = tmp_path / "hu.npy"
    np.save(path, np.full((4, 4), 500.0))
    with pytest.raises(InputError, match="window"):
        load_image(path)
    np.testing.assert_allclose(load_image(path, window=(0, 1000)), 0.5)


def test_png_uint8_round_trip(tmp_path):
    array = np.arange(256, dtype=np.uint8).reshape(16, 16)
    path = tmp_path / "img.png"
    imsave(path, array, check_contrast=False)
    image = load_image(path)
    assert image.shape == (16, 16)
    assert image.dtype == np.float32
    np.testing.assert_allclose(image, array / 255.0, atol=1e-6)
    assert image[-1, -1] == 1.0 and image[0, 0] == 0.0


def test_png_rgb_to_grey(tmp_path):
    rgb = np.zeros((10, 10, 3), dtype=np.uint8)
    rgb[:5, :, 0] = 255  # red top half
    rgb[5:, :, 2] = 255  # blue bottom half
    path = tmp_path / "rgb.png"
    imsave(path, rgb, check_contrast=False)
    image = load_image(path)
    assert image.shape == (10, 10)
    np.testing.assert_allclose(image[:5], 0.2125, atol=1e-6)
    np.testing.assert_allclose(image[5:], 0.0721, atol=1e-6)


def test_png_rgba_composites_over_air(tmp_path):
    rgba = np.full((6, 6, 4), 255, dtype=np.uint8)
    rgba[:, :3, 3] = 0  # left half transparent
    path = tmp_path / "rgba.png"
    imsave(path, rgba, check_contrast=False)
    image = load_image(path)
    np.testing.assert_allclose(image[:, :3], 0.0, atol=1e-6)
    np.testing.assert_allclose(image[:, 3:], 1.0, atol=1e-6)


def test_non_square_is_padded_symmetrically_with_zeros(tmp_path):
    array = np.full((4, 10), 0.5)
    path = tmp_path / "wide.npy"
    np.save(path, array)
    image = load_image(path)
    assert image.shape == (10, 10)
    np.testing.assert_allclose(image[3:7], 0.5)
    np.testing.assert_allclose(image[:3], 0.0)
    np.testing.assert_allclose(image[7:], 0.0)
    tall = load_image(path, size=5)
    assert tall.shape == (5, 5)
    with pytest.raises(InputError, match="not square"):
        load_image(path, square=False)


def test_non_square_png_odd_difference(tmp_path):
    array = np.full((7, 4), 255, dtype=np.uint8)
    path = tmp_path / "tall.png"
    imsave(path, array, check_contrast=False)
    image = load_image(path)
    assert image.shape == (7, 7)
    # Three columns of padding: one on the left, two on the right.
    np.testing.assert_allclose(image[:, 1:5], 1.0)
    np.testing.assert_allclose(image[:, :1], 0.0)
    np.testing.assert_allclose(image[:, 5:], 0.0)


# ---------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_image(tmp_path / "nope.png")


@pytest.mark.parametrize("name", ["empty.npy", "empty.png", "empty.dcm"])
def test_empty_file(tmp_path, name):
    path = tmp_path / name
    path.touch()
    with pytest.raises(InputError, match="is empty"):
        load_image(path)


def test_unknown_suffix_lists_supported(tmp_path):
    path = tmp_path / "image.bmpx"
    path.write_bytes(b"abc")
    with pytest.raises(InputError, match=r"\.bmpx") as info:
        load_image(path)
    for suffix in (".npy", ".png", ".jpg", ".jpeg", ".tif", ".dcm"):
        assert suffix in str(info.value)


def test_nan_npy(tmp_path):
    array = _ramp()
    array[3, 4] = np.nan
    path = tmp_path / "nan.npy"
    np.save(path, array)
    with pytest.raises(InputError, match="non-finite"):
        load_image(path)


def test_inf_npy(tmp_path):
    array = _ramp()
    array[0, 0] = np.inf
    path = tmp_path / "inf.npy"
    np.save(path, array)
    with pytest.raises(InputError, match="non-finite"):
        load_image(path)


@pytest.mark.parametrize("shape", [(16,), (2, 4, 5), (4, 4, 2), (4, 4, 3, 1)])
def test_npy_bad_shapes(tmp_path, shape):
    path = tmp_path / "bad.npy"
    np.save(path, np.zeros(shape))
    with pytest.raises(InputError, match=r"shape \(") as info:
        load_image(path)
    assert str(shape) in str(info.value)


def test_npy_zero_size(tmp_path):
    path = tmp_path / "zero.npy"
    np.save(path, np.zeros((0, 5)))
    with pytest.raises(InputError, match="empty"):
        load_image(path)


def test_corrupt_npy_and_png(tmp_path):
    for name in ("junk.npy", "junk.png"):
        path = tmp_path / name
        path.write_bytes(b"\x00\x01garbage" * 10)
        with pytest.raises(InputError, match=name):
            load_image(path)


@pytest.mark.parametrize("size", [0, -3, 2.5, True])
def test_bad_size(ct_path, size):
    with pytest.raises(InputError, match="size"):
        load_image(ct_path, size=size)


@pytest.mark.parametrize("window", [(100, 100), (200, -200), (0, np.inf), (1,), "ab"])
def test_bad_window(ct_path, window):
    with pytest.raises(InputError, match="window"):
        load_image(ct_path, window=window)
