"""Sample data: reproducible, lazy, matching the PNG copies in sample_data/."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest

from napari_nlcl import samples
from napari_nlcl.io import read_image

SAMPLE_DIR = Path(__file__).parent.parent / "sample_data"


@pytest.mark.parametrize("key", ["hazy_scene", "rainy_scene", "translation_source", "translation_target"])
def test_samples_match_stored_copies(key):
    stored = read_image(SAMPLE_DIR / f"{key}.png")
    made = samples.SAMPLES[key]().data
    assert made.shape == stored.shape and made.dtype == np.uint8
    # same seeds, same code: equal up to rare rounding differences across platforms
    assert np.mean(made != stored) < 1e-3


def test_rainy_stack_is_lazy_and_varies():
    calls = []
    original = samples._rain_frame

    def counting(i):
        calls.append(i)
        return original(i)

    samples._rain_frame = counting
    try:
        stack = samples.rainy_stack(5).data
        assert isinstance(stack, da.Array) and stack.shape[0] == 5
        assert calls == []
        a, b = np.asarray(stack[1]), np.asarray(stack[3])
        assert calls == [1, 3]
        assert not np.array_equal(a, b)  # new rain every frame
    finally:
        samples._rain_frame = original


def test_translation_pair_is_unpaired_and_styled():
    from napari_nlcl.synth import film_look

    a, b = samples.translation_domains()
    assert a.shape[0] == b.shape[0] == samples.TRANSLATION_HEIGHT and a.dtype == b.dtype == np.uint8
    # B is the film look of *other* pixels than A: styling A does not give B
    n = min(a.shape[1], b.shape[1])
    assert np.abs(film_look(a[:, :n]) * 255 - b[:, :n]).mean() > 20
