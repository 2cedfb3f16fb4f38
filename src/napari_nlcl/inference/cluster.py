"""Lazy results on a ``dask.distributed`` cluster: the model travels once per worker, not per task.

A lazy result (:func:`napari_nlcl.predict` of a dask array) holds one task per
image plane.  What a task carries to name its model is decided by
:func:`task_model`:

* a model loaded by name or from a file (:func:`napari_nlcl.load_model`, the
  task functions) and not changed since: a :class:`ModelRef` of a few hundred
  bytes (the method name and options, or the file's path and SHA-256).  Each
  worker process builds the network on its first task and keeps it
  (:func:`resolve`), so a 40-plane stack on two workers loads the model twice,
  not forty times.  A model file must be readable at the same path on the
  workers (a shared file system, as on HPC clusters); its hash is checked.
* any other model (trained in this session, changed after loading) with an active
  ``distributed.Client``: scattered to every worker once (``client.scatter(...,
  broadcast=True)``); the tasks hold its future.
* otherwise the model object itself (the local schedulers share memory; nothing
  is copied).

A worker with several threads runs each task's network on one torch thread, so
``n_workers x threads_per_worker`` tasks do not oversubscribe the cores
(``dask`` worker processes already start with ``OMP_NUM_THREADS=1``), and the worker's
allocator is set back to reusing large blocks (:func:`_reuse_large_blocks`: dask's
``MALLOC_TRIM_THRESHOLD_`` halved the network's speed in a worker).

:func:`iter_computed` computes the planes of lazy arrays for a writer: one
plane at a time on the local scheduler (the network already uses every core),
and with an active client a window of planes in flight on the cluster at once,
returned in order.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: models a process keeps built (LRU); a worker rarely sees more than one or two
CACHE_SIZE = 4
_CACHE: OrderedDict = OrderedDict()
_LOCK = threading.Lock()
_THREADS_SET = False


@dataclass(frozen=True)
class ModelRef:
    """A small, hashable name for a model that any process can rebuild.

    ``kind`` is ``"method"`` (``name`` the method's factory, ``"package.module:callable"``,
    so a worker needs the package, not the registration; ``options`` its keyword options as
    sorted JSON) or ``"file"`` (``name`` an absolute path, ``digest`` the SHA-256 of the
    file's bytes).
    """

    kind: str
    task: str | None
    name: str
    options: str = "{}"
    digest: str = ""

    def build(self):
        from napari_nlcl import api

        if self.kind == "method":
            import importlib

            module, attr = self.name.split(":")
            try:
                factory = getattr(importlib.import_module(module), attr)
            except (ImportError, AttributeError) as exc:
                raise ImportError(f"this dask worker cannot import {self.name} ({exc}); install the "
                                  "package that provides it on the workers") from exc
            return factory(**json.loads(self.options))
        path = Path(self.name)
        if not path.is_file():
            raise FileNotFoundError(
                f"model file {path} is not readable on this dask worker; put it on a file system "
                "the workers share, or load it in memory first (then it is sent to each worker once)")
        if file_digest(path) != self.digest:
            raise ValueError(f"model file {path} changed after the lazy result was made; make it again")
        return api.load_model(path, task=self.task)


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(model: Any) -> str:
    """A hash of a model's weights and settings (to tell whether it changed since loading)."""
    h = hashlib.sha1()
    info = getattr(model, "info", None)
    h.update(json.dumps(getattr(info, "config", {}), sort_keys=True, default=repr).encode())
    state = model.state_dict() if hasattr(model, "state_dict") else {}
    for key, value in state.items():
        h.update(key.encode())
        t = value.detach().cpu()
        h.update(str(t.dtype).encode())
        h.update((t.float() if t.is_floating_point() else t.long()).contiguous().numpy().tobytes())
    return h.hexdigest()


def tag(model: Any, ref: ModelRef | None) -> Any:
    """Record that ``model`` is what ``ref`` builds (done by :func:`napari_nlcl.load_model`)."""
    if ref is None:
        return model
    try:
        model._nlcl_ref = ref
        model._nlcl_fingerprint = fingerprint(model)
    except (AttributeError, TypeError):  # an object that takes no attributes: never referenced
        pass
    return model


def method_ref(name: str, task: str | None, options: dict) -> ModelRef | None:
    """The reference of a registered method with ``options`` (None if they are not JSON)."""
    from napari_nlcl import registry

    try:
        text = json.dumps(options, sort_keys=True)
    except (TypeError, ValueError):
        return None  # e.g. an array as an option: the model travels as an object instead
    return ModelRef("method", task, registry.get(name, task).factory, text)


def file_ref(path: str | Path, task: str | None) -> ModelRef:
    path = Path(path).resolve()
    return ModelRef("file", task, str(path), digest=file_digest(path))


def active_client():
    """The current ``distributed.Client``, or None (also when distributed is not installed)."""
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:
        return None


def task_model(model: Any) -> Any:
    """What the tasks of a lazy result carry to name ``model`` (see the module docstring)."""
    ref = getattr(model, "_nlcl_ref", None)
    if isinstance(ref, ModelRef) and getattr(model, "_nlcl_fingerprint", None) == fingerprint(model):
        _remember(ref, model)  # this process already has it: the local schedulers reuse it
        return ref
    client = active_client()
    if client is not None:
        return client.scatter(model, broadcast=True, hash=False)
    return model


def resolve(model: Any) -> Any:
    """The network a task names (:func:`task_model`), built once per process for a reference."""
    if not isinstance(model, ModelRef):
        _one_thread_per_task()
        return model
    with _LOCK:
        if model in _CACHE:
            _CACHE.move_to_end(model)
            net = _CACHE[model]
        else:
            net = None
    if net is None:
        _one_thread_per_task()
        net = _remember(model, model.build())
    return net


def _remember(ref: ModelRef, net: Any) -> Any:
    with _LOCK:
        _CACHE[ref] = net
        _CACHE.move_to_end(ref)
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return net


def _one_thread_per_task() -> None:
    """Once per dask worker process: one torch thread per task when the worker has several
    threads, and glibc's allocator back to its adaptive behaviour (:func:`_reuse_large_blocks`)."""
    global _THREADS_SET
    if _THREADS_SET:
        return
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return
    _THREADS_SET = True
    _reuse_large_blocks()
    nthreads = getattr(getattr(worker, "state", worker), "nthreads", 1) or 1
    if nthreads > 1:
        import torch

        torch.set_num_threads(1)


def _reuse_large_blocks() -> bool:
    """Let glibc keep freed blocks of up to 32 MB for reuse (Linux only; True if set).

    dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also freezes
    glibc's mmap threshold at its 128 kB default: every activation tensor of a network is then
    a fresh ``mmap`` whose pages fault in on first touch and are unmapped when freed.  The
    derain network ran at half speed in a worker (0.68 s against 0.34 s per 1024x1024 frame
    on one thread, measured).  Raising the mmap and trim thresholds restores the speed; memory
    freed at the top of the heap is returned past 256 MB.
    """
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (e.g. musl)
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024)) and bool(
        libc.mallopt(m_trim_threshold, 256 * 1024 * 1024))


def iter_computed(arrays: Sequence[Any], indices: Sequence[tuple], *, window: int | None = None
                  ) -> Iterator[list]:
    """``[array[idx] for array in arrays]`` as numpy, for each ``idx`` in order, computed together
    (work the arrays share runs once); on a cluster, ``window`` planes in flight at once
    (default: twice the cluster's threads)."""
    import dask
    import numpy as np

    client = active_client()
    if client is None:
        for idx in indices:
            yield [np.asarray(p) for p in dask.compute(*[a[idx] for a in arrays])]
        return
    if window is None:
        window = 2 * max(1, sum(client.nthreads().values()))
    pending: deque = deque()
    todo = iter(indices)
    for idx in todo:
        pending.append(client.compute([a[idx] for a in arrays]))
        if len(pending) >= window:
            break
    while pending:
        futures = pending.popleft()
        yield [np.asarray(f.result()) for f in futures]
        nxt = next(todo, None)
        if nxt is not None:
            pending.append(client.compute([a[nxt] for a in arrays]))
