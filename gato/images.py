"""Pictures (captions, VQA) -> normalised patches, as Gato reads them.

An image becomes RGB (grayscale, RGBA, palette and other modes are converted; an alpha
channel is dropped, not composited), is resized to ``image_size`` x ``image_size`` when it has
another size (PIL's bilinear filter, which averages over the source pixels when shrinking, so
it anti-aliases; the aspect ratio is not kept), and is cut into ``patch_size`` x ``patch_size``
patches in row-major order. Each pixel value ``x`` becomes ``(2 * x / 255 - 1) / sqrt(patch_size)``:
Gato's [0, 1] -> [-1, 1] scaling, then its division by the square root of the patch size, so
every value lies in [-1/sqrt(P), 1/sqrt(P)].

Tasks keep their images as resized uint8 pixels (:func:`to_pixels`, 4x smaller than floats)
and cut patches when a batch is drawn (:func:`pixel_patches`).
"""

from __future__ import annotations

import math
import os

import numpy as np

IMAGE_SIZE = 32
"""The side in pixels that caption and VQA images are resized to unless told otherwise (``--image_size``, the
image-text tasks, captioning and asking from Python): the one home of that default."""


class ImageSizeError(ValueError):
    """An image size that patches cannot tile."""


class ImageFileError(ValueError):
    """An image file that is missing or not an image."""


def check_sizes(image_size: int, patch_size: int) -> None:
    """Raise :class:`ImageSizeError` unless ``image_size`` is a positive multiple of ``patch_size``."""
    if patch_size < 1 or image_size < patch_size or image_size % patch_size:
        raise ImageSizeError(
            f"image_size {image_size} is not a multiple of patch_size {patch_size}; pick an image_size such as "
            f"{max(1, round(image_size / max(patch_size, 1))) * max(patch_size, 1)} (images are resized to "
            "image_size x image_size and cut into patch_size x patch_size patches)"
        )


def to_pixels(image, image_size: int) -> np.ndarray:
    """(image_size, image_size, 3) uint8 RGB pixels of ``image``: an image file's path, a PIL image, or an array
    (H, W) gray, (H, W, 1|3|4) or channels-first (1|3|4, H, W), uint8 or numbers in 0..255 (rounded and clipped)."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, (str, os.PathLike)):
        try:
            image = Image.open(image)
            image.load()
        except (FileNotFoundError, UnidentifiedImageError) as e:
            raise ImageFileError(f"cannot read the image {str(image)!r}: {e}; give a PNG/JPEG file") from None
    if not isinstance(image, Image.Image):
        image = Image.fromarray(_uint8_hwc(np.asarray(image)))
    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size != (image_size, image_size):
        image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def _uint8_hwc(array: np.ndarray) -> np.ndarray:
    """An image array as (H, W) or (H, W, C) uint8, the layouts PIL reads."""
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = array.transpose(1, 2, 0)  # channels first
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ValueError(f"an image array must be (H, W), (H, W, 1|3|4) or (1|3|4, H, W); got shape {array.shape}")
    if array.dtype != np.uint8:
        array = np.clip(np.rint(array.astype(np.float64)), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(array)


def patch_grid(image_size: int, patch_size: int) -> np.ndarray:
    """(N, 2) int64 (row, col) of each patch of an image, row-major."""
    check_sizes(image_size, patch_size)
    side = image_size // patch_size
    rows, cols = np.divmod(np.arange(side * side), side)
    return np.stack([rows, cols], 1).astype(np.int64)


def pixel_patches(pixels: np.ndarray, patch_size: int) -> np.ndarray:
    """Normalised patches of uint8 pixels (..., S, S, 3) -> (..., N, 3, P, P) float32, row-major
    (see the module docstring for the scaling)."""
    *lead, S, S2, C = pixels.shape
    if S != S2:
        raise ValueError(f"pixels must be square, got {S}x{S2}")
    check_sizes(S, patch_size)
    g, P = S // patch_size, patch_size
    x = pixels.reshape(*lead, g, P, g, P, C)
    x = np.moveaxis(x, (-5, -3, -1, -4, -2), (-5, -4, -3, -2, -1))  # (..., row, col, C, P, P)
    x = x.reshape(*lead, g * g, C, P, P).astype(np.float32)
    return (x * np.float32(2.0 / 255.0) - np.float32(1.0)) / np.float32(math.sqrt(patch_size))


def image_patches(image, image_size: int = IMAGE_SIZE, patch_size: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(patches (N, 3, P, P) float32, rowcol (N, 2) int64) of one image (PIL or array), resized to
    image_size x image_size RGB; N = (image_size / patch_size) ** 2. See the module docstring."""
    check_sizes(image_size, patch_size)
    return pixel_patches(to_pixels(image, image_size), patch_size), patch_grid(image_size, patch_size)


def batch_patches(images, image_size: int = IMAGE_SIZE, patch_size: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(patches (B, N, 3, P, P) float32, rowcol (N, 2) int64) of several images: :func:`image_patches` stacked."""
    check_sizes(image_size, patch_size)
    pixels = np.stack([to_pixels(image, image_size) for image in images])
    return pixel_patches(pixels, patch_size), patch_grid(image_size, patch_size)
