"""Ground-truth images from files, for simulated CT experiments.

:func:`load_image` reads a ``.npy`` array, a raster image (``.png``, ``.jpg``,
``.jpeg``, ``.tif``, ``.tiff``) or a DICOM slice (``.dcm``, ``.dicom``, or a file
without a suffix that pydicom recognises) and returns a square ``float32`` array
with values in [0, 1], row 0 at the top, ready to be projected.

Values pass through three stages:

1. *Native values*: Hounsfield units (HU) for DICOM, the stored numbers otherwise
   (colour images reduced to grey first, see :func:`load_image`).
2. *Window*: a linear map of the native values onto [0, 1], clipped.
3. *Geometry*: zero-padding to a square, then optional resampling to ``size``.

For CT, linear attenuation relative to water is ``mu / mu_water = 1 + HU / 1000``
(air, -1000 HU, is 0; water, 0 HU, is 1). Attenuation is an affine function of
HU, so any window on HU is just a linear rescale of attenuation: the loaded image
is proportional to physical attenuation up to an offset and the clipping. The
default DICOM window (-1000, 1000) HU has no offset at all: the image is
``mu / mu_water / 2``, so air is 0, water 0.5 and 1000 HU (dense bone) 1.

Air is not exactly 0 in a scan: it reads a few tens of HU around -1000 (noise, beam
hardening), the window clips the lower half at 0, and block means keep the upper half,
so over most of the air of a real slice the truth is 0.001-0.02. :func:`air_level` is the
value at or below which a loaded pixel is air, so that the calibration figures of the
object (:func:`bayes_inr.evaluation.metrics.support_masks`) leave air out: -950 HU
(:data:`AIR_HU`) in the window, 0 for files whose values are not HU.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np

from ..core.errors import InputError, check_finite

__all__ = ["AIR_HU", "DEFAULT_HU_WINDOW", "SUPPORTED_SUFFIXES", "air_level", "example_dicom_path",
           "load_image", "window_air_level"]

DEFAULT_HU_WINDOW: tuple[float, float] = (-1000.0, 1000.0)
"""Default DICOM window in HU: air (-1000) -> 0, water (0) -> 0.5, 1000 HU -> 1."""

AIR_HU = -950.0
"""The densest air in HU: the radiological cut for air-like attenuation (the -950 HU of
the emphysema index, LAA-950), above the noise of the air of Table 1's real slices (their
median air pixel reads -999 to -1007 HU)."""

_RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
_DICOM_SUFFIXES = (".dcm", ".dicom")
SUPPORTED_SUFFIXES: tuple[str, ...] = (".npy", *_RASTER_SUFFIXES, *_DICOM_SUFFIXES)

# ITU-R BT.709 luminance weights, the ones skimage.color.rgb2gray uses.
_LUMA = np.array([0.2125, 0.7154, 0.0721])
_FLOAT_TOLERANCE = 1e-6


def load_image(
    path: str | os.PathLike,
    size: int | None = None,
    window: tuple[float, float] | None = None,
    square: bool = True,
) -> np.ndarray:
    """Load a ground-truth image as a square ``float32`` array with values in [0, 1].

    Parameters
    ----------
    path : str or os.PathLike
        The file. Its suffix (case-insensitive) picks the reader: ``.npy``
        (numpy), ``.png`` / ``.jpg`` / ``.jpeg`` / ``.tif`` / ``.tiff``
        (``skimage.io.imread``), ``.dcm`` / ``.dicom`` (pydicom). A file without a
        suffix is read as DICOM if pydicom recognises it (a ``DICM`` preamble).
    size : int, optional
        Side of the returned image. If given, the (squared) image is resampled
        with ``skimage.transform.resize`` (bilinear, ``order=1``, anti-aliased when
        shrinking) and clipped to [0, 1] again. Default: keep the file's size.
    window : (float, float), optional
        ``(lo, hi)`` in native units, mapped linearly to 0 and 1 and clipped:
        ``value = clip((native - lo) / (hi - lo), 0, 1)``. Native units are HU
        for DICOM and the stored numbers for the other formats. Defaults: DICOM
        ``(-1000, 1000)`` HU (see the module docstring); integer data
        ``(0, dtype max)``, so 8-bit 255 is 1.0 and 16-bit 65535 is 1.0 (pass
        ``window=(0, 4095)`` for 12-bit data stored in 16 bits); boolean data
        ``(0, 1)``; floating-point data is taken as already in [0, 1] and must
        lie there (within 1e-6) or an :class:`InputError` asks for a window.
    square : bool, default True
        The reconstruction grid is square. ``True`` pads the shorter side of a
        non-square image symmetrically with zeros (air, the bottom of the
        window; an odd difference puts the extra row/column at the bottom/right)
        so that the object keeps its aspect ratio. ``False`` raises
        :class:`InputError` for a non-square image instead.

    Returns
    -------
    numpy.ndarray
        ``float32`` array of shape ``(N, N)``, values in [0, 1], row 0 the top.

    Raises
    ------
    InputError
        Missing, empty, unreadable or unsupported file; an array that is not a
        2-D image (grey, or RGB/RGBA with a trailing channel axis); a DICOM
        without pixel data or with several frames; NaN or infinite values; an
        empty image; a bad ``size`` or ``window``.

    Notes
    -----
    Colour images are reduced to grey by luminance,
    ``0.2125 R + 0.7154 G + 0.0721 B`` (ITU-R BT.709, as
    ``skimage.color.rgb2gray``), on the stored values without gamma
    correction. An alpha channel composites the image over black (air):
    grey is multiplied by the alpha fraction. Raster files also accept grey
    plus alpha (two channels); ``.npy`` files accept 3 or 4 channels only.
    DICOM values become HU with ``RescaleSlope`` and ``RescaleIntercept``
    (defaults 1 and 0 when absent); this assumes a CT slice, other modalities
    are windowed as if their rescaled values were HU.
    """
    path = Path(path)
    size = _check_size(size)
    window = _check_window(window)
    if not path.exists():
        raise InputError(f"image file {str(path)!r} not found")
    if not path.is_file():
        raise InputError(f"image path {str(path)!r} is not a file")
    if path.stat().st_size == 0:
        raise InputError(f"image file {str(path)!r} is empty")

    suffix = path.suffix.lower()
    if suffix == ".npy":
        native, default_window = _read_npy(path)
    elif suffix in _RASTER_SUFFIXES:
        native, default_window = _read_raster(path)
    elif suffix in _DICOM_SUFFIXES:
        native, default_window = _read_dicom(path)
    elif suffix == "" and _is_dicom(path):
        native, default_window = _read_dicom(path)
    else:
        what = f"suffix {suffix!r}" if suffix else "no suffix and is not a DICOM file"
        raise InputError(
            f"image file {str(path)!r} has {what}; supported: {', '.join(SUPPORTED_SUFFIXES)}"
        )

    if native.size == 0:
        raise InputError(f"image in {str(path)!r} is empty (shape {native.shape})")
    check_finite(f"image in {str(path)!r}", native)
    if window is None:
        if default_window is None:
            _check_unit_range(path, native)
            window = (0.0, 1.0)
        else:
            window = default_window
    lo, hi = window
    image = np.clip((native - lo) / (hi - lo), 0.0, 1.0)

    image = _make_square(path, image, square)
    if size is not None and size != image.shape[0]:
        from skimage.transform import resize

        image = resize(
            image,
            (size, size),
            order=1,
            anti_aliasing=size < image.shape[0],
            preserve_range=True,
        )
        image = np.clip(image, 0.0, 1.0)
    return np.ascontiguousarray(image, dtype=np.float32)


def window_air_level(window: tuple[float, float]) -> float:
    """The windowed value of :data:`AIR_HU` for a window ``(lo, hi)`` in HU, in [0, 1]
    (0.025 for :data:`DEFAULT_HU_WINDOW`; 0 when the window starts above it); a window that
    is not two finite numbers with hi > lo is an :class:`InputError`."""
    lo, hi = _check_window(window)
    return float(np.clip((AIR_HU - lo) / (hi - lo), 0.0, 1.0))


def air_level(path: str | os.PathLike, window: tuple[float, float] | None = None) -> float:
    """The value at or below which a pixel of ``load_image(path, window=window)`` is air:
    :func:`window_air_level` of the window for a DICOM file (values in HU), 0 for the
    others (their values are not HU, and their air is taken to be exactly 0). A missing
    file is an :class:`InputError`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image file {str(path)!r} not found")
    suffix = path.suffix.lower()
    if suffix in _DICOM_SUFFIXES or (suffix == "" and _is_dicom(path)):
        return window_air_level(DEFAULT_HU_WINDOW if window is None else window)
    return 0.0


