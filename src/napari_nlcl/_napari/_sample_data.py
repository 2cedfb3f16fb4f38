"""napari sample-data contributions (File > Open Sample > NLCL Restore)."""

from __future__ import annotations

from napari_nlcl import samples


def _layer(sample: samples.Sample) -> list[tuple]:
    return [(sample.data, {"name": sample.name, **sample.layer_kwargs}, "image")]


def hazy_scene() -> list[tuple]:
    return _layer(samples.hazy_scene())


def rainy_scene() -> list[tuple]:
    return _layer(samples.rainy_scene())


def rainy_stack() -> list[tuple]:
    return _layer(samples.rainy_stack())


def translation_pair() -> list[tuple]:
    """Both domains of the translation sample as two layers; the source (domain A) is added last,
    so it is the selected layer that the Translate and Train widgets offer first."""
    return _layer(samples.translation_target()) + _layer(samples.translation_source())
