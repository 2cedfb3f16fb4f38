"""Choosing an encoder by name: :func:`load_encoder` and :func:`default_encoder`."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence

from torch import Tensor

from .trunks import DEFAULT_LAYERS, FrozenTrunk, RandomEncoder, TinyEncoder, VGG19Features
from .weight_files import vgg19_cache_path

__all__ = ["ENCODER_NAMES", "default_encoder", "load_encoder"]


#: Names accepted by :func:`load_encoder`.
ENCODER_NAMES: tuple[str, ...] = ("tiny", "vgg19", "random", "default")


# ---------------------------------------------------------------------------------------------
# Choosing an encoder
# ---------------------------------------------------------------------------------------------


def load_encoder(
    name: str = "tiny",
    *,
    layers: Sequence[str] = DEFAULT_LAYERS,
    weights: None | str | os.PathLike | Mapping[str, Tensor] = None,
    normalize_input: bool = True,
    seed: int = 0,
) -> FrozenTrunk:
    """Build a frozen encoder by name.

    Parameters
    ----------
    name : {"tiny", "vgg19", "random", "default"}
        ``"tiny"``: :class:`TinyEncoder` with the shipped weights (or
        ``weights``).  ``"vgg19"``: :class:`VGG19Features` with ImageNet weights
        (downloaded once; or a local file given as ``weights``).
        ``"random"``: :class:`RandomEncoder` with ``seed``.  ``"default"``:
        :func:`default_encoder`.
    layers : sequence of str
        Layers to return (same names for every trunk).
    weights : path or state dict, optional
        Overrides the default weights of ``"tiny"`` and ``"vgg19"``.

    Returns
    -------
    nn.Module
        Frozen, in eval mode, with ``.name``, ``.layers``, ``.channels``,
        ``.strides`` and ``.weights_source``.
    """
    if not isinstance(name, str) or name.lower() not in ENCODER_NAMES:
        raise ValueError(f"unknown encoder {name!r}; choose one of {list(ENCODER_NAMES)}")
    name = name.lower()
    if weights is not None and name in ("random", "default"):
        raise ValueError(f"encoder {name!r} takes no weights; use 'tiny' or 'vgg19' with a file")
    if name == "tiny":
        return TinyEncoder(layers, weights="default" if weights is None else weights,
                           normalize_input=normalize_input)  # fmt: skip
    if name == "vgg19":
        return VGG19Features(layers, weights="imagenet" if weights is None else weights,
                             normalize_input=normalize_input)  # fmt: skip
    if name == "random":
        return RandomEncoder(seed, layers, normalize_input=normalize_input)
    return default_encoder(layers, normalize_input=normalize_input)


def default_encoder(
    layers: Sequence[str] = DEFAULT_LAYERS, *, normalize_input: bool = True
) -> FrozenTrunk:
    """ImageNet VGG19 if its file is already in the torch hub cache, else :class:`TinyEncoder`.

    Nothing is downloaded.  Which one was chosen is in the result's ``.name``
    (``"vgg19"`` or ``"tiny"``); a cached file that cannot be read gives a
    warning and the tiny encoder.
    """
    cached = vgg19_cache_path()
    if cached.is_file():
        try:
            return VGG19Features(layers, weights=cached, normalize_input=normalize_input)
        except ValueError as exc:
            warnings.warn(
                f"ignoring the cached VGG19 weights ({exc}); using the offline tiny encoder",
                RuntimeWarning,
                stacklevel=2,
            )
    return TinyEncoder(layers, normalize_input=normalize_input)
