"""Frozen VGG-style trunks: ImageNet VGG19, the tiny offline encoder, a frozen random network.

The offline encoder's weights
-----------------------------
``weights/tiny_encoder.pt`` (about 0.76 MB) is made by
``scripts/make_offline_encoder.py`` in a couple of seconds, without network
and without training, and is bit-for-bit reproducible from its seed:

1. ``conv1_1`` (16 filters) = the 8 leading principal components of the
   3x3 RGB patches of twelve images bundled with scikit-image (natural
   photographs, microscopy, textures), each with both signs.  PCA filters of
   natural images are the classic luminance / colour-opponent / oriented
   derivative filters, i.e. edge and colour detectors; the sign pairs keep
   both polarities through the ReLU.
2. ``conv2_1 .. conv5_1`` = seeded orthogonal random weights.  Random
   convolutional features are a known, working feature space for
   perceptual and texture losses (Ulyanov et al. 2018, "Deep Image Prior";
   He, Wang & Hopcroft 2016, "A powerful generative model using random
   weights for the deep image representation"); orthogonal rows keep
   distinct filters decorrelated.
3. Every convolution is then calibrated on those images, layer after layer
   (data-dependent initialisation, as in Mishkin & Matas 2016, "All you need
   is a good init", or Kraehenbuehl et al. 2016): per output channel, the
   weights are divided by the standard deviation of the pre-activation and
   the bias removes its mean.  Each channel thus fires on about half of the
   natural-image positions and every layer has unit-scale responses, so the
   layer weights of a multi-layer loss (AECR-Net's 1/32 ... 1) mean the same
   thing at every depth and no channel is dead.

Training the trunk (as an autoencoder or with a self-supervised objective) was
considered and not done: a few CPU minutes would not beat the calibrated
random features by a margin worth the lost reproducibility (training results
depend on thread count and BLAS), and the file would have to be regenerated
whenever the recipe changed.  When the ImageNet VGG19 file is available,
:func:`default_encoder` prefers it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ._common import check_layer_names, format_names
from .layout import TINY_CFG, VGG19_CFG, trunk_layout, trunk_state_shapes
from .weight_files import (
    TINY_WEIGHTS_FILE,
    VGG19_FILENAME,
    download_vgg19,
    read_weights_file,
    shipped_tiny_weights,
)

__all__ = ["DEFAULT_LAYERS", "FrozenTrunk", "RandomEncoder", "TinyEncoder", "VGG19Features"]


#: The layers AECR-Net's contrastive regulariser reads (the first ReLU of each block).
DEFAULT_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


# ---------------------------------------------------------------------------------------------
# Frozen convolutional trunks (VGG19 and the tiny offline encoder)
# ---------------------------------------------------------------------------------------------


class FrozenTrunk(nn.Module):
    """A frozen VGG-style ``features`` trunk built up to the deepest requested layer.

    Base class of :class:`VGG19Features` and :class:`TinyEncoder`; subclasses
    set ``cfg`` (torchvision's VGG config notation) and ``name``.  Attributes:
    ``layers``, ``channels`` and ``strides`` (one per requested layer),
    ``weights_source`` (where the weights came from), ``normalize_input``.
    """

    cfg: ClassVar[tuple[int | str, ...]]
    name: str = "trunk"
    #: keys of a weights file that are ignored (e.g. torchvision's classifier)
    ignored_prefixes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, layers: Sequence[str], *, normalize_input: bool):
        super().__init__()
        layers = check_layer_names(layers)
        layout = trunk_layout(self.cfg)
        index = {e["name"]: i for i, e in enumerate(layout)}
        unknown = [n for n in layers if n not in index]
        if unknown:
            raise ValueError(
                f"unknown layer name(s) {unknown} for {type(self).__name__}; available: "
                f"{format_names([e['name'] for e in layout], limit=100)}"
            )
        self._indices = tuple(index[n] for n in layers)
        depth = max(self._indices) + 1
        modules: list[nn.Module] = []
        for e in layout[:depth]:
            if e["kind"] == "conv":
                modules.append(nn.Conv2d(e["in_channels"], e["channels"], 3, padding=1))
            elif e["kind"] == "relu":
                modules.append(nn.ReLU(inplace=False))  # conv outputs may be tapped
            else:
                modules.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*modules)
        self.layers = tuple(layers)
        self.channels = tuple(layout[i]["channels"] for i in self._indices)
        self.strides = tuple(layout[i]["stride"] for i in self._indices)
        self.normalize_input = bool(normalize_input)
        self.weights_source = "random"
        # not persistent: the state dict holds exactly torchvision's `features.N` keys
        mean = torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def _freeze(self) -> None:
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> FrozenTrunk:
        """Frozen: always stays in eval mode."""
        return super().train(False)

    # -- weights ---------------------------------------------------------------------------
    def _load_weights(self, state_dict: Any, source: str) -> None:
        if not isinstance(state_dict, Mapping):
            raise ValueError(
                f"{source}: expected a state dict (a mapping), got {type(state_dict).__name__}"
            )
        if set(state_dict) == {"state_dict"} and isinstance(state_dict["state_dict"], Mapping):
            state_dict = state_dict["state_dict"]
        keys = list(state_dict)
        if keys and all(isinstance(k, str) and k.startswith("module.") for k in keys):
            state_dict = {k[len("module."):]: v for k, v in state_dict.items()}  # DataParallel
        full = trunk_state_shapes(self.cfg)
        own = self.state_dict()
        problems = []
        missing = [k for k in own if k not in state_dict]
        if missing:
            problems.append(f"missing keys {missing}")
        unexpected = [
            k for k in state_dict
            if k not in full and not (isinstance(k, str) and k.startswith(self.ignored_prefixes))
        ]  # fmt: skip
        if unexpected:
            problems.append(f"unexpected keys {format_names(unexpected, limit=10)}")
        not_tensors = [k for k in full if k in state_dict and not isinstance(state_dict[k], Tensor)]
        if not_tensors:
            problems.append(f"values that are not tensors at {not_tensors}")
        shapes = [
            f"{k}: {tuple(state_dict[k].shape)} instead of {full[k]}"
            for k in full
            if k in state_dict and isinstance(state_dict[k], Tensor)
            and tuple(state_dict[k].shape) != full[k]
        ]  # fmt: skip
        if shapes:
            problems.append("wrong shapes " + "; ".join(shapes))
        if problems:
            raise ValueError(
                f"{source} does not hold {type(self).__name__} weights "
                f"(torchvision-style 'features.N.weight/bias' keys): " + "; ".join(problems)
            )
        self.load_state_dict({k: state_dict[k] for k in own}, strict=True)

    def _load_from(self, weights: Any) -> None:
        if isinstance(weights, Mapping):
            self._load_weights(weights, "the given state dict")
            self.weights_source = "state dict"
        elif isinstance(weights, (str, os.PathLike)):
            self._load_weights(read_weights_file(weights), f"weights file {str(weights)!r}")
            self.weights_source = os.fspath(weights)
        else:
            raise TypeError(
                "weights must be None, a name, a file path or a state dict, "
                f"got {type(weights).__name__}"
            )

    # -- forward ---------------------------------------------------------------------------
    def forward(self, x: Tensor) -> list[Tensor]:
        """Features of ``x`` (``(B, 3 or 1, H, W)`` in ``[0, 1]``) at each requested layer."""
        if not isinstance(x, Tensor):
            raise TypeError(f"expected a Tensor, got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(
                f"{type(self).__name__} expects images of shape (B, 3, H, W) or (B, 1, H, W) in "
                f"[0, 1], got shape {tuple(x.shape)}"
            )
        need = max(self.strides)
        if x.shape[-2] < need or x.shape[-1] < need:
            raise ValueError(
                f"input of {x.shape[-2]}x{x.shape[-1]} pixels is too small for layer "
                f"{self.layers[self.strides.index(need)]!r} (stride {need}): need at least "
                f"{need}x{need}"
            )
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.normalize_input:
            x = (x - self.mean) / self.std
        wanted = set(self._indices)
        out: dict[int, Tensor] = {}
        for i, module in enumerate(self.features):
            x = module(x)
            if i in wanted:
                out[i] = x
        return [out[i] for i in self._indices]

    def extra_repr(self) -> str:
        return f"layers={list(self.layers)}, weights={self.weights_source!r}"


class VGG19Features(FrozenTrunk):
    """Frozen VGG19 convolutional trunk returning the requested ReLU/conv/pool features.

    The ``features`` sequence and its indices are torchvision's
    (``features.0`` = ``conv1_1``, ``features.28`` = ``conv5_1``,
    ``features.34`` = ``conv5_4``), so torchvision's ImageNet state dict loads
    directly (its ``classifier`` keys are ignored).  Only the modules up to the
    deepest requested layer are built and run.

    Parameters
    ----------
    layers : sequence of str
        Layer names ``convB_K``, ``reluB_K`` (blocks 1-5; 2 convolutions in
        blocks 1-2, 4 in blocks 3-5) or ``poolB``; output order follows.
    weights : None, "imagenet", path or state dict
        ``None``: random (seeded, torchvision's Kaiming init) -- use
        :func:`load_encoder` for the pretrained default.  ``"imagenet"``:
        torchvision's file, downloaded once into the torch hub cache (its hash
        is checked) or read from that cache; offline, an ``OSError`` says what
        to do.  A path: a local copy (``.pth`` loaded with
        ``weights_only=True``; ``.safetensors`` if that package is installed).
    normalize_input : bool
        Apply ImageNet mean/std normalisation to the ``[0, 1]`` input.
    seed : int
        Seed of the random initialisation when ``weights`` is None.
    """

    cfg = VGG19_CFG
    name = "vgg19"
    ignored_prefixes = ("classifier.",)

    def __init__(
        self,
        layers: Sequence[str] = DEFAULT_LAYERS,
        *,
        weights: None | str | os.PathLike | Mapping[str, Tensor] = None,
        normalize_input: bool = True,
        seed: int = 0,
    ):
        super().__init__(layers, normalize_input=normalize_input)
        if weights is None:
            g = torch.Generator().manual_seed(int(seed))
            with torch.no_grad():
                for m in self.features:
                    if isinstance(m, nn.Conv2d):
                        nn.init.kaiming_normal_(
                            m.weight, mode="fan_out", nonlinearity="relu", generator=g
                        )
                        nn.init.zeros_(m.bias)
            self.weights_source = f"random (seed {seed})"
        elif isinstance(weights, str) and weights == "imagenet":
            self._load_weights(download_vgg19(), f"the ImageNet VGG19 file {VGG19_FILENAME}")
            self.weights_source = "imagenet"
        else:
            self._load_from(weights)
        self._freeze()


def _orthogonal_init_(trunk: FrozenTrunk, seed: int, gain: float = math.sqrt(2.0)) -> None:
    """Seeded orthogonal conv weights (drawn and orthogonalised in float64), zero biases.

    Every convolution of the *full* trunk is drawn in order, so the weights of
    a layer do not depend on how deep the trunk was built.
    """
    g = torch.Generator().manual_seed(int(seed))
    convs = [m for m in trunk.features if isinstance(m, nn.Conv2d)]
    shapes = [s for k, s in trunk_state_shapes(trunk.cfg).items() if k.endswith("weight")]
    with torch.no_grad():
        for i, shape in enumerate(shapes):
            rows, cols = shape[0], math.prod(shape[1:])
            a = torch.randn(max(rows, cols), min(rows, cols), generator=g, dtype=torch.float64)
            q, r = torch.linalg.qr(a)
            q = q * torch.sign(torch.diagonal(r))  # unique (Haar-distributed) factor
            w = q if rows >= cols else q.T
            if i < len(convs):
                convs[i].weight.copy_((gain * w).reshape(shape).to(convs[i].weight.dtype))
                convs[i].bias.zero_()


class TinyEncoder(FrozenTrunk):
    """Small frozen CNN with VGG-like taps, shipped with the package (works offline).

    Five blocks of one 3x3 convolution + ReLU, 2x2 max pooling between
    blocks, 16-32-64-96-128 channels: ``relu1_1 .. relu5_1`` at strides
    1, 2, 4, 8, 16 (receptive field of ``relu5_1``: 78 px), about 190 k
    parameters.  How the shipped weights were made is described in this
    module's docstring.

    Parameters
    ----------
    layers : sequence of str
        ``conv1_1 .. conv5_1``, ``relu1_1 .. relu5_1`` or ``pool1 .. pool4``.
    weights : "default", None, path or state dict
        ``"default"``: the shipped file.  ``None``: seeded orthogonal random
        weights (uncalibrated; see :class:`RandomEncoder`).
    normalize_input : bool
        ImageNet mean/std normalisation of the ``[0, 1]`` input; the shipped
        weights were calibrated with it on.
    seed : int
        Seed of the random weights when ``weights`` is None.
    """

    cfg = TINY_CFG
    name = "tiny"

    def __init__(
        self,
        layers: Sequence[str] = DEFAULT_LAYERS,
        *,
        weights: None | str | os.PathLike | Mapping[str, Tensor] = "default",
        normalize_input: bool = True,
        seed: int = 0,
    ):
        super().__init__(layers, normalize_input=normalize_input)
        if weights is None:
            _orthogonal_init_(self, seed)
            self.weights_source = f"random orthogonal (seed {seed})"
        elif isinstance(weights, str) and weights == "default":
            self._load_weights(shipped_tiny_weights(), f"the shipped {TINY_WEIGHTS_FILE}")
            self.weights_source = "shipped"
        else:
            self._load_from(weights)
        self._freeze()


class RandomEncoder(TinyEncoder):
    """:class:`TinyEncoder` with seeded orthogonal random weights (a frozen random network).

    Weights are drawn in float64 from ``torch.Generator().manual_seed(seed)``
    and orthogonalised (He gain), biases are zero: the same seed gives the
    same network on every machine and for every choice of ``layers``.
    """

    name = "random"

    def __init__(
        self,
        seed: int = 0,
        layers: Sequence[str] = DEFAULT_LAYERS,
        *,
        normalize_input: bool = True,
    ):
        super().__init__(layers, weights=None, normalize_input=normalize_input, seed=seed)
