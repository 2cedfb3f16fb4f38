"""Lazy results: a dask array in, a dask array out, one block per image plane, each model pass shared.

:func:`predict_dask` is what :func:`~napari_nlcl.inference.predict` does with a
dask array; :func:`shared_planes` makes two layers derived from one lazy
result (a background and its rain layer) share each plane's model pass.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np

from napari_nlcl.inference.apply import Plan, run_plan


def predict_dask(image, model: Any, plan: Plan):
    import dask.array as da

    axis = plan.axis
    moved = image if axis is None else da.moveaxis(image, axis, -1)
    plane_ndim = 2 if axis is None else 3
    n_lead = moved.ndim - plane_ndim
    chunks = (1,) * n_lead + tuple(moved.shape[n_lead:])
    moved = moved.rechunk(chunks)
    from napari_nlcl.inference.cluster import task_model

    # a name for the model that travels once per worker, not a copy in every task (cluster.py);
    # blocks hold whole planes with the channels last, and follow the plan checked here
    block_plan = replace(plan, axis=None if axis is None else moved.ndim - 1)
    out = da.map_blocks(
        partial(_run_block, plan=block_plan), moved, task_model(model), dtype=image.dtype, chunks=moved.chunks,
        name=f"nlcl-{plan.info.task}-{uuid.uuid4().hex}",
        meta=np.empty((0,) * moved.ndim, dtype=image.dtype),
    )
    return out if axis is None else da.moveaxis(out, -1, axis)


def _run_block(block: np.ndarray, model: Any, *, plan: Plan) -> np.ndarray:
    """One block of a lazy result: the model named by the task (:mod:`napari_nlcl.inference.cluster`)."""
    from napari_nlcl.inference.cluster import resolve

    return run_plan(block, resolve(model), plan)


def shared_planes(lazy: Any, *, keep: int = 8):
    """``lazy`` (a dask array) whose blocks are computed once and kept (the last ``keep``).

    A lazy background and the rain layer derived from it are two napari layers,
    sliced separately: without this the model runs twice for every plane browsed.
    Concurrent requests for one block wait for the first instead of computing it again.
    """
    import threading
    from collections import OrderedDict

    import dask.array as da

    cache: OrderedDict = OrderedDict()
    locks: dict = {}
    guard = threading.Lock()

    def block(block_id=None):
        key = tuple(block_id)
        with guard:
            if key in cache:
                cache.move_to_end(key)
                return cache[key]
            lock = locks.setdefault(key, threading.Lock())
        with lock:
            with guard:
                if key in cache:
                    return cache[key]
            value = np.asarray(lazy.blocks[key].compute(scheduler="sync"))
            with guard:
                cache[key] = value
                while len(cache) > keep:
                    cache.popitem(last=False)
                locks.pop(key, None)
            return value

    meta = np.empty((0,) * lazy.ndim, dtype=lazy.dtype)
    return da.map_blocks(block, chunks=lazy.chunks, dtype=lazy.dtype, meta=meta)
