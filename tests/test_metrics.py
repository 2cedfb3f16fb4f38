"""Image quality metrics (napari_nlcl.metrics)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_nlcl.metrics import y_psnr


def test_y_psnr_matches_the_definition():
    a = np.zeros((4, 4, 3))
    b = np.full((4, 4, 3), 1 / 255)
    # Y difference = (65.481 + 128.553 + 24.966) / 255 = 219 / 255 of one step
    expected = 10 * np.log10(255 ** 2 / (219 / 255) ** 2)
    assert y_psnr(a, b) == pytest.approx(expected)
