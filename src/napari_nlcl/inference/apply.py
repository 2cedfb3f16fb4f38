"""The inference engine every model runs through.

:func:`predict` takes a numpy or dask array of any dimensionality, iterates
the leading axes (T, Z, ...), maps each image plane into the model's value
range, runs the model in overlapping tiles and maps the result back to the
input's dtype and intensity range.  numpy in gives numpy out; dask in gives a
lazy dask array out, one block per plane, computed only when asked.

Intensity normalisation (``value_range=None``)
    * ``uint8``, ``uint16``, ``int16``: the dtype's full range (0-255, 0-65535,
      -32768-32767).
    * floats: ``[0, 1]`` when the plane lies inside it, otherwise the plane's
      own minimum and maximum.
    * ``value_range="plane"``: every plane's own minimum and maximum (useful for
      16-bit microscopy that fills a small part of the dtype's range).
    * ``value_range=(low, high)``: a fixed range.
    Output is clipped to the range, rounded for integer dtypes and returned in
    the input's dtype.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_nlcl.checks import check_finite_plane, check_model, is_dask, plane_hw, validate_image
from napari_nlcl.inference.devices import is_oom, select_device, shrink_tile_after_oom
from napari_nlcl.inference.intensity import (
    from_model_channels,
    from_unit,
    plane_range,
    to_model_channels,
)
from napari_nlcl.inference.precision import resolve as resolve_precision
from napari_nlcl.inference.tiling import check_tiling_args
from napari_nlcl.model import ModelInfo

log = logging.getLogger(__name__)

DEFAULT_TILE = 1024


@dataclass(frozen=True)
class Plan:
    """What :func:`plan_inference` checked and decided for one call: model info, resolved channel
    axis, tiling, device, precision and value range.  :func:`iter_plan` and the dask blocks follow it."""

    info: ModelInfo
    axis: int | None
    tile: int
    overlap: int
    batch_size: int
    device: Any = "auto"
    precision: Any = "auto"
    amp: bool = False
    value_range: Any = None


@dataclass(frozen=True)
class Progress:
    """A progress event: ``done`` of ``total`` tiles over the whole array."""

    done: int
    total: int
    message: str = ""


# --------------------------------------------------------------------------- channels


# --------------------------------------------------------------------------- plane


def _iter_plane(
    plane: np.ndarray,
    model: Any,
    info: ModelInfo,
    *,
    device,
    tile: int,
    overlap: int,
    batch_size: int,
    precision: Any,
    value_range: Any,
) -> Generator[int, None, np.ndarray]:
    """One ``(H, W)`` or ``(H, W, C)`` plane through the model; yields tiles done."""
    import torch

    from napari_nlcl.inference.tiling import iter_tiled_apply

    check_finite_plane(plane)
    dtype = plane.dtype
    lo, hi = plane_range(plane, value_range)
    has_channels = plane.ndim == 3
    arr = plane.astype(np.float32)
    if not has_channels:
        arr = arr[..., None]
    arr = (arr - lo) / (hi - lo)
    alpha = None
    if arr.shape[-1] == 4 and info.in_channels in (3, 1):
        arr, alpha = arr[..., :3], arr[..., 3:]
    c = arr.shape[-1]
    x = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
    vlo, vhi = info.value_range
    x = x * (vhi - vlo) + vlo

    batch0, mode = to_model_channels(x, info)
    n = batch0.shape[0]
    globals_: dict[str, Any] = {}
    estimate = getattr(model, "estimate_globals", None)

    def run(batch, tiles):
        kw = {k: _tile_windows(v, tiles, info.size_multiple) if _is_map(v, xi) else _expand(v, batch.shape[0])
              for k, v in globals_.items()}
        with torch.inference_mode(), precision.autocast():
            y = model(precision.tensor(batch.to(device)),
                      **{k: v.to(device) if hasattr(v, "to") else v for k, v in kw.items()})
        return y.float().contiguous()

    margin = min(info.halo, max((overlap - 1) // 2, 0))
    outs = []
    done = 0
    for i in range(n):
        xi = batch0[i]
        tiles = _count(xi, tile, overlap, info)
        # a model that derives its globals from its own input needs no estimate for a one-tile plane
        own = getattr(model, "globals_from_input", False) and tiles == 1
        globals_ = {}
        if estimate is not None and not own:
            with torch.inference_mode(), precision.autocast():
                globals_ = {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v
                            for k, v in dict(estimate(precision.tensor(xi[None].to(device)))).items()}
        yi = yield from _offset(
            iter_tiled_apply(
                xi, run, tile=tile, overlap=overlap, margin=margin,
                multiple=info.size_multiple, batch_size=batch_size, pass_tiles=True,
            ),
            done,
        )
        done += tiles
        outs.append(yi)
    y = from_model_channels(torch.stack(outs), mode, c)
    y = ((y - vlo) / (vhi - vlo)).numpy().transpose(1, 2, 0)
    if alpha is not None:
        y = np.concatenate([y, alpha], axis=-1)
    if not has_channels:
        y = y[..., 0]
    return from_unit(y, lo, hi, dtype)


def _is_map(v, plane) -> bool:
    """A global that is a ``(1, C, H, W)`` map of the whole plane (cut per tile), not a statistic."""
    return hasattr(v, "ndim") and v.ndim == 4 and tuple(v.shape[-2:]) == tuple(plane.shape[-2:])


def _tile_windows(v, tiles, multiple: int):
    """Each tile's window of a plane-sized global map, padded as the tile batch is."""
    import torch

    from napari_nlcl.inference.tiling import pad_to_multiple

    return torch.cat([pad_to_multiple(v[:, :, t.y0:t.y1, t.x0:t.x1], multiple) for t in tiles])


