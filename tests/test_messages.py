"""Bad input gets a message that names the problem and says what to do (#19, misleading messages)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import napari_nlcl
from napari_nlcl import io, library

SHIPPED = napari_nlcl.__path__[0] + "/weights/derain_default.pt"


@pytest.fixture(scope="module")
def payload():
    return torch.load(SHIPPED, weights_only=True)


def _save(tmp_path, name, payload, **changes):
    path = tmp_path / name
    torch.save({**payload, **changes}, path)
    return path


def test_a_folder_given_as_the_model_is_named_as_a_folder(tmp_path):
    (tmp_path / "model.pt").mkdir()
    with pytest.raises(ValueError, match="is a folder, not a model file"):
        napari_nlcl.load_model(tmp_path / "model.pt")
    with pytest.raises(FileNotFoundError, match="model file not found"):
        napari_nlcl.load_model(tmp_path / "missing.pt")


def test_a_renamed_text_file_is_not_an_image_without_plugin_advice(tmp_path):
    fake = tmp_path / "photo.png"
    fake.write_text("hello")
    with pytest.raises(ValueError, match="not a readable .png file") as info:
        io.read_image(fake)
    assert "pip install" not in str(info.value)


def test_a_python_list_is_told_apart_from_a_multiscale_list():
    with pytest.raises(TypeError, match="got a Python list; pass a numpy or dask array"):
        napari_nlcl.dehaze([[0.1] * 64] * 64, model="dcp")
    with pytest.raises(TypeError, match="multiscale"):
        napari_nlcl.dehaze([np.zeros((64, 64)), np.zeros((32, 32))], model="dcp")


def test_a_bad_option_value_names_the_option():
    with pytest.raises(ValueError, match="t_min must be a number in \\(0, 1\\), got 'x'"):
        napari_nlcl.dehaze(np.zeros((64, 64, 3), np.uint8), t_min="x")


@pytest.mark.parametrize("change, match", [
    ({"recipe": "nope"}, "unknown recipe 'nope'"),
    ({"networks": {"gen_b": {"x": torch.zeros(1)}}}, "do not fit the network"),
])
def test_the_library_refuses_a_file_that_does_not_load(tmp_path, model_library, payload, change, match):
    bad = _save(tmp_path, "bad.pt", payload, **change)
    with pytest.raises(ValueError, match=f"bad.pt was not added to the library: .*{match}"):
        library.save_model(bad, "broken")
    assert library.list_models() == [] and not any(model_library.iterdir())


def test_the_library_refuses_broken_settings(tmp_path, model_library, payload):
    config = json.loads(payload["config"])
    config["recipe"]["gan_weight"] = "lots"
    bad = _save(tmp_path, "settings.pt", payload, config=json.dumps(config))
    with pytest.raises(ValueError, match="was not added to the library: gan_weight must be a number"):
        library.save_model(bad, "broken")
    assert library.list_models() == []


def test_crop_advice_is_possible():
    from napari_nlcl.training.data import MIN_CROP, RandomCrops

    with pytest.raises(ValueError, match="use a crop of at most 40 px"):
        RandomCrops({"image": np.zeros((2, 40, 60, 3), np.float32)}, crop=64)
    with pytest.raises(ValueError, match=f"too small to train on \\(crops start at {MIN_CROP} px\\)"):
        RandomCrops({"image": np.zeros((2, 8, 8, 3), np.float32)}, crop=32)
