"""Scene-like depth (synth.scene_depth) and the dehaze recipe's use of it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_nlcl.synth import scene_depth


def _street(h=80, w=60):
    """Sky above, a dark box standing on a textured ground below."""
    g = np.random.default_rng(0)
    img = 0.35 + 0.04 * g.standard_normal((h, w))  # ground
    img[: h // 4] = 0.92  # sky: bright and flat
    img[30:60, 15:35] = 0.05  # an upright object
    return np.clip(img, 0, 1)


def test_scene_depth_objects_stand_on_the_ground_and_the_sky_is_far():
    img = _street()
    d = scene_depth(img, rng=0, horizon=0.25)
    assert d.shape == img.shape and d.dtype == np.float32 and d.min() >= 0 and d.max() <= 1
    assert np.all(d[:10] == 1.0)  # sky
    box = d[30:60, 15:35]
    assert np.ptp(box) == 0  # one depth along the upright object ...
    feet = [(1 - row / 79) / (1 - 0.25) for row in (62, 59)]  # its foot, give or take the blur
    assert feet[0] <= box[0, 0] <= feet[1]  # ... the ground's under its foot
    assert d[25, 25] > box[0, 0] + 0.2  # depth jumps at its top edge, where the ground behind it is farther
    assert d[-1, 5] < d[25, 5]  # the ground comes nearer towards the bottom of the frame


def test_scene_depth_takes_colour_seeds_and_a_crop_window():
    img = np.repeat(_street()[..., None], 3, -1)
    a = scene_depth(img, rng=1)
    np.testing.assert_array_equal(a, scene_depth(img, rng=np.random.default_rng(1)))
    # a crop of the lower half is a window of the photo: it sees only the near part of the ground
    low = scene_depth(img[40:], rng=0, horizon=0.25, rows=np.linspace(0.5, 1.0, 40))
    assert low.max() < 0.7
    with pytest.raises(ValueError, match="one position per image row"):
        scene_depth(img, rows=[0.0, 1.0])
    with pytest.raises(ValueError, match="horizon must be in"):
        scene_depth(img, horizon=1.5)


def test_synthetic_haze_over_scene_depth_has_edges_where_the_image_has_them():
    from napari_nlcl.training.dehaze import DehazeConfig, synthesize_haze

    img = torch.from_numpy(np.repeat(_street()[None, None], 3, 1)).float().repeat(8, 1, 1, 1)
    _, t_smooth, _ = synthesize_haze(img, torch.Generator().manual_seed(0), return_parts=True)
    _, t_scene, _ = synthesize_haze(img, torch.Generator().manual_seed(0), scene=1.0, return_parts=True)
    box = t_scene[:, 0, 30:60, 15:35]
    assert float(box.amax((1, 2)).sub(box.amin((1, 2))).max()) < 1e-6  # one transmission on the object
    edge = (t_scene[:, 0, 25, 20:30] - t_scene[:, 0, 32, 20:30]).abs().mean()
    smooth_edge = (t_smooth[:, 0, 25, 20:30] - t_smooth[:, 0, 32, 20:30]).abs().mean()
    assert float(edge) > 4 * float(smooth_edge)
    with pytest.raises(ValueError, match="scene_depth must be a share"):
        DehazeConfig(scene_depth=1.5)
