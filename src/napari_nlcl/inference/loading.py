"""Networks from model files, for inference: built from the file's inference block, never from training code.

A model file written by this version carries an inference block
(:func:`napari_nlcl.nets.inference_block`), so the network is rebuilt from
:mod:`napari_nlcl.nets` alone.  Older files without one are read through
their training recipe (:func:`napari_nlcl.training.load_recipe`), which imports
the training code; :func:`napari_nlcl.training.checkpoints.add_inference_block`
adds the block to such a file, in place.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from napari_nlcl.modelfile import WHICH, model_networks, read_checkpoint


def load_model_file(path: str | os.PathLike, *, which: str = "best") -> Any:
    """The inference network of a model file, on the CPU, in eval mode.

    ``which``: the weights a run kept (``"best"``: the best monitored step's, where
    it kept one) or its last step's (``"last"``), see :func:`napari_nlcl.modelfile.model_networks`.
    """
    from napari_nlcl import nets

    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    payload = read_checkpoint(path)
    block = payload.get("inference")
    if not block:  # a file from before inference blocks: rebuild its recipe
        from napari_nlcl.training.checkpoints import load_recipe

        recipe, _ = load_recipe(path, device="cpu", which=which)
        return recipe.inference_model().eval()
    try:
        net = nets.build(block)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    states = model_networks(payload, which)
    if block.get("network") not in states:
        raise ValueError(f"{path} is a damaged napari-nlcl model file (no weights for its network "
                         f"{block.get('network')!r}); use another copy or train it again")
    try:
        net.load_state_dict(states[block["network"]])
    except RuntimeError as exc:
        raise ValueError(f"{path}: the weights do not fit the network: {exc}") from None
    return net.eval()


def load_shipped_model(path: str | os.PathLike, *, name: str, what: str) -> Any:
    """The inference network of a model file shipped in the package, renamed, in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"the default {what} weights are missing ({path}); reinstall napari-nlcl or pass a model file"
        )
    model = load_model_file(path)
    model.info = replace(model.info, name=name)
    return model.eval()
