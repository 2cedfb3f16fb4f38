"""Encoder weight files: safe reading, the ImageNet VGG19 download, the shipped offline file."""

from __future__ import annotations

import os
import pickle
import re
import urllib.error
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "TINY_WEIGHTS_FILE",
    "TINY_WEIGHTS_SHA256",
    "VGG19_FILENAME",
    "VGG19_URL",
    "download_vgg19",
    "read_weights_file",
    "shipped_tiny_weights",
    "vgg19_cache_path",
]


#: torchvision's ImageNet VGG19 weights; ``dcbb9e9d`` is the prefix of the file's SHA-256.
VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
VGG19_FILENAME = VGG19_URL.rsplit("/", 1)[-1]

#: The offline encoder's weights, package data of ``napari_nlcl.weights``.
TINY_WEIGHTS_FILE = "tiny_encoder.pt"
#: SHA-256 of that file as written by ``scripts/make_offline_encoder.py`` (seed 0).
TINY_WEIGHTS_SHA256 = "c4f33e21f124f9955286d81d33109d8cf6ead154fd886fc544edddec45d45e89"


def _unsafe_global(exc: BaseException) -> str | None:
    match = re.search(r"GLOBAL ([\w.]+)", str(exc))
    return match.group(1) if match else None


def read_weights_file(path: str | os.PathLike) -> Any:
    """Read a state dict from a ``.pt``/``.pth`` (or ``.safetensors``) file, never unpickling code.

    Returns the object the file holds (normally a ``dict[str, Tensor]``; the
    encoders check keys and shapes).

    ``.pt``/``.pth`` files go through ``torch.load(..., weights_only=True)``;
    files holding pickled Python objects other than tensors and plain
    containers are refused with a ``ValueError``, as are corrupt files.
    ``.safetensors`` files need the optional ``safetensors`` package.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {str(path)!r}")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ImportError(
                f"{path.name} is a .safetensors file: install the 'safetensors' package to read "
                "it, or pass the .pth file instead"
            ) from None
        try:
            return dict(load_file(str(path), device="cpu"))
        except Exception as exc:
            raise ValueError(f"could not read the safetensors file {str(path)!r}: {exc}") from exc
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        name = _unsafe_global(exc)
        if name is not None:
            raise ValueError(
                f"refused to load {str(path)!r}: it stores a pickled Python object ({name}), "
                "not only tensors. Only plain state dicts are loaded (torch.load with "
                "weights_only=True), because unpickling can run arbitrary code. If you trust "
                "the file, load it yourself and re-save `model.state_dict()` with torch.save."
            ) from exc
        raise ValueError(
            f"could not read {str(path)!r}: not a PyTorch weights file, or the file is corrupt "
            f"or truncated (an interrupted download?): {str(exc).splitlines()[0]}"
        ) from exc
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(
            f"could not read {str(path)!r}: the file is corrupt or truncated (an interrupted "
            f"download?) or not a PyTorch weights file: {first}"
        ) from exc
    return obj


def vgg19_cache_path() -> Path:
    """Where ``torch.hub`` keeps (or would keep) the downloaded ImageNet VGG19 file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILENAME


def download_vgg19() -> Any:
    try:
        return torch.hub.load_state_dict_from_url(
            VGG19_URL, progress=True, check_hash=True, map_location="cpu", weights_only=True
        )
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise OSError(
            f"could not download the ImageNet VGG19 weights from {VGG19_URL} ({exc}); is this "
            "machine offline? On a machine with internet, download that file "
            f"({VGG19_FILENAME}, about 550 MB), copy it here and pass "
            f"weights='/path/to/{VGG19_FILENAME}' (or put it in {vgg19_cache_path().parent}, "
            "where torch.hub finds it), or use the offline encoder: load_encoder('tiny') or "
            "default_encoder()."
        ) from exc
    except (pickle.UnpicklingError, RuntimeError) as exc:
        cached = vgg19_cache_path()
        if not cached.is_file():  # e.g. a failed hash check of a fresh download
            raise
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(
            f"the cached VGG19 file {str(cached)!r} could not be read ({first}); "
            "delete it to download it again"
        ) from exc


def shipped_tiny_weights() -> dict[str, Tensor]:
    ref = resources.files("napari_nlcl.weights").joinpath(TINY_WEIGHTS_FILE)
    if not ref.is_file():
        raise FileNotFoundError(
            f"the offline encoder weights napari_nlcl/weights/{TINY_WEIGHTS_FILE} are missing "
            "from this installation; reinstall napari-nlcl, or recreate them with "
            "scripts/make_offline_encoder.py"
        )
    with resources.as_file(ref) as path:
        return read_weights_file(path)
