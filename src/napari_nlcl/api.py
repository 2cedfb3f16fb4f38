"""Function API: one call per task, numpy or dask in, the same kind out.

>>> import numpy as np, napari_nlcl
>>> hazy = np.full((64, 64, 3), 0.6, dtype=np.float32)
>>> napari_nlcl.dehaze(hazy, model="dcp", device="cpu").shape
(64, 64, 3)
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from napari_nlcl import registry
from napari_nlcl.model import ModelInfo

__all__ = ["available_methods", "dehaze", "derain", "finetune", "load_model", "translate"]

MODEL_SUFFIXES = {".pt", ".pth", ".ckpt"}


def available_methods(task: str | None = None) -> list[str]:
    """Names of the methods for ``task`` (``"dehaze"``, ...), or all of them."""
    return [spec.name for spec in registry.methods(task)]


def load_model(model: Any, *, task: str | None = None, **options: Any):
    """Return a ready model from a method name or a model instance.

    Parameters
    ----------
    model : str, path or Model
        A registered method name (see :func:`available_methods`), the path
        of a model file saved by napari-nlcl's trainer (loaded safely, with
        ``weights_only=True``), or an already built model, which is returned
        unchanged after a check.
    task : str, optional
        Restrict names to one task; a model of another task is rejected.
    **options
        Keyword options of the method (e.g. ``omega=0.9`` for ``"dcp"``).
    """
    from napari_nlcl.inference import cluster

    if isinstance(model, str) and model in available_methods(task):
        # tagged with its name, so that a dask cluster's workers build it once each (cluster.py)
        return cluster.tag(registry.build(model, task, **options), cluster.method_ref(model, task, options))
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if path.suffix.lower() in MODEL_SUFFIXES or path.exists() or len(path.parts) > 1:
            if options:
                raise TypeError("options can only be given with a method name, not a model file")
            from napari_nlcl.inference.loading import load_model_file

            model = load_model_file(path)
            model = cluster.tag(model, cluster.file_ref(path, task)) if path.is_file() else model
        else:
            return registry.build(str(model), task, **options)  # raises "unknown method"
    info = getattr(model, "info", None)
    if not isinstance(info, ModelInfo):
        raise TypeError(
            f"model must be a method name such as {available_methods(task)!r} or a model "
            f"with an `info` attribute, got {type(model).__name__}"
        )
    if options:
        raise TypeError("method options can only be given with a method name, not a built model")
    if task is not None and info.task != task:
        raise ValueError(f"model {info.name!r} is a {info.task} model, not a {task} model")
    return model


def _apply(task: str, image: Any, model: Any, options: dict[str, Any], **engine: Any):
    """What every task function does: the model of ``task`` (with its options) over ``image``."""
    from napari_nlcl.inference import predict

    return predict(image, load_model(model, task=task, **options), **engine)


def dehaze(
    image: Any,
    model: Any = "default",
    *,
    method: Any = None,
    channel_axis: Any = "auto",
    tile: int = 1024,
    overlap: int | None = None,
    device: str = "auto",
    batch_size: int = 1,
    amp: bool = False,
    value_range: Any = None,
    progress: Any = None,
    precision: str = "auto",
    **options: Any,
):
    """Remove haze from an image or a stack.

    Parameters
    ----------
    image : numpy.ndarray or dask.array.Array
        ``(..., H, W)`` or ``(..., H, W, 3/4)``; leading axes are iterated.
    model : str, path or Model
        ``"default"`` (the shipped AECR-Net-style network, RGB), ``"dcp"``
        (Dark Channel Prior, no training, any channels), the path of a model
        file trained with ``napari-nlcl train dehaze``, or a dehazing model.
    method
        Deprecated name of ``model`` (it warns).
    channel_axis, tile, overlap, device, batch_size, amp, value_range, progress, precision
        See :func:`napari_nlcl.inference.predict`.
    **options
        Method options, e.g. ``omega``, ``t0``, ``patch``, ``radius`` for DCP.

    Returns
    -------
    numpy.ndarray or dask.array.Array
        The dehazed image, same shape and dtype (lazy for dask input).

    Examples
    --------
    >>> from skimage import data
    >>> from napari_nlcl import dehaze, synth
    >>> hazy, t = synth.add_haze(data.astronaut(), beta=1.0, rng=0)
    >>> clear = dehaze(hazy, model="dcp", omega=0.95, device="cpu")
    """
    if method is not None:
        warnings.warn("dehaze(method=...) is deprecated; use model=... as for derain and translate",
                      DeprecationWarning, stacklevel=2)
        model = method
    return _apply("dehaze", image, model, options, channel_axis=channel_axis, tile=tile, overlap=overlap,
                  device=device, batch_size=batch_size, amp=amp, value_range=value_range, progress=progress,
                  precision=precision)


def derain(
    image: Any,
    model: Any = "default",
    *,
    rain_layer: bool = False,
    channel_axis: Any = "auto",
    tile: int = 1024,
    overlap: int | None = None,
    device: str = "auto",
    batch_size: int = 1,
    amp: bool = False,
    value_range: Any = None,
    progress: Any = None,
    precision: str = "auto",
    **options: Any,
):
    """Remove rain streaks from an image or a stack.

    Parameters
    ----------
    image : numpy.ndarray or dask.array.Array
        ``(..., H, W)`` or ``(..., H, W, 3/4)``; leading axes are iterated.
    model : str, path or Model
        ``"default"`` (the shipped NLCL network, RGB), ``"directional"`` (a
        classical baseline, no training), the path of a model file trained
        with ``napari-nlcl train derain``, or a deraining model.
    rain_layer : bool
        Also return the rain layer ``R = image - background``.
    channel_axis, tile, overlap, device, batch_size, amp, value_range, progress, precision
        See :func:`napari_nlcl.inference.predict`.
    **options
        Method options (see ``napari-nlcl methods derain``).

    Returns
    -------
    numpy.ndarray or dask.array.Array, or a pair of them
        The background, same shape and dtype as ``image`` (lazy for dask
        input); with ``rain_layer=True`` also the rain layer, in the same
        dtype (for integer images clipped at 0: rain only adds light).

    Examples
    --------
    >>> from skimage import data
    >>> from napari_nlcl import derain, synth
    >>> rainy, _ = synth.add_rain(data.coffee(), density=0.02, rng=0)
    >>> background, rain = derain(rainy, rain_layer=True, device="cpu")
    """
    background = _apply("derain", image, model, options, channel_axis=channel_axis, tile=tile, overlap=overlap,
                        device=device, batch_size=batch_size, amp=amp, value_range=value_range,
                        progress=progress, precision=precision)
    if not rain_layer:
        return background
    from napari_nlcl.inference.cluster import active_client

    if _is_lazy(background) and active_client() is None:
        # two lazy results of one model pass per plane, not two, however they are sliced (a
        # cluster computes both in one graph, where dask shares the pass itself)
        from napari_nlcl.inference import shared_planes

        background = shared_planes(background)
    from napari_nlcl.inference.intensity import residual

    return background, residual(image, background)


def _is_lazy(x: Any) -> bool:
    return type(x).__module__.startswith("dask")


def translate(
    image: Any,
    model: Any = "default",
    *,
    channel_axis: Any = "auto",
    tile: int = 1024,
    overlap: int | None = None,
    device: str = "auto",
    batch_size: int = 1,
    amp: bool = False,
    value_range: Any = None,
    progress: Any = None,
    precision: str = "auto",
):
    """Translate an image or a stack from domain A to domain B with a trained CUT/FastCUT model.

    Parameters
    ----------
    image : numpy.ndarray or dask.array.Array
        ``(..., H, W)`` or ``(..., H, W, C)``; leading axes are iterated.  Only
        the source domain is needed.
    model : str, path or Model
        The path of a model file trained with ``napari-nlcl train translate``
        (or the Train widget), a translation model, or ``"default"``: the
        shipped example that turns photos into the project's film look.
    channel_axis, tile, overlap, device, batch_size, amp, value_range, progress, precision
        See :func:`napari_nlcl.inference.predict`.  Whole images of any size
        are translated tile by tile; instance-norm statistics are taken from
        the whole plane first, so tiles leave no seams.

    Returns
    -------
    numpy.ndarray or dask.array.Array
        The translated image, same shape and dtype (lazy for dask input).

    Examples
    --------
    >>> from skimage import data
    >>> from napari_nlcl import translate
    >>> styled = translate(data.astronaut(), device="cpu")
    """
    return _apply("translate", image, model, {}, channel_axis=channel_axis, tile=tile, overlap=overlap,
                  device=device, batch_size=batch_size, amp=amp, value_range=value_range, progress=progress,
                  precision=precision)


def finetune(
    recipe: str,
    data: dict[str, Any],
    *,
    start: Any = "auto",
    steps: int = 300,
    crop: int = 128,
    batch_size: int = 4,
    lr: float | None = None,
    seed: int = 0,
    device: str = "auto",
    checkpoint: Any = None,
    monitor_every: int = 50,
    patience: int = 10,
    minutes: float = 0.0,
    precision: str = "auto",
    **settings: Any,
):
    """A ready :class:`~napari_nlcl.training.Trainer` that fine-tunes on your own data.

    Parameters
    ----------
    recipe : str
        Training recipe: ``"dehaze"``, ``"derain"`` or ``"translate"``.
    data : dict
        Source name -> data (numpy or dask array such as ``layer.data``, a
        folder or a file), e.g. ``{"hazy": viewer.layers["hazy"].data}``, ``{"rainy": ...}``
        or ``{"source": ..., "target": ...}``; for dehaze and derain, which
        sources are given decides the mode (see the recipe).
    start : "auto", "default", path or None
        The shipped default model, a model file, or ``None`` to train from
        scratch.  ``"auto"``: the shipped default for dehaze and derain
        (fine-tuning), scratch for translate (a new pair of domains).
    steps, crop, batch_size, lr, seed, device, precision
        Training settings (:class:`~napari_nlcl.training.TrainConfig`).  ``lr=None``
        takes the recipe's fine-tuning rate when starting from a model (1e-5 for
        derain), else 1e-4.
    checkpoint : path, optional
        Where to save (at the end, and when a ``fit_iter()`` loop is stopped).
    monitor_every, patience, minutes
        Every ``monitor_every`` steps the model is scored on proxy pairs built
        from ``data`` (:mod:`napari_nlcl.training.monitor`; fine-tuning derain and dehaze)
        and ``trainer.model`` is the best-scoring one; the run stops after
        ``patience`` scores without a gain (0: never) or after ``minutes`` (0: no budget;
        with a budget, ``steps`` is the most it may take).
    **settings
        Recipe settings, e.g. ``dark_weight=0.1``.

    Examples
    --------
    In the napari console::

        from napari_nlcl import finetune, dehaze
        layer = viewer.layers["hazy scene"]
        trainer = finetune("dehaze", {"hazy": layer.data}, steps=200)
        trainer.fit()  # blocks; the Train widget runs the same in a background thread
        viewer.add_image(dehaze(layer.data, model=trainer.model), rgb=True, name="fine-tuned")
    """
    from napari_nlcl.training.plan import plan_run

    return plan_run(recipe, data, start=start, settings=settings, steps=steps, crop=crop, batch_size=batch_size,
                    lr=lr, scratch_lr=1e-4, seed=seed, device=device, checkpoint=checkpoint,
                    monitor_every=monitor_every, patience=patience, minutes=minutes, precision=precision)
