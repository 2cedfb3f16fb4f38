"""Lazy results on dask.distributed: the model travels as a reference or once per worker."""

from __future__ import annotations

import pickle

import dask.array as da
import numpy as np
import pytest
import torch

import napari_nlcl
from napari_nlcl import io
from napari_nlcl.inference import cluster


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    return (rng.random((6, 72, 96, 3)) * 255).astype(np.uint8)


def test_a_named_model_travels_as_a_reference(frames):
    stack = da.from_array(frames, chunks=(1, 72, 96, 3))
    lazy = napari_nlcl.derain(stack, device="cpu")
    graph = pickle.dumps(dict(lazy.__dask_graph__()))
    assert b"ModelRef" in graph  # the tasks name the model ...
    assert len(graph) < frames.nbytes + 50_000  # ... instead of carrying its 4 MB


def test_a_changed_model_is_not_rebuilt_from_its_name(frames):
    net = napari_nlcl.load_model("default", task="derain")
    assert isinstance(cluster.task_model(net), cluster.ModelRef)
    with torch.no_grad():
        net.head.bias.add_(0.01)  # no longer what "default" builds
    assert cluster.task_model(net) is net  # no client: the object itself, never a stale rebuild


def test_references_build_once_per_process_and_check_files(tmp_path, frames):
    ref = cluster.method_ref("dcp", "dehaze", {"omega": 0.9})
    assert hash(ref) == hash(cluster.method_ref("dcp", "dehaze", {"omega": 0.9}))
    a, b = cluster.resolve(ref), cluster.resolve(ref)
    assert a is b and a.omega == 0.9
    path = tmp_path / "m.pt"
    path.write_bytes(b"not a model")
    file_ref = cluster.file_ref(path, "derain")
    path.write_bytes(b"changed")
    with pytest.raises(ValueError, match="changed after the lazy result was made"):
        file_ref.build()
    path.unlink()
    with pytest.raises(FileNotFoundError, match="not readable on this dask worker"):
        file_ref.build()


def test_on_a_local_cluster_results_equal_local_compute(tmp_path, frames):
    distributed = pytest.importorskip("distributed")
    stack = da.from_array(frames, chunks=(1, 72, 96, 3))
    kw = dict(device="cpu", precision="float32")
    want_rain = napari_nlcl.derain(frames, **kw)
    want_haze = napari_nlcl.dehaze(frames, **kw)
    changed = napari_nlcl.load_model("dcp", task="dehaze")
    changed.omega = 0.8  # an in-memory model with no name: scattered once
    want_changed = napari_nlcl.dehaze(frames, changed, **kw)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as lc, distributed.Client(lc) as client:
        assert cluster.active_client() is client
        np.testing.assert_array_equal(napari_nlcl.derain(stack, **kw).compute(), want_rain)
        np.testing.assert_array_equal(napari_nlcl.dehaze(stack, **kw).compute(), want_haze)
        changed._nlcl_fingerprint = "edited"
        np.testing.assert_array_equal(napari_nlcl.dehaze(stack, changed, **kw).compute(), want_changed)
        # a writer on the cluster: planes in flight together, written in order, rain from one pass
        bg, rain = napari_nlcl.derain(stack, rain_layer=True, **kw)
        io.write_images([(tmp_path / "bg.zarr", bg), (tmp_path / "rain.zarr", rain)])
    np.testing.assert_array_equal(np.asarray(io.read_image(tmp_path / "bg.zarr")), want_rain)
    want_r = np.clip(frames.astype(int) - want_rain, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(io.read_image(tmp_path / "rain.zarr")), want_r)
    assert cluster.active_client() is None


def test_cli_scheduler_needs_a_reachable_address(tmp_path, capsys, frames):
    pytest.importorskip("distributed")
    from napari_nlcl import cli

    src = io.write_image(tmp_path / "s.tif", frames)
    assert cli.main(["derain", str(src), "-o", str(tmp_path / "o.zarr"), "--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert "cannot reach the dask scheduler" in capsys.readouterr().err
    assert not (tmp_path / "o.zarr").exists()


def test_worker_allocator_setting_applies_on_linux():
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("glibc only")
    assert cluster._reuse_large_blocks() is True
