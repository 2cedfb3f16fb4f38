"""Image quality metrics the benchmarks, the tests and the quality monitor share."""

from __future__ import annotations

import numpy as np


def y_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR on the luma (ITU-R BT.601 Y in [16, 235], the deraining papers' metric) of RGB in [0, 1].

    >>> import numpy as np
    >>> round(y_psnr(np.zeros((4, 4, 3)), np.full((4, 4, 3), 0.1)), 2)
    21.32
    """
    from skimage.color import rgb2ycbcr
    from skimage.metrics import peak_signal_noise_ratio

    ya = rgb2ycbcr(np.asarray(a, np.float64)[..., :3])[..., 0]
    yb = rgb2ycbcr(np.asarray(b, np.float64)[..., :3])[..., 0]
    if np.array_equal(ya, yb):
        return float("inf")
    return float(peak_signal_noise_ratio(ya, yb, data_range=255.0))
