"""gato.images: any picture -> RGB, resized, row-major patches scaled as Gato does."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from gato.images import ImageSizeError, batch_patches, image_patches, pixel_patches, to_pixels


def test_patches_are_row_major_and_scaled_as_gato():
    # each 2x2 patch of a 4x4 image holds one value, different per patch and channel
    pixels = np.zeros((4, 4, 3), np.uint8)
    for r in range(2):
        for c in range(2):
            pixels[2 * r:2 * r + 2, 2 * c:2 * c + 2] = [10 * (2 * r + c), 100, 255 - 10 * (2 * r + c)]
    patches, rowcol = image_patches(pixels, image_size=4, patch_size=2)
    assert patches.shape == (4, 3, 2, 2) and patches.dtype == np.float32
    assert rowcol.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]] and rowcol.dtype == np.int64
    for k in range(4):
        expected = (np.array([10 * k, 100, 255 - 10 * k]) / 255 * 2 - 1) / math.sqrt(2)
        np.testing.assert_allclose(patches[k], np.broadcast_to(expected[:, None, None], (3, 2, 2)), rtol=1e-6)


@pytest.mark.parametrize("patch_size", [2, 4, 8])
def test_values_span_minus_to_plus_one_over_sqrt_patch(patch_size):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    pixels[0, 0], pixels[0, 1] = 0, 255
    patches, _ = image_patches(pixels, 16, patch_size)
    bound = 1 / math.sqrt(patch_size)
    assert patches.min() == pytest.approx(-bound) and patches.max() == pytest.approx(bound)
    assert patches.shape == ((16 // patch_size) ** 2, 3, patch_size, patch_size)


def test_grayscale_rgba_palette_and_arrays_become_rgb():
    gray = Image.new("L", (8, 8), 200)
    rgba = Image.new("RGBA", (8, 8), (200, 200, 200, 7))
    palette = gray.convert("P")
    arrays = [np.full((8, 8), 200, np.uint8), np.full((8, 8, 1), 200.0), np.full((3, 8, 8), 200, np.uint8)]
    for image in [gray, rgba, palette, *arrays]:
        patches, _ = image_patches(image, 8, 4)
        assert patches.shape == (4, 3, 4, 4)
        np.testing.assert_allclose(patches, (200 / 255 * 2 - 1) / 2, rtol=1e-6)


def test_other_sizes_are_resized():
    # a 20x10 image, left half black and right half white, read as 8x8: left columns dark, right light
    pixels = np.zeros((10, 20, 3), np.uint8)
    pixels[:, 10:] = 255
    out = to_pixels(Image.fromarray(pixels), 8)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert (out[:, :3] < 20).all() and (out[:, 5:] > 235).all()
    patches, rowcol = image_patches(pixels, 8, 4)
    assert patches.shape == (4, 3, 4, 4) and len(rowcol) == 4
    assert patches[0].mean() < 0 < patches[1].mean()  # patch (0, 0) is dark, (0, 1) light


def test_image_size_must_be_a_multiple_of_the_patch_size():
    with pytest.raises(ImageSizeError, match="not a multiple of patch_size 4"):
        image_patches(Image.new("RGB", (30, 30)), 30, 4)
    assert issubclass(ImageSizeError, ValueError)
    with pytest.raises(ValueError, match="image array must be"):
        image_patches(np.zeros((8, 8, 5), np.uint8), 8, 4)


def test_batch_equals_one_by_one():
    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 256, (12, 9, 3), dtype=np.uint8)) for _ in range(3)]
    patches, rowcol = batch_patches(images, 8, 4)
    assert patches.shape == (3, 4, 3, 4, 4)
    for i, image in enumerate(images):
        one, rc = image_patches(image, 8, 4)
        np.testing.assert_array_equal(patches[i], one)
        np.testing.assert_array_equal(rowcol, rc)
    np.testing.assert_array_equal(pixel_patches(np.stack([to_pixels(im, 8) for im in images]), 4), patches)
