"""The viewer's layers as the widgets see them: which image layers to offer, when to refresh,
and how a result is shown as a layer."""

from __future__ import annotations

from typing import Any


def image_layers(viewer: Any) -> list[tuple[str, Any]]:
    """(name, layer) of the viewer's image layers, for combo boxes."""
    from napari.layers import Image

    return [(layer.name, layer) for layer in viewer.layers if isinstance(layer, Image)]


def preferred_layer(viewer: Any) -> Any:
    """The image layer a widget offers first: the selected one (napari's convention: what the
    user is looking at, or the last opened), else the first image layer, else None."""
    from napari.layers import Image

    active = viewer.layers.selection.active
    if isinstance(active, Image):
        return active
    layers = image_layers(viewer)
    return layers[0][1] if layers else None


def follow_viewer(widget: Any, viewer: Any, *, on_layers: Any, on_library: Any) -> None:
    """Call ``on_layers`` when layers come, go or move and ``on_library`` when saved models change.

    The library signal is module-wide, so the widget disconnects itself when Qt
    destroys it (a closed dock widget must not be called again).
    """
    from napari_nlcl.library import changed

    for event in (viewer.layers.events.inserted, viewer.layers.events.removed,
                  viewer.layers.events.reordered):
        event.connect(on_layers)

    def refresh(*_: Any) -> None:
        try:
            on_library()
        except RuntimeError:  # the Qt side is gone already
            changed.disconnect(refresh)

    changed.connect(refresh)
    widget.native.destroyed.connect(lambda *_: changed.disconnect(refresh))


def block_on_screen(viewer: Any, layer: Any, lazy: Any) -> tuple[int, ...]:
    """The block of ``lazy`` (the result of ``layer``, one plane per block) that ``viewer`` shows now."""
    lead = len(lazy.numblocks) - (3 if layer.rgb else 2)
    try:
        point = layer.world_to_data(viewer.dims.point)
    except Exception:  # noqa: BLE001 - any dims mismatch: the first plane
        point = [0] * layer.ndim
    idx = [min(max(int(round(float(v))), 0), n - 1) for v, n in zip(point[:lead], lazy.numblocks[:lead])]
    return tuple(idx) + (0,) * (len(lazy.numblocks) - lead)


def put_image(viewer: Any, name: str, data: Any, like: Any) -> None:
    """Show ``data`` as layer ``name``, styled like layer ``like`` (its colormap too); an existing
    layer of that name is updated in place when it has the same shape and kind."""
    existing = viewer.layers[name] if name in viewer.layers else None
    if existing is not None and getattr(existing, "rgb", None) == like.rgb and \
            existing.data.shape == data.shape:
        existing.data = data
        existing.contrast_limits = like.contrast_limits
    else:
        if existing is not None:
            viewer.layers.remove(existing)
        viewer.add_image(
            data, name=name, rgb=like.rgb, contrast_limits=like.contrast_limits,
            colormap=None if like.rgb else like.colormap, scale=like.scale,
            translate=like.translate,
        )


def replace_image(viewer: Any, name: str, data: Any, like: Any) -> None:
    """Show ``data`` as a new layer ``name`` (replacing one of that name) at ``like``'s place and
    contrast."""
    if name in viewer.layers:
        viewer.layers.remove(name)
    viewer.add_image(data, name=name, rgb=like.rgb, contrast_limits=like.contrast_limits,
                     scale=like.scale, translate=like.translate)
