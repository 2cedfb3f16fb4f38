"""The command line (napari_nlcl.cli): dehaze/derain/methods/samples, options, one-line errors,
and never writing over the input.  (The ``train`` command: test_training.py and the task modules.)"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_nlcl import cli, io
from napari_nlcl.cli.args import parse_option


def test_cli_sample_to_png(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["dehaze", "--sample", "hazy_scene", "--device", "cpu"]) == 0
    out = Path(capsys.readouterr().out.strip())
    assert out == tmp_path / "hazy_scene_dehazed.png"
    result = io.read_image(out)
    assert result.shape == (427, 640, 3) and result.dtype == np.uint8


def test_cli_stack_roundtrip(tmp_path, capsys):
    from napari_nlcl import synth

    rng = np.random.default_rng(1)
    clean = rng.random((2, 48, 64, 3)).astype(np.float32) * 0.5
    hazy = np.stack([synth.add_haze(c, beta=1.5, rng=i)[0] for i, c in enumerate(clean)])
    src = io.write_image(tmp_path / "hazy.tif", (hazy * 65535).astype(np.uint16))
    assert cli.main(["dehaze", str(src), "-o", str(tmp_path / "clear.zarr"), "-m", "dcp", "-O", "omega=0.9"]) == 0
    assert capsys.readouterr().out.strip().endswith("clear.zarr")
    out = np.asarray(io.read_image(tmp_path / "clear.zarr"))
    assert out.shape == hazy.shape and out.dtype == np.uint16
    assert cli.main(["dehaze", str(src)]) == 0  # default name beside the input
    assert (tmp_path / "hazy_dehazed.tif").exists()


def test_cli_precision(tmp_path, capsys):
    img = io.write_image(tmp_path / "in.png", (np.random.default_rng(0).random((64, 80, 3)) * 255).astype(np.uint8))
    outs = {}
    for prec in ("float32", "bfloat16"):
        out = tmp_path / f"{prec}.png"
        assert cli.main(["derain", str(img), "-o", str(out), "--device", "cpu", "--precision", prec]) == 0
        outs[prec] = io.read_image(out).astype(int)
    assert 0 < np.abs(outs["float32"] - outs["bfloat16"]).mean() < 1.0  # both ran, nearly equal
    assert cli.main(["derain", str(img), "-o", str(tmp_path / "h.png"), "--device", "cpu", "--precision", "float16"]) == 2
    assert "needs a CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "h.png").exists()
    with pytest.raises(SystemExit):
        cli.main(["derain", str(img), "--precision", "fp8"])


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert cli.main(["dehaze", str(tmp_path / "nope.tif")]) == 2
    assert "input not found" in capsys.readouterr().err
    img = io.write_image(tmp_path / "tiny.png", np.zeros((5, 5, 3), np.uint8))
    assert cli.main(["dehaze", str(img), "-o", str(tmp_path / "o.png")]) == 2
    assert "needs at least" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()
    assert cli.main(["dehaze", str(img), "-m", "dcp", "-O", "colour=red"]) == 2
    assert "has no option 'colour'" in capsys.readouterr().err


def test_cli_lists_methods_and_writes_samples(tmp_path, capsys):
    assert cli.main(["methods"]) == 0
    assert "dcp" in capsys.readouterr().out
    assert cli.main(["samples", str(tmp_path)]) == 0
    assert sorted(os.listdir(tmp_path)) == ["hazy_scene.png", "rainy_scene.png", "translation_source.png",
                                           "translation_target.png"]


def test_setting_values_are_parsed_into_numbers_flags_and_pairs():
    assert parse_option("steps=5") == ("steps", 5)
    assert parse_option("gan-weight=0.05") == ("gan_weight", 0.05)
    assert parse_option("asymmetric=off") == ("asymmetric", False)
    assert parse_option("transplant_gain=1,2.5") == ("transplant_gain", [1, 2.5])
    assert parse_option("rain_opacity=[0.1, 0.5]") == ("rain_opacity", [0.1, 0.5])
    assert parse_option("patch_features=flatten") == ("patch_features", "flatten")


# ----------------------------------------------------------------- nothing the user had is lost
@pytest.mark.parametrize("name", ["s.tif", "s.png", "s.zarr"])
def test_cli_refuses_to_write_over_its_input(tmp_path, capsys, monkeypatch, make_rgb_stack, name):
    data = make_rgb_stack(n=1)[0] if name.endswith(".png") else make_rgb_stack()
    src = io.write_image(tmp_path / name, data)
    monkeypatch.chdir(tmp_path)
    for out in (str(src), f"./{name}", f"sub/../{name}"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        assert cli.main(["derain", str(src), "-m", "directional", "-o", out]) == 2
        assert "is the input" in capsys.readouterr().err
        assert cli.main(["derain", str(src), "-m", "directional", "-o", str(tmp_path / "ok.tif"),
                         "--rain-layer", out]) == 2
        capsys.readouterr()
    np.testing.assert_array_equal(np.asarray(io.read_image(src)), data)
    assert not (tmp_path / "ok.tif").exists()


def test_cli_rain_layer_from_one_pass_of_a_lazy_stack(tmp_path, capsys):
    rng = np.random.default_rng(1)
    data = (rng.random((3, 48, 48)) * 200).astype(np.uint8)
    data[:, :, ::7] = 250  # streaks
    src = io.write_image(tmp_path / "s.tif", data)
    out, rain = tmp_path / "b.tif", tmp_path / "r.tif"
    assert cli.main(["derain", str(src), "-m", "directional", "-o", str(out), "--rain-layer", str(rain)]) == 0
    b, r = tifffile.imread(out), tifffile.imread(rain)
    expect = np.clip(data.astype(np.float32) - b.astype(np.float32), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(r, expect)
    assert r.mean() > 1


def test_unwritable_second_target_fails_before_anything_is_written(tmp_path, capsys, make_rgb_stack):
    src = io.write_image(tmp_path / "s.png", make_rgb_stack(n=1)[0])
    out = tmp_path / "keep.tif"
    out.write_bytes(b"precious")
    for bad in ("/proc/r.tif", str(tmp_path / "missing" / "r.tif"), str(tmp_path / "r.txt")):
        assert cli.main(["derain", str(src), "-m", "directional", "-o", str(out), "--rain-layer", bad]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and ".partial" not in err
        assert out.read_bytes() == b"precious"
    assert cli.main(["derain", str(src), "-m", "directional", "-o", ""]) == 2
    assert "no output file name" in capsys.readouterr().err