def example_dicom_path() -> Path:
    """Path of pydicom's bundled real CT slice ``CT_small.dcm`` (128 x 128, int16).

    The file ships inside the pydicom wheel (``pydicom/data/test_files``); it is
    looked up there first, then with ``pydicom.data.get_testdata_file(...,
    download=False)``. Nothing is ever downloaded.

    Raises
    ------
    InputError
        If the installed pydicom does not hold the file.
    """
    import pydicom

    name = "CT_small.dcm"
    bundled = Path(pydicom.__file__).parent / "data" / "test_files" / name
    if bundled.is_file():
        return bundled
    try:
        from pydicom.data import get_testdata_file

        found = get_testdata_file(name, download=False)
    except Exception:  # any failure means "not available"
        found = None
    if found is None or not Path(found).is_file():
        raise InputError(f"pydicom {pydicom.__version__} does not ship {name}")
    return Path(found)


# ---------------------------------------------------------------- validation


def _check_size(size: int | None) -> int | None:
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise InputError(f"size must be a positive integer, got {size!r}")
    return int(size)


def _check_window(window) -> tuple[float, float] | None:
    if window is None:
        return None
    try:
        lo, hi = (float(v) for v in window)
    except (TypeError, ValueError):
        raise InputError(f"window must be two numbers (lo, hi), got {window!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise InputError(f"window must be finite with hi > lo, got {window!r}")
    return lo, hi


def _check_unit_range(path: Path, native: np.ndarray) -> None:
    lo, hi = float(native.min()), float(native.max())
    if lo < -_FLOAT_TOLERANCE or hi > 1.0 + _FLOAT_TOLERANCE:
        raise InputError(
            f"floating-point image in {str(path)!r} has values in [{lo:g}, {hi:g}], "
            "not [0, 1]: rescale it to [0, 1] first (in Python, "
            "bayes_inr.data.images.load_image(path, window=(lo, hi)) maps [lo, hi] to [0, 1])"
        )


def _make_square(path: Path, image: np.ndarray, square: bool) -> np.ndarray:
    rows, cols = image.shape
    if rows == cols:
        return image
    if not square:
        raise InputError(
            f"image in {str(path)!r} is {rows} x {cols}, not square; "
            "pass square=True to pad it with air"
        )
    n = max(rows, cols)
    top, left = (n - rows) // 2, (n - cols) // 2
    return np.pad(image, ((top, n - rows - top), (left, n - cols - left)))


# ------------------------------------------------------------------- readers


def _to_grey(path: Path, array: np.ndarray, channels: tuple[int, ...]) -> np.ndarray:
    """Reduce ``array`` to 2-D native values (float64); see :func:`load_image` notes."""
    if array.ndim == 2:
        return array.astype(np.float64)
    if array.ndim != 3 or array.shape[-1] not in channels:
        allowed = "/".join(str(c) for c in channels)
        raise InputError(
            f"image in {str(path)!r} has shape {array.shape}; expected (rows, cols) "
            f"or (rows, cols, {allowed}) channels"
        )
    values = array.astype(np.float64)
    n = array.shape[-1]
    grey = values[..., 0] if n <= 2 else values[..., :3] @ _LUMA
    if n in (2, 4):
        scale = _integer_max(array.dtype) or 1.0
        grey = grey * (values[..., -1] / scale)
    return grey


def _integer_max(dtype: np.dtype) -> float | None:
    if np.issubdtype(dtype, np.integer):
        return float(np.iinfo(dtype).max)
    return None


def _default_window(path: Path, dtype: np.dtype) -> tuple[float, float] | None:
    if dtype == np.bool_:
        return (0.0, 1.0)
    top = _integer_max(dtype)
    if top is not None:
        return (0.0, top)
    if np.issubdtype(dtype, np.floating):
        return None
    raise InputError(f"image in {str(path)!r} has unsupported dtype {dtype}")


def npy_error(exc: Exception) -> str:
    """numpy's reason for refusing a file, without its advice to unpickle (unsafe)."""
    if "pickle" in str(exc):
        return "it is not a numpy array file (.npy format), or it holds Python objects"
    return str(exc)


def _read_npy(path: Path) -> tuple[np.ndarray, tuple[float, float] | None]:
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises many types here
        raise InputError(f"could not read .npy file {str(path)!r}: {npy_error(exc)}") from None
    if not isinstance(array, np.ndarray):
        raise InputError(f"{str(path)!r} does not hold a single array")
    default = _default_window(path, array.dtype)
    return _to_grey(path, array, channels=(3, 4)), default


def _read_raster(path: Path) -> tuple[np.ndarray, tuple[float, float] | None]:
    from skimage.io import imread

    try:
        with warnings.catch_warnings():
            # imageio probes its deprecated legacy plugins on unreadable files; it is
            # given the bytes, not the path, because that probing leaks file handles.
            warnings.simplefilter("ignore", DeprecationWarning)
            array = np.asarray(imread(io.BytesIO(path.read_bytes())))
    except Exception as exc:  # the imageio plugins raise many types
        raise InputError(f"could not read image file {str(path)!r}: {exc}") from None
    default = _default_window(path, array.dtype)
    return _to_grey(path, array, channels=(2, 3, 4)), default


def _is_dicom(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(128)
        return handle.read(4) == b"DICM"


def _read_dicom(path: Path) -> tuple[np.ndarray, tuple[float, float]]:
    """Hounsfield units of a single-slice DICOM file, and the default HU window."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    name = str(path)
    forced = False
    try:
        try:
            ds = pydicom.dcmread(path)
        except InvalidDicomError:
            # No 'DICM' header: maybe a raw data set without preamble (or not DICOM).
            forced = True
            ds = pydicom.dcmread(path, force=True)
        has_pixels = any(
            key in ds for key in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
        )
    except Exception as exc:  # pydicom raises many types on bad files
        raise InputError(f"could not read DICOM file {name!r}: {exc}") from None
    if not has_pixels:
        if forced:
            raise InputError(
                f"could not read DICOM file {name!r}: no 'DICM' header and no pixel data found"
            )
        raise InputError(f"DICOM file {name!r} has no pixel data")
    if forced:
        _add_transfer_syntax(ds)
    frames = _tag_float(path, ds, "NumberOfFrames", 1.0)
    if frames > 1:
        raise InputError(f"DICOM file {name!r} has {frames:g} frames; expected one slice")
    try:
        pixels = np.asarray(ds.pixel_array)
    except Exception as exc:  # decoding errors come in many types
        raise InputError(f"could not decode pixel data of DICOM file {name!r}: {exc}") from None
    if pixels.ndim != 2:
        raise InputError(
            f"DICOM file {name!r} has pixel data of shape {pixels.shape}; "
            "expected one 2-D greyscale slice"
        )
    slope = _tag_float(path, ds, "RescaleSlope", 1.0)
    intercept = _tag_float(path, ds, "RescaleIntercept", 0.0)
    hounsfield = pixels.astype(np.float64) * slope + intercept
    return hounsfield, DEFAULT_HU_WINDOW


def _add_transfer_syntax(ds) -> None:
    """Give a data set read without file meta the uncompressed syntax it was read with.

    pydicom decodes pixel data only when ``file_meta`` names the transfer syntax;
    a raw data set (no preamble, no meta) is always uncompressed, and the reader
    already detected its VR and byte order.
    """
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    encoding = getattr(ds, "original_encoding", None)  # pydicom >= 3
    if encoding is None:
        encoding = (getattr(ds, "read_implicit_vr", None), getattr(ds, "read_little_endian", None))
    implicit, little = encoding
    if implicit is None or little is None:
        return
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    if implicit:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _tag_float(path: Path, ds, keyword: str, default: float) -> float:
    """A numeric DICOM tag as float; ``default`` when absent or empty."""
    try:
        value = ds.get(keyword)
    except Exception as exc:  # a malformed element fails when first parsed
        raise InputError(f"DICOM file {str(path)!r} has a bad {keyword}: {exc}") from None
    if value is None or value == "":
        return default
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise InputError(f"DICOM file {str(path)!r} has a bad {keyword}: {value!r}") from None
    if not np.isfinite(result):
        raise InputError(f"DICOM file {str(path)!r} has a bad {keyword}: {value!r}")
    return result