def _expand(v, n: int):
    """Repeat a per-plane global (batch 1) to a batch of ``n`` tiles."""
    if hasattr(v, "shape") and v.ndim >= 1 and v.shape[0] == 1 and n > 1:
        return v.expand(n, *v.shape[1:])
    return v


def _offset(gen: Generator[int, None, Any], offset: int) -> Generator[int, None, Any]:
    """Re-yield ``gen``'s counts shifted by ``offset`` and return its result."""
    while True:
        try:
            d = next(gen)
        except StopIteration as stop:
            return stop.value
        yield offset + d


def _count(x, tile: int, overlap: int, info: ModelInfo) -> int:
    from napari_nlcl.inference.tiling import count_tiles

    return count_tiles(x.shape[-2], x.shape[-1], tile=tile, overlap=overlap, multiple=info.size_multiple)


def _planes_per_image(info: ModelInfo, c: int) -> int:
    return c if info.in_channels == 1 and c > 1 else 1


# --------------------------------------------------------------------------- numpy
def check_inputs(
    image: Any, model: Any, *, channel_axis: Any, tile: int, overlap: int | None, batch_size: int
) -> tuple[ModelInfo, int | None, int, int, int]:
    """Every check :func:`predict` makes before computing anything (:func:`plan_inference` runs it once).

    Returns ``(info, channel_axis, tile, overlap, batch_size)`` with the axis
    resolved and the default overlap filled in.
    """
    info = check_model(model)
    axis = validate_image(image, info, channel_axis)
    tile, overlap, batch_size = check_tiling_args(
        info, tile, overlap, batch_size, plane_hw(image.shape, axis)
    )
    return info, axis, tile, overlap, batch_size


def plan_inference(
    image: Any,
    model: Any,
    *,
    channel_axis: Any = "auto",
    tile: int = DEFAULT_TILE,
    overlap: int | None = None,
    device: Any = "auto",
    batch_size: int = 1,
    amp: bool = False,
    value_range: Any = None,
    precision: Any = "auto",
) -> Plan:
    """Check everything :func:`predict` needs, once, and return the :class:`Plan` it follows.

    Raises ``TypeError``/``ValueError`` with a message for bad input before any
    computing; a widget calls it in the main thread, then runs :func:`iter_plan`
    in a worker.  Arguments as in :func:`predict`.
    """
    info, axis, tile, overlap, batch_size = check_inputs(
        image, model, channel_axis=channel_axis, tile=tile, overlap=overlap, batch_size=batch_size
    )
    resolve_precision(precision, select_device(device), amp=amp)  # a bad precision fails now
    return Plan(info, axis, tile, overlap, batch_size, device, precision, amp, value_range)


def iter_predict(image: np.ndarray, model: Any, **kwargs: Any) -> Generator[Progress, None, np.ndarray]:
    """Generator form of :func:`predict` for numpy arrays.

    Yields :class:`Progress` after every batch of tiles and returns the result
    (``result = yield from iter_predict(...)``), so a GUI worker can report
    progress and stop between tiles.  Keyword arguments as in :func:`predict`.
    """
    if is_dask(image):
        raise TypeError("iter_predict takes a numpy array; use predict() for dask arrays")
    return (yield from iter_plan(image, model, plan_inference(image, model, **kwargs)))


