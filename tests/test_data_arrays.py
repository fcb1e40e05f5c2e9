"""In-memory arrays through the Python API: layouts, dtypes, labels, errors."""

import numpy as np
import pytest
import torch

from promix.data.arrays import from_arrays
from promix.data.base import DataError

LABELS = [0, 1, 1, 0]


@pytest.mark.parametrize(
    "images, channels",
    [
        (np.zeros((4, 8, 8), np.uint8), 1),  # (N, H, W)
        (np.zeros((4, 8, 8, 3), np.uint8), 3),  # (N, H, W, C)
        (np.zeros((4, 8, 8, 1), np.uint8), 1),
        (np.zeros((4, 3, 8, 8), np.uint8), 3),  # (N, C, H, W)
        (np.zeros((4, 8, 8, 4), np.uint8), 3),  # RGBA: alpha dropped
        (torch.zeros(4, 3, 8, 8), 3),
        (torch.zeros(4, 8, 8, 3, dtype=torch.uint8), 3),
    ],
)
def test_layouts(images, channels):
    data = from_arrays(images, LABELS)
    assert data.images.shape == (4, channels, 8, 8) and data.images.dtype == torch.uint8
    assert data.classes == ("0", "1")


def test_ambiguous_layout_follows_the_library_convention():
    x = np.zeros((4, 3, 4, 3), np.uint8)
    x[:, 0, 1, :] = 9  # NHWC: pixel row 0, column 1 has value 9 in every channel
    assert from_arrays(x, LABELS).images[0, :, 0, 1].tolist() == [9, 9, 9]
    t = torch.zeros(4, 3, 4, 3, dtype=torch.uint8)
    assert from_arrays(t, LABELS).images.shape == (4, 3, 4, 3)  # NCHW for tensors


def test_float_images_scaled_and_checked():
    x = np.full((4, 2, 2), 0.5, np.float32)
    assert from_arrays(x, LABELS).images.unique().tolist() == [128]
    with pytest.raises(DataError, match=r"\[0, 1\].*divide by 255"):
        from_arrays(x * 255, LABELS)
    with pytest.raises(DataError, match="0..255"):
        from_arrays(np.full((4, 2, 2), 300, np.int32), LABELS)


def test_string_labels_and_class_lists():
    data = from_arrays(np.zeros((3, 2, 2), np.uint8), ["dog", "cat", "dog"])
    assert data.classes == ("cat", "dog") and data.labels.tolist() == [1, 0, 1]
    data = from_arrays(np.zeros((3, 2, 2), np.uint8), ["dog", "cat", "dog"],
                       classes=["dog", "cat", "cow"])
    assert data.labels.tolist() == [0, 1, 0] and data.num_classes == 3
    with pytest.raises(DataError, match="'cow' is not in the class list"):
        from_arrays(np.zeros((2, 2, 2), np.uint8), ["cat", "cow"], classes=["cat", "dog"])


def test_resize():
    data = from_arrays(np.full((4, 10, 6, 3), 200, np.uint8), LABELS, image_size=5)
    assert data.images.shape == (4, 3, 5, 5) and data.images.unique().tolist() == [200]


@pytest.mark.parametrize(
    "images, labels, classes, match",
    [
        (np.zeros((4, 2, 2), np.uint8), [0, 1, 0], None, "4 images but 3 labels"),
        (np.zeros((0, 2, 2), np.uint8), [], None, "empty"),
        (np.zeros((3, 2, 2), np.uint8), [0, 0, 0], None, "at least 2 classes"),
        (np.zeros((2, 2, 2), np.uint8), [0, 5], ["a", "b"], "label 5 is not in the class list"),
        (np.zeros((2, 2, 2, 2, 2), np.uint8), [0, 1], None, "3 or 4 dimensions"),
        (np.zeros((2, 5, 6, 7), np.uint8), [0, 1], None, "C = 1, 3 or 4"),
        (np.zeros((2, 2, 2), np.uint8), [0.0, 1.0], None, "integers"),
    ],
)
def test_errors(images, labels, classes, match):
    with pytest.raises(DataError, match=match):
        from_arrays(images, labels, classes)
