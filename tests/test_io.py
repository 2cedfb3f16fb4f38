"""File reading and writing (napari_nlcl.io): atomic, lazy, nothing left behind."""

from __future__ import annotations

import os

import dask.array as da
import numpy as np
import pytest
import tifffile

from napari_nlcl import io


def test_tiff_stack_roundtrip_is_lazy(tmp_path, make_rgb_stack):
    data = make_rgb_stack()
    path = io.write_image(tmp_path / "s.tif", data)
    back = io.read_image(path)
    assert isinstance(back, da.Array) and back.shape == data.shape
    np.testing.assert_array_equal(back.compute(), data)


def test_zarr_roundtrip(tmp_path, make_rgb_stack):
    data = make_rgb_stack()
    io.write_image(tmp_path / "s.zarr", da.from_array(data, chunks=(1, 40, 50, 3)))
    back = io.read_image(tmp_path / "s.zarr")
    np.testing.assert_array_equal(np.asarray(back), data)
    io.write_image(tmp_path / "s.zarr", data[:2])  # overwrite replaces it whole
    assert io.read_image(tmp_path / "s.zarr").shape[0] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["s.zarr"]  # no temporaries left


def test_folder_is_a_lazy_stack_in_natural_order(tmp_path, make_rgb_stack):
    data = make_rgb_stack(n=3)
    for i, name in enumerate(["f10.png", "f2.png", "f1.png"]):
        io.write_image(tmp_path / name, data[i])
    stack = io.read_image(tmp_path)
    assert isinstance(stack, da.Array) and stack.shape == (3, 40, 50, 3)
    np.testing.assert_array_equal(stack[0].compute(), data[2])  # f1
    np.testing.assert_array_equal(stack[2].compute(), data[0])  # f10


def test_folder_with_mixed_sizes_fails_clearly(tmp_path):
    io.write_image(tmp_path / "a.png", np.zeros((10, 10), np.uint8))
    io.write_image(tmp_path / "b.png", np.zeros((12, 10), np.uint8))
    stack = io.read_image(tmp_path)
    with pytest.raises(ValueError, match="images of one size"):
        stack.compute()


def test_failed_write_leaves_nothing_and_keeps_old_file(tmp_path):
    target = tmp_path / "out.tif"
    target.write_bytes(b"precious")

    class Exploding:
        shape = (3, 10, 10)
        dtype = np.dtype(np.uint8)
        nbytes = 300

        def __getitem__(self, idx):
            if idx == (2,):
                raise RuntimeError("disk on fire")
            return np.zeros((10, 10), np.uint8)

    with pytest.raises(RuntimeError, match="disk on fire"):
        io.write_image(target, Exploding())
    assert target.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]


@pytest.mark.parametrize(
    "name,data,exc,match",
    [
        ("x.gif", np.zeros((4, 4), np.uint8), ValueError, "use one of"),
        ("missing/x.png", np.zeros((4, 4), np.uint8), FileNotFoundError, "does not exist"),
        ("x.png", np.zeros((2, 8, 8), np.uint8), ValueError, "write .tif or .zarr"),
        ("x.png", np.full((4, 4), 7.5), ValueError, "8-bit"),
    ],
)
def test_write_errors(tmp_path, name, data, exc, match):
    with pytest.raises(exc, match=match):
        io.write_image(tmp_path / name, data)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_read_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        io.read_image(tmp_path / "nope.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="could not read"):
        io.read_image(tmp_path / "bad.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        io.read_image(tmp_path / "empty")


def test_write_images_computes_shared_planes_once(tmp_path):
    import dask

    calls = []

    def plane(i):
        calls.append(i)
        return np.full((8, 8), i, np.float32)

    planes = [da.from_delayed(dask.delayed(plane)(i), (8, 8), np.float32) for i in range(4)]
    background = da.stack(planes)
    io.write_images([(tmp_path / "b.zarr", background), (tmp_path / "r.tif", 10 - background)])
    assert sorted(calls) == [0, 1, 2, 3]
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "r.tif")[:, 0, 0], [10, 9, 8, 7])


def test_interrupted_zarr_write_leaves_nothing_behind(tmp_path):
    """Ctrl+C at a random moment of a zarr write: the temporary folder is always removed."""
    import signal
    import threading

    data = da.from_array(np.random.default_rng(0).random((40, 128, 128)).astype(np.float32),
                         chunks=(1, 128, 128))
    rng = np.random.default_rng(2)
    for attempt in range(6):
        timer = threading.Timer(float(rng.uniform(0.005, 0.08)), os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        try:
            io.write_image(tmp_path / "out.zarr", data)
        except KeyboardInterrupt:
            pass
        finally:
            timer.join()
        leftovers = [p.name for p in tmp_path.iterdir() if p.name != "out.zarr"]
        assert leftovers == [], (attempt, leftovers)
        (tmp_path / "out.zarr").exists() and __import__("shutil").rmtree(tmp_path / "out.zarr")