def iter_plan(image: np.ndarray, model: Any, plan: Plan) -> Generator[Progress, None, np.ndarray]:
    """:func:`iter_predict` along a checked :class:`Plan` (no second check)."""
    info, axis, tile, overlap, batch_size = plan.info, plan.axis, plan.tile, plan.overlap, plan.batch_size
    dev = select_device(plan.device)
    prec = resolve_precision(plan.precision, dev, amp=plan.amp,
                             auto_bfloat16=info.auto_bfloat16).for_model(model)
    model.to(dev)
    model.eval()
    prec.prepare(model)

    moved = image if axis is None else np.moveaxis(image, axis, -1)
    plane_ndim = 2 if axis is None else 3
    lead = moved.shape[: moved.ndim - plane_ndim]
    h, w = moved.shape[len(lead) : len(lead) + 2]
    c = 1 if axis is None else moved.shape[-1]
    c_eff = 3 if (c == 4 and info.in_channels in (3, 1)) else c
    n_planes = int(np.prod(lead)) if lead else 1

    from napari_nlcl.inference.tiling import count_tiles

    while True:
        try:
            per_plane = count_tiles(h, w, tile=tile, overlap=overlap, multiple=info.size_multiple)
            total = n_planes * per_plane * _planes_per_image(info, c_eff)
            out = np.empty(moved.shape, dtype=image.dtype)
            done = 0
            yield Progress(0, total)
            for idx in np.ndindex(*lead) if lead else [()]:
                gen = _iter_plane(
                    np.asarray(moved[idx]), model, info, device=dev, tile=tile, overlap=overlap,
                    batch_size=batch_size, precision=prec, value_range=plan.value_range,
                )
                base = done
                while True:
                    try:
                        d = next(gen)
                    except StopIteration as stop:
                        out[idx] = stop.value
                        break
                    done = base + d
                    yield Progress(done, total)
            break
        except Exception as exc:  # noqa: BLE001 - re-raised unless it is an OOM
            if not is_oom(exc):
                raise
            tile = shrink_tile_after_oom(exc, dev, tile, overlap, info)
    return out if axis is None else np.moveaxis(out, -1, axis)


def run_plan(image: Any, model: Any, plan: Plan, progress: Callable[[Progress], None] | None = None):
    """:func:`predict` along a checked :class:`Plan`: numpy now, or a lazy dask array."""
    if is_dask(image):
        from napari_nlcl.inference.lazy import predict_dask

        return predict_dask(image, model, plan)
    gen = iter_plan(image, model, plan)
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(event)


# --------------------------------------------------------------------------- public
def predict(
    image: Any,
    model: Any,
    *,
    channel_axis: Any = "auto",
    tile: int = DEFAULT_TILE,
    overlap: int | None = None,
    device: Any = "auto",
    batch_size: int = 1,
    amp: bool = False,
    value_range: Any = None,
    progress: Callable[[Progress], None] | None = None,
    precision: Any = "auto",
):
    """Run ``model`` over every image plane of ``image``.

    Parameters
    ----------
    image : numpy.ndarray or dask.array.Array
        ``(..., H, W)`` grayscale or ``(..., H, W, C)`` with channels; leading
        axes (time, z, ...) are iterated.  uint8, uint16, int16 or float.
    model
        A network following :class:`napari_nlcl.model.Model`.
    channel_axis : int, None or "auto"
        Axis holding colour channels (scikit-image convention: ``None`` means
        grayscale).  ``"auto"`` treats a trailing axis of length 3 or 4 as
        RGB(A); alpha is passed through untouched.
    tile, overlap : int
        Tile size and overlap in pixels.  The default overlap is derived from
        the model's receptive field so that seams vanish; peak memory depends
        on ``tile`` and ``batch_size``, not on the image or stack size.
    device : str
        ``"auto"`` (CUDA, then MPS, then CPU) or an explicit torch device.
    batch_size : int
        Tiles per forward pass.
    amp : bool
        The older spelling of ``precision="float16"`` on CUDA (ignored elsewhere).
    value_range : None, "plane" or (low, high)
        How intensities are normalised; see the module documentation.
    progress : callable, optional
        Called with a :class:`Progress` after each batch of tiles (numpy only).
    precision : {"auto", "float32", "bfloat16", "float16"}
        Arithmetic of the network (:mod:`napari_nlcl.inference.precision`): ``"auto"`` runs bfloat16
        autocast on CPUs with native bfloat16 where the model allows it
        (``ModelInfo.auto_bfloat16``), else float32.

    Returns
    -------
    numpy.ndarray or dask.array.Array
        Same shape and dtype as ``image``; lazy when ``image`` is a dask array.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_nlcl import load_model, predict
    >>> hazy = np.random.default_rng(0).random((64, 64, 3), dtype=np.float32)
    >>> out = predict(hazy, load_model("dcp"), device="cpu")
    >>> out.shape, out.dtype
    ((64, 64, 3), dtype('float32'))
    """
    plan = plan_inference(image, model, channel_axis=channel_axis, tile=tile, overlap=overlap, device=device,
                          batch_size=batch_size, amp=amp, value_range=value_range, precision=precision)
    return run_plan(image, model, plan, progress)


