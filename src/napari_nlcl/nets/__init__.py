"""The networks: derain U-Net, AECR-Net dehazer, CUT generator, discriminators and shared layers.

A network that can be applied on its own registers its class here under an
architecture name (:func:`register_arch`).  Model files then carry an
*inference block* (:func:`inference_block`): the architecture name, its config
(the class's ``Config`` dataclass as JSON), its constructor options and which
of the file's networks holds its weights, so :func:`build` makes the network
for inference from this package alone, without the training recipe.

>>> from napari_nlcl.nets import arch_names
>>> arch_names()
['aecr', 'cut-resnet', 'nlcl-unet']
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from napari_nlcl.named import Registry

# architecture name -> "module:Class"; the class has a ``Config`` dataclass, takes
# ``(config, *, name=..., **build_options)`` and keeps ``config``, ``info`` and ``build_options``
_ARCHS = Registry("network architecture", {
    "nlcl-unet": "napari_nlcl.nets.derain:DerainNet",
    "aecr": "napari_nlcl.nets.aecr:AECRNet",
    "cut-resnet": "napari_nlcl.nets.translate:TranslateNet",
})


def register_arch(name: str, path: str) -> None:
    """Register network class ``"module:Class"`` under ``name`` (model files refer to it)."""
    _ARCHS.register(name, path)


def arch_names() -> list[str]:
    return _ARCHS.names()


def arch_class(name: str) -> type:
    return _ARCHS.load(name)


def arch_of(net: Any) -> str:
    """The registered name of ``net``'s class."""
    name = _ARCHS.name_of(type(net))
    if name is None:
        raise ValueError(f"{type(net).__name__} is not a registered architecture; register it with "
                         "napari_nlcl.nets.register_arch(name, 'module:Class')")
    return name


def inference_block(net: Any, network: str) -> dict[str, str]:
    """What a model file needs to rebuild ``net`` for inference; its weights are ``networks[network]``."""
    from napari_nlcl.modelfile import jsonable

    options = {"name": net.info.name, **getattr(net, "build_options", {})}
    return {"arch": arch_of(net), "task": net.info.task, "network": network,
            "config": json.dumps(jsonable(net.config)), "options": json.dumps(options)}


def build(block: Mapping[str, Any]) -> Any:
    """The network an inference block describes, with fresh weights (load them next)."""
    from napari_nlcl.modelfile import config_from_dict

    cls = arch_class(block["arch"])
    try:
        config = config_from_dict(cls.Config, json.loads(block["config"]))
        options = json.loads(block.get("options") or "{}")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the model's network settings do not read ({exc}); is napari-nlcl up to date?") from None
    return cls(config, **options)


__all__ = ["arch_class", "arch_names", "arch_of", "build", "inference_block", "register_arch"]
